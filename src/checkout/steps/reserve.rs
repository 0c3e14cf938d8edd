//! RESERVE_STOCK: every line's units or none, never below zero under any concurrency.
//! Its compensation (RELEASE, keyed on the saga) and a cancellation's restock (RESTOCK,
//! keyed on the cancelled order's checkout saga) put the units back, once each: the
//! movements' unique index (saga, product, kind) makes "once" a database rule.
use super::{Member, Verdict, insert_all, sagas_with};
use crate::db::entities::{products, stock_movements};
use crate::db::in_list::padded;
use chrono::Utc;
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend,
    DatabaseTransaction, DbErr, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

const RESERVE: &str = "RESERVE";
const RELEASE: &str = "RELEASE";
const RESTOCK: &str = "RESTOCK";

/// Takes every line's units for each saga that can have them all, oldest saga first.
/// The batch's products are locked in id order (one lock order for every worker, so
/// batches cannot deadlock); the allocation happens on the locked counts, and each
/// product then moves once by the batch's total.
pub(super) async fn reserve(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let moved: Vec<(i64, String)> = stock_movements::Entity::find()
        .select_only()
        .columns([
            stock_movements::Column::SagaId,
            stock_movements::Column::Kind,
        ])
        .distinct()
        .filter(stock_movements::Column::SagaId.is_in(padded(members.iter().map(Member::id))))
        .filter(stock_movements::Column::Kind.is_in([RESERVE, RELEASE]))
        .into_tuple()
        .all(txn)
        .await?;
    let with = |kind: &str| -> HashSet<i64> {
        moved
            .iter()
            .filter(|(_, k)| k == kind)
            .map(|(saga, _)| *saga)
            .collect()
    };
    let (reserved, released) = (with(RESERVE), with(RELEASE));
    let mut verdicts = Vec::with_capacity(members.len());
    let mut todo = Vec::with_capacity(members.len());
    for member in members {
        if released.contains(&member.id()) {
            let reason = "the reservation was already released".to_owned();
            verdicts.push((member.id(), Verdict::Failed(reason)));
        } else if reserved.contains(&member.id()) {
            verdicts.push((member.id(), Verdict::Done));
        } else {
            todo.push(member);
        }
    }
    let wanted: BTreeSet<i64> = todo
        .iter()
        .flat_map(|m| m.payload.lines.iter().map(|l| l.product_id))
        .collect();
    let mut stock = locked_stock(txn, wanted).await?;

    let now = Utc::now();
    let mut taken: BTreeMap<i64, i32> = BTreeMap::new();
    let mut movements = Vec::new();
    for member in todo {
        let mut needs: BTreeMap<i64, i32> = BTreeMap::new();
        for line in &member.payload.lines {
            *needs.entry(line.product_id).or_default() += line.quantity;
        }
        let short = needs.iter().find(|(product, quantity)| {
            stock
                .get(product)
                .is_none_or(|(tenant, left)| *tenant != member.saga.tenant_id || *left < **quantity)
        });
        if let Some((product, _)) = short {
            let reason = format!("insufficient stock for product {product}");
            verdicts.push((member.id(), Verdict::Failed(reason)));
            continue;
        }
        for (product, quantity) in needs {
            if let Some((_, left)) = stock.get_mut(&product) {
                *left -= quantity;
            }
            *taken.entry(product).or_default() += quantity;
            movements.push(movement(
                member.saga.tenant_id.clone(),
                member.id(),
                product,
                RESERVE,
                -quantity,
            ));
        }
        verdicts.push((member.id(), Verdict::Done));
    }
    for (product, quantity) in taken {
        let moved = products::Entity::update_many()
            .col_expr(
                products::Column::Stock,
                Expr::col(products::Column::Stock).sub(quantity),
            )
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(product))
            .filter(products::Column::Stock.gte(quantity))
            .exec(txn)
            .await?;
        if moved.rows_affected != 1 {
            // Cannot happen under the lock; if it does, nothing of the batch is kept.
            return Err(DbErr::Custom(format!(
                "stock of product {product} changed during a reservation"
            )));
        }
    }
    insert_all(txn, movements).await?;
    Ok(verdicts)
}

/// The stock of `wanted` products by id, locked for the rest of the transaction.
async fn locked_stock(
    txn: &DatabaseTransaction,
    wanted: BTreeSet<i64>,
) -> Result<HashMap<i64, (String, i32)>, DbErr> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query = products::Entity::find()
        .select_only()
        .columns([
            products::Column::Id,
            products::Column::TenantId,
            products::Column::Stock,
        ])
        .filter(products::Column::Id.is_in(padded(wanted)))
        .order_by_asc(products::Column::Id);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        // NO KEY UPDATE, not UPDATE: it does not block the KEY SHARE locks that order
        // and cart item inserts take on their product, so a batch creating orders and
        // a batch reserving stock cannot deadlock.
        query = query.lock(LockType::NoKeyUpdate);
    }
    Ok(query
        .into_tuple::<(i64, String, i32)>()
        .all(txn)
        .await?
        .into_iter()
        .map(|(id, tenant, stock)| (id, (tenant, stock)))
        .collect())
}

fn movement(
    tenant: String,
    saga: i64,
    product: i64,
    kind: &str,
    quantity: i32,
) -> stock_movements::ActiveModel {
    stock_movements::ActiveModel {
        tenant_id: Set(tenant),
        saga_id: Set(saga),
        product_id: Set(product),
        kind: Set(kind.to_owned()),
        quantity: Set(quantity),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
}

/// Compensation: puts back what each saga reserved (RELEASE, keyed on the saga).
pub(super) async fn release(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    return_units(txn, members, RELEASE).await
}

/// A cancellation: puts back what the cancelled order's checkout reserved (RESTOCK,
/// keyed on that checkout, so an order is restocked once whatever cancels it).
pub(super) async fn restock(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    return_units(txn, members, RESTOCK).await
}

/// Returns each checkout's reserved units under `kind`, once per checkout. Products
/// move in id order, the order reservations lock them in: no deadlock.
async fn return_units(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    kind: &str,
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let verdicts = members.iter().map(|m| (m.id(), Verdict::Done)).collect();
    let checkouts: BTreeSet<i64> = members.iter().map(Member::checkout).collect();
    let returned = sagas_with::<stock_movements::Entity, _>(
        txn,
        stock_movements::Column::SagaId,
        checkouts.iter().copied(),
        Condition::all().add(stock_movements::Column::Kind.eq(kind)),
    )
    .await?;
    let due: Vec<i64> = checkouts
        .into_iter()
        .filter(|c| !returned.contains(c))
        .collect();
    if due.is_empty() {
        return Ok(verdicts);
    }
    let reserved = stock_movements::Entity::find()
        .filter(stock_movements::Column::SagaId.is_in(padded(due)))
        .filter(stock_movements::Column::Kind.eq(RESERVE))
        .order_by_asc(stock_movements::Column::ProductId)
        .all(txn)
        .await?;
    let mut back: BTreeMap<i64, i32> = BTreeMap::new();
    for m in &reserved {
        *back.entry(m.product_id).or_default() -= m.quantity;
    }
    let now = Utc::now();
    for (product, quantity) in back {
        products::Entity::update_many()
            .col_expr(
                products::Column::Stock,
                Expr::col(products::Column::Stock).add(quantity),
            )
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(product))
            .exec(txn)
            .await?;
    }
    let movements = reserved
        .into_iter()
        .map(|m| movement(m.tenant_id, m.saga_id, m.product_id, kind, -m.quantity))
        .collect();
    insert_all(txn, movements).await?;
    Ok(verdicts)
}
