//! Each step of a saga and its compensation, written once, for a batch of sagas (a
//! single saga is a batch of one). Running one piece of work for a batch:
//!
//! 1. Injected failures (`SAGA_FAIL_RATE_<STEP>`) are drawn first; those sagas fail
//!    the step without touching anything.
//! 2. A step that calls the payment provider asks it now, outside any transaction,
//!    with each saga's idempotency key. An unknown answer leaves that saga's step
//!    RUNNING: the worker asks again later with the same key.
//! 3. One transaction fenced by the worker's lease (`Lease::begin`) applies the effect
//!    for the sagas the lease still holds, together with their steps' new status. A
//!    saga whose lease was taken over is left alone: the new owner decides.
//!
//! A step counts as done only in the state that matters (stock reserved and not
//! released, a charge captured and not refunded), so a re-run never undoes or repeats
//! what another decision did.
mod charge;
mod order;
mod reserve;

pub use order::{new_order, set_status as set_order_status};

use super::failures::FailureRates;
use super::gateway::PaymentGateway;
use super::invalidation::{self, Recorded};
use super::lease::Lease;
use super::model::{Payload, SagaKind, SagaStatus, SagaStepName, StepStatus};
use crate::db::entities::{saga_steps, sagas};
use crate::db::in_list::padded;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, ExprTrait, QueryFilter,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Rows per multi-row INSERT: well under either database's bind-parameter limit.
const INSERT_CHUNK: usize = 500;

/// What a worker does next for a group of sagas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    Run(SagaKind, SagaStepName),
    /// Undo a completed checkout step.
    Compensate(SagaStepName),
}

impl Work {
    pub fn step(self) -> SagaStepName {
        match self {
            Self::Run(_, step) | Self::Compensate(step) => step,
        }
    }

    /// The step's status while this work is under way.
    pub fn started(self) -> StepStatus {
        match self {
            Self::Run(..) => StepStatus::Running,
            Self::Compensate(_) => StepStatus::Compensating,
        }
    }

    fn done(self) -> StepStatus {
        match self {
            Self::Run(..) => StepStatus::Succeeded,
            Self::Compensate(_) => StepStatus::Compensated,
        }
    }

    /// Whether its attempts are bounded. Undoing (compensations, and a cancellation,
    /// which undoes a completed checkout) retries until it is done: giving up would
    /// leave stock taken or money held.
    pub fn gives_up(self) -> bool {
        matches!(self, Self::Run(SagaKind::Checkout, _))
    }

    /// Whether it calls the payment provider: then its intent (the step RUNNING, one
    /// attempt more) commits before the call. Other work opens its step in the same
    /// transaction as its effect (`Opening`).
    pub fn asks_provider(self) -> bool {
        self.step() == SagaStepName::ChargePayment
    }

    /// The saga's status while this work is under way.
    pub fn saga_status(self) -> SagaStatus {
        match self {
            Self::Run(..) => SagaStatus::Running,
            Self::Compensate(_) => SagaStatus::Compensating,
        }
    }

    /// Whether it moves stock, whose cached reads it then invalidates.
    pub fn moves_stock(self) -> bool {
        self.step() == SagaStepName::ReserveStock
    }
}

/// A saga of the batch with its decoded payload.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    pub saga: &'a sagas::Model,
    pub payload: &'a Payload,
}

impl Member<'_> {
    pub fn id(&self) -> i64 {
        self.saga.id
    }

    /// The checkout saga whose order, payment and stock a cancellation undoes; a
    /// checkout's own id otherwise.
    fn checkout(&self) -> i64 {
        self.payload.cancels_saga.unwrap_or(self.saga.id)
    }
}

/// How one saga's step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// A business failure (declined, out of stock, injected): compensate.
    Failed(String),
    /// The payment provider's answer was lost: ask again later with the same key.
    Unknown(String),
}

/// What running one piece of work for a batch decided.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub verdicts: Vec<(i64, Verdict)>,
    /// Sagas whose lease was taken over: nothing was written for them.
    pub lost: Vec<i64>,
    /// The cached reads the work changed, recorded with it, to invalidate.
    pub recorded: Vec<Recorded>,
}

impl Outcomes {
    pub fn done(&self) -> impl Iterator<Item = i64> + '_ {
        self.verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Done)
            .map(|(id, _)| *id)
    }
}

/// For work that opens its step in its own transaction: the sagas whose status
/// changes to the work's, and one attempt more for each.
pub struct Opening<'a> {
    pub changing: &'a [i64],
}

pub struct Ctx<'a> {
    pub db: &'a DatabaseConnection,
    pub gateway: &'a dyn PaymentGateway,
    pub failures: &'a FailureRates,
    pub lease: &'a Lease,
}

/// The provider's answers for a batch, asked before the transaction opens.
pub(super) type Answers<T> = HashMap<i64, T>;

/// Runs `work` for `members`: see the module documentation.
pub async fn execute(
    ctx: &Ctx<'_>,
    work: Work,
    members: &[Member<'_>],
    opening: Option<&Opening<'_>>,
) -> Result<Outcomes, DbErr> {
    let mut verdicts = Vec::new();
    let mut todo = Vec::with_capacity(members.len());
    let mut injected = HashSet::new();
    for member in members {
        let Work::Run(SagaKind::Checkout, step) = work else {
            todo.push(*member);
            continue;
        };
        if !ctx.failures.should_fail(step, member.saga) {
            todo.push(*member);
        } else if step == SagaStepName::ChargePayment {
            // An injected charge failure still goes through the provider (`charge`):
            // an earlier attempt's capture may have happened unheard.
            injected.insert(member.id());
            todo.push(*member);
        } else {
            verdicts.push((member.id(), Verdict::Failed(injected_failure(step))));
        }
    }
    // The provider is not asked about a step already recorded done.
    let ask: Vec<Member> = if work.asks_provider() {
        let ids: HashSet<i64> = todo.iter().map(Member::id).collect();
        let done = already_done(ctx.db, work, &ids).await?;
        todo.iter()
            .filter(|m| !done.contains(&m.id()))
            .copied()
            .collect()
    } else {
        Vec::new()
    };
    let asked = match work {
        Work::Run(SagaKind::Checkout, SagaStepName::ChargePayment) => {
            charge::ask_charges(ctx, &ask, &injected).await?
        }
        Work::Run(SagaKind::CancelOrder, SagaStepName::ChargePayment)
        | Work::Compensate(SagaStepName::ChargePayment) => charge::ask_refunds(ctx, &ask).await?,
        _ => charge::Asked::default(),
    };
    let ids: Vec<i64> = members.iter().map(Member::id).collect();
    let (txn, held) = ctx.lease.begin(ctx.db, &ids).await?;
    // A step already recorded done (a retry after a commit whose answer was lost) is
    // neither redone nor recorded again.
    let done = already_done(&txn, work, &held).await?;
    verdicts.retain(|(id, _)| held.contains(id) && !done.contains(id));
    let todo: Vec<Member> = todo
        .into_iter()
        .filter(|m| held.contains(&m.id()) && !done.contains(&m.id()))
        .collect();
    if let Some(opening) = opening {
        enter_status(&txn, work, opening.changing, &held, ctx.lease).await?;
    }
    let applied = match work {
        Work::Run(SagaKind::Checkout, SagaStepName::ReserveStock) => {
            reserve::reserve(&txn, &todo).await?
        }
        Work::Run(SagaKind::Checkout, SagaStepName::ChargePayment) => {
            charge::record_charges(&txn, &todo, asked).await?
        }
        Work::Run(SagaKind::Checkout, SagaStepName::CreateOrder) => {
            order::create(&txn, &todo).await?
        }
        Work::Run(SagaKind::CancelOrder, SagaStepName::CreateOrder) => {
            order::cancel(&txn, &todo).await?
        }
        Work::Run(SagaKind::CancelOrder, SagaStepName::ChargePayment)
        | Work::Compensate(SagaStepName::ChargePayment) => {
            charge::record_refunds(&txn, &todo, asked).await?
        }
        Work::Run(SagaKind::CancelOrder, SagaStepName::ReserveStock) => {
            reserve::restock(&txn, &todo).await?
        }
        Work::Compensate(SagaStepName::ReserveStock) => reserve::release(&txn, &todo).await?,
        Work::Compensate(SagaStepName::CreateOrder) => order::void(&txn, &todo).await?,
    };
    verdicts.extend(applied);
    record(&txn, work, &verdicts, opening.is_some()).await?;
    let recorded = if work.moves_stock() {
        let moved: HashSet<i64> = verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Done)
            .map(|(id, _)| *id)
            .collect();
        let changed = todo
            .iter()
            .filter(|m| moved.contains(&m.id()))
            .map(|m| (m.saga, m.payload.stock_tags()));
        invalidation::record(&txn, changed).await?
    } else {
        Vec::new()
    };
    txn.commit().await?;
    verdicts.extend(done.into_iter().map(|id| (id, Verdict::Done)));
    let lost = ids.into_iter().filter(|id| !held.contains(id)).collect();
    Ok(Outcomes {
        verdicts,
        lost,
        recorded,
    })
}

/// Moves the sagas of `changing` that the lease holds into `work`'s saga status (and
/// renews their lease): the one place a saga's status changes while it runs.
pub async fn enter_status(
    txn: &DatabaseTransaction,
    work: Work,
    changing: &[i64],
    held: &HashSet<i64>,
    lease: &Lease,
) -> Result<(), DbErr> {
    let changing: Vec<i64> = changing
        .iter()
        .copied()
        .filter(|id| held.contains(id))
        .collect();
    if changing.is_empty() {
        return Ok(());
    }
    sagas::Entity::update_many()
        .col_expr(
            sagas::Column::Status,
            Expr::value(work.saga_status().as_str()),
        )
        .col_expr(sagas::Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(sagas::Column::LeaseUntil, Expr::value(lease.until()))
        .filter(sagas::Column::Id.is_in(padded(changing)))
        .exec(txn)
        .await?;
    Ok(())
}

/// Which of `held` already have this work's step recorded done.
async fn already_done<C: ConnectionTrait>(
    conn: &C,
    work: Work,
    held: &HashSet<i64>,
) -> Result<HashSet<i64>, DbErr> {
    if held.is_empty() {
        return Ok(HashSet::new());
    }
    sagas_with::<saga_steps::Entity, _>(
        conn,
        saga_steps::Column::SagaId,
        held.iter().copied(),
        sea_orm::Condition::all()
            .add(saga_steps::Column::Name.eq(work.step().as_str()))
            .add(saga_steps::Column::Status.eq(work.done().as_str())),
    )
    .await
}

fn injected_failure(step: SagaStepName) -> String {
    format!("{} failed (injected failure)", step.as_str())
}

/// Records each saga's step status: one statement per status and reason.
async fn record(
    txn: &DatabaseTransaction,
    work: Work,
    verdicts: &[(i64, Verdict)],
    count_attempt: bool,
) -> Result<(), DbErr> {
    let mut groups: BTreeMap<(StepStatus, Option<&str>), Vec<i64>> = BTreeMap::new();
    for (saga, verdict) in verdicts {
        let key = match verdict {
            Verdict::Done => (work.done(), None),
            Verdict::Failed(reason) => (StepStatus::Failed, Some(reason.as_str())),
            Verdict::Unknown(reason) => (work.started(), Some(reason.as_str())),
        };
        groups.entry(key).or_default().push(*saga);
    }
    for ((status, error), sagas) in groups {
        if count_attempt {
            count_attempts(txn, &sagas, work.step()).await?;
        }
        set_steps(txn, &sagas, work.step(), status, error).await?;
    }
    Ok(())
}

/// One attempt more of `step` for these sagas, started now.
pub async fn count_attempts<C: ConnectionTrait>(
    conn: &C,
    sagas: &[i64],
    step: SagaStepName,
) -> Result<(), DbErr> {
    if sagas.is_empty() {
        return Ok(());
    }
    saga_steps::Entity::update_many()
        .col_expr(
            saga_steps::Column::Attempts,
            Expr::col(saga_steps::Column::Attempts).add(1),
        )
        .col_expr(saga_steps::Column::StartedAt, Expr::value(Utc::now()))
        .filter(saga_steps::Column::SagaId.is_in(padded(sagas.iter().copied())))
        .filter(saga_steps::Column::Name.eq(step.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Sets one step's status (and error) for many sagas at once, inside `conn`.
pub async fn set_steps<C: ConnectionTrait>(
    conn: &C,
    sagas: &[i64],
    step: SagaStepName,
    status: StepStatus,
    error: Option<&str>,
) -> Result<(), DbErr> {
    if sagas.is_empty() {
        return Ok(());
    }
    let mut update = saga_steps::Entity::update_many()
        .col_expr(saga_steps::Column::Status, Expr::value(status.as_str()))
        .filter(saga_steps::Column::SagaId.is_in(padded(sagas.iter().copied())))
        .filter(saga_steps::Column::Name.eq(step.as_str()));
    if !matches!(status, StepStatus::Running | StepStatus::Compensating) {
        update = update.col_expr(saga_steps::Column::FinishedAt, Expr::value(Utc::now()));
    }
    if let Some(error) = error {
        let error: String = error.chars().take(500).collect();
        update = update.col_expr(saga_steps::Column::Error, Expr::value(error));
    }
    update.exec(conn).await?;
    Ok(())
}

/// Inserts `rows` in multi-row statements of at most `INSERT_CHUNK` rows.
async fn insert_all<A>(txn: &DatabaseTransaction, mut rows: Vec<A>) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
{
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(INSERT_CHUNK));
        let chunk = std::mem::replace(&mut rows, rest);
        A::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Which of `ids` have a row in `E` (whose `saga` column holds the saga id) that also
/// matches `condition`.
async fn sagas_with<E, C>(
    conn: &C,
    saga: E::Column,
    ids: impl IntoIterator<Item = i64>,
    condition: sea_orm::Condition,
) -> Result<HashSet<i64>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    use sea_orm::QuerySelect;
    Ok(E::find()
        .select_only()
        .column(saga)
        .filter(saga.is_in(padded(ids)))
        .filter(condition)
        .into_tuple::<i64>()
        .all(conn)
        .await?
        .into_iter()
        .collect())
}
