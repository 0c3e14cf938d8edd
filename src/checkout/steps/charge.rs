//! CHARGE_PAYMENT and the refund that undoes it (a compensation, or a cancellation's
//! refund of the cancelled order's charge). The provider is asked before the fenced
//! transaction opens, with keys derived from the checkout saga, so any number of asks
//! by any worker move money at most once; the transaction then records the answer.
use super::{Answers, Ctx, Member, Verdict, insert_all};
use crate::checkout::gateway::{
    Charge, ChargeRequest, Refund, RefundRequest, Unknown, charge_key, refund_key,
};
use crate::checkout::model::SagaStepName;
use crate::db::entities::payments;
use crate::db::in_list::padded;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter,
};
use std::collections::{HashMap, HashSet};

const CAPTURED: &str = "CAPTURED";
const REFUNDED: &str = "REFUNDED";

/// What the provider answered, by saga (sagas it was not asked about are absent).
#[derive(Default)]
pub(super) struct Asked {
    charges: Answers<Result<Charge, Unknown>>,
    refunds: Answers<Result<Refund, Unknown>>,
}

/// The payment rows of these checkouts, by checkout saga.
async fn payments_of<C: ConnectionTrait>(
    conn: &C,
    checkouts: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, payments::Model>, DbErr> {
    Ok(payments::Entity::find()
        .filter(payments::Column::SagaId.is_in(padded(checkouts)))
        .all(conn)
        .await?
        .into_iter()
        .map(|p| (p.saga_id, p))
        .collect())
}

/// Asks the provider, concurrently, to charge every saga not charged yet. Sagas drawn
/// for an injected failure cancel their charge instead (refunding it, should an
/// earlier attempt have captured it unheard), so the failure leaves no money held.
pub(super) async fn ask_charges(
    ctx: &Ctx<'_>,
    members: &[Member<'_>],
    injected: &HashSet<i64>,
) -> Result<Asked, DbErr> {
    // Asked for every saga, even one whose charge a crash left recorded: the same key
    // gets the same answer, and the transaction reads what is recorded.
    let (cancel, charge): (Vec<&Member>, Vec<&Member>) =
        members.iter().partition(|m| injected.contains(&m.id()));
    let charges = futures_util::future::join_all(charge.into_iter().map(|m| async move {
        let request = ChargeRequest {
            key: charge_key(m.id()),
            amount_cents: m.payload.total_cents(),
            token: m.payload.payment_token.clone(),
        };
        (m.id(), ctx.gateway.charge(&request).await)
    }));
    let (charges, refunds) = futures_util::future::join(charges, refund_all(ctx, &cancel)).await;
    Ok(Asked {
        charges: charges.into_iter().collect(),
        refunds,
    })
}

/// One payment row per capture. Done only while captured and not refunded.
pub(super) async fn record_charges(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    asked: Asked,
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let recorded = payments_of(txn, members.iter().map(Member::id)).await?;
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut verdicts = Vec::with_capacity(members.len());
    for member in members {
        let id = member.id();
        let verdict = match (recorded.get(&id), asked.charges.get(&id)) {
            (Some(payment), _) if payment.status == CAPTURED => Verdict::Done,
            (Some(_), _) => Verdict::Failed("the payment was already refunded".into()),
            (None, Some(Err(unknown))) => Verdict::Unknown(unknown.to_string()),
            (None, Some(Ok(Charge::Declined { reason }))) => Verdict::Failed(reason.clone()),
            (None, Some(Ok(Charge::Captured))) => {
                rows.push(payment_row(
                    member,
                    member.payload.total_cents(),
                    CAPTURED,
                    now,
                ));
                Verdict::Done
            }
            (None, None) => match asked.refunds.get(&id) {
                None => Verdict::Unknown("the payment provider was not asked".into()),
                Some(Err(unknown)) => Verdict::Unknown(unknown.to_string()),
                Some(Ok(refund)) => {
                    if let Refund::Refunded { amount_cents } = refund {
                        rows.push(payment_row(member, *amount_cents, REFUNDED, now));
                    }
                    Verdict::Failed(super::injected_failure(SagaStepName::ChargePayment))
                }
            },
        };
        verdicts.push((id, verdict));
    }
    insert_all(txn, rows).await?;
    Ok(verdicts)
}

/// Refunds (or cancels) each member's checkout charge, concurrently.
async fn refund_all(ctx: &Ctx<'_>, members: &[&Member<'_>]) -> Answers<Result<Refund, Unknown>> {
    futures_util::future::join_all(members.iter().map(|m| async move {
        let request = RefundRequest {
            key: refund_key(m.checkout()),
            charge_key: charge_key(m.checkout()),
        };
        (m.id(), ctx.gateway.refund(&request).await)
    }))
    .await
    .into_iter()
    .collect()
}

fn payment_row(
    member: &Member<'_>,
    amount_cents: i64,
    status: &str,
    now: chrono::DateTime<Utc>,
) -> payments::ActiveModel {
    payments::ActiveModel {
        tenant_id: Set(member.saga.tenant_id.clone()),
        saga_id: Set(member.checkout()),
        amount_cents: Set(amount_cents),
        method: Set(member.payload.payment_method.as_str().into()),
        status: Set(status.into()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Asks the provider to refund each checkout's charge (again, if it was: the same key
/// gets the same answer). A charge whose outcome was never heard is refunded too: the
/// provider refunds it if it was captured, and cancels it if not.
pub(super) async fn ask_refunds(ctx: &Ctx<'_>, members: &[Member<'_>]) -> Result<Asked, DbErr> {
    let all: Vec<&Member> = members.iter().collect();
    Ok(Asked {
        refunds: refund_all(ctx, &all).await,
        ..Asked::default()
    })
}

/// Marks refunded payments. A refund of a capture that was never recorded (its answer
/// was lost) records the payment as refunded, so the books match the provider's.
pub(super) async fn record_refunds(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    asked: Asked,
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let recorded = payments_of(txn, members.iter().map(Member::checkout)).await?;
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut refunded = Vec::new();
    let mut verdicts = Vec::with_capacity(members.len());
    for member in members {
        let payment = recorded.get(&member.checkout());
        let verdict = match (payment, asked.refunds.get(&member.id())) {
            (Some(p), _) if p.status == REFUNDED => Verdict::Done,
            (_, None) => Verdict::Unknown("the payment provider was not asked".into()),
            (_, Some(Err(unknown))) => Verdict::Unknown(unknown.to_string()),
            (_, Some(Ok(Refund::NothingCaptured))) => Verdict::Done,
            (Some(_), Some(Ok(Refund::Refunded { .. }))) => {
                refunded.push(member.checkout());
                Verdict::Done
            }
            (None, Some(Ok(Refund::Refunded { amount_cents }))) => {
                rows.push(payment_row(member, *amount_cents, REFUNDED, now));
                Verdict::Done
            }
        };
        verdicts.push((member.id(), verdict));
    }
    if !refunded.is_empty() {
        payments::Entity::update_many()
            .col_expr(payments::Column::Status, Expr::value(REFUNDED))
            .col_expr(payments::Column::UpdatedAt, Expr::value(now))
            .filter(payments::Column::SagaId.is_in(padded(refunded)))
            .filter(payments::Column::Status.eq(CAPTURED))
            .exec(txn)
            .await?;
    }
    insert_all(txn, rows).await?;
    Ok(verdicts)
}
