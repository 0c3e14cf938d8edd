//! The fast path: a worker moves a claimed batch of checkouts through each step
//! together, one transaction per step for the whole batch, instead of one per saga.
//! The rules are the one-saga path's (`steps.rs`): every saga reserves all its lines
//! or none, stock never goes below zero, each effect is keyed by saga and step so a
//! re-run changes nothing twice, and each saga's step status commits with its effect.
//! Compensations, cancellations and any saga a batch cannot move take the one-saga path.
use super::gateway::{Charge, FailureRates, Gateway};
use super::model::{Payload, SagaStepName, StepStatus};
use super::steps::{self, CAPTURED, RESERVE};
use crate::db::entities::{
    cart_items, order_items, orders, payments, products, sagas, stock_movements,
};
use chrono::Utc;
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend,
    DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Rows per multi-row INSERT: well under either database's bind-parameter limit.
const INSERT_CHUNK: usize = 500;

/// A saga of the batch with its decoded payload.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    pub saga: &'a sagas::Model,
    pub payload: &'a Payload,
}

/// How a batched step ended, per saga.
#[derive(Debug, Default)]
pub struct Results {
    pub succeeded: Vec<i64>,
    /// Permanent failures (declined, out of stock, injected) with their reason.
    pub failed: Vec<(i64, String)>,
}

impl Results {
    /// Records every saga's step status in `txn`: one statement for the successes and
    /// one per distinct failure reason.
    async fn record(&self, txn: &DatabaseTransaction, step: SagaStepName) -> Result<(), DbErr> {
        steps::set_steps(txn, &self.succeeded, step, StepStatus::Succeeded, None).await?;
        let mut by_reason: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (saga, reason) in &self.failed {
            by_reason.entry(reason).or_default().push(*saga);
        }
        for (reason, sagas) in by_reason {
            steps::set_steps(txn, &sagas, step, StepStatus::Failed, Some(reason)).await?;
        }
        Ok(())
    }
}

/// Runs one step of the checkout for every member.
pub async fn run(
    db: &DatabaseConnection,
    step: SagaStepName,
    members: &[Member<'_>],
    gateway: &Gateway,
    failures: &FailureRates,
) -> Result<Results, DbErr> {
    let mut results = Results::default();
    let mut todo = Vec::with_capacity(members.len());
    for member in members {
        if failures.should_fail(step) {
            let reason = format!("{} failed (injected failure)", step.as_str());
            results.failed.push((member.saga.id, reason));
        } else {
            todo.push(*member);
        }
    }
    // The gateway answers before the transaction opens, so no transaction waits on it.
    let charges = if step == SagaStepName::ChargePayment {
        charge_all(db, &todo, gateway).await?
    } else {
        HashMap::new()
    };
    let txn = db.begin().await?;
    match step {
        SagaStepName::ReserveStock => reserve_stock(&txn, &todo, &mut results).await?,
        SagaStepName::ChargePayment => record_payments(&txn, &todo, &charges, &mut results).await?,
        SagaStepName::CreateOrder => create_orders(&txn, &todo, &mut results).await?,
    }
    results.record(&txn, step).await?;
    txn.commit().await?;
    Ok(results)
}

fn ids(members: &[Member<'_>]) -> Vec<i64> {
    members.iter().map(|m| m.saga.id).collect()
}

/// Takes every line's units for each saga that can have them all, oldest saga first.
/// The batch's products are locked in id order (one lock order for every worker, so
/// batches cannot deadlock); the allocation happens on the locked counts, and each
/// product then moves once by the batch's total.
async fn reserve_stock(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    results: &mut Results,
) -> Result<(), DbErr> {
    let reserved = sagas_with::<stock_movements::Entity, _>(
        txn,
        stock_movements::Column::SagaId,
        &ids(members),
        Condition::all().add(stock_movements::Column::Kind.eq(RESERVE)),
    )
    .await?;
    let todo: Vec<&Member> = members
        .iter()
        .filter(|m| {
            let done = reserved.contains(&m.saga.id);
            if done {
                results.succeeded.push(m.saga.id);
            }
            !done
        })
        .collect();
    let wanted: Vec<i64> = todo
        .iter()
        .flat_map(|m| m.payload.lines.iter().map(|l| l.product_id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut query = products::Entity::find()
        .select_only()
        .columns([
            products::Column::Id,
            products::Column::TenantId,
            products::Column::Stock,
        ])
        .filter(products::Column::Id.is_in(wanted))
        .order_by_asc(products::Column::Id);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        // NO KEY UPDATE, not UPDATE: it does not block the KEY SHARE locks that order
        // and cart item inserts take on their product, so a batch creating orders
        // and a batch reserving stock cannot deadlock.
        query = query.lock(LockType::NoKeyUpdate);
    }
    let mut stock: HashMap<i64, (String, i32)> = query
        .into_tuple::<(i64, String, i32)>()
        .all(txn)
        .await?
        .into_iter()
        .map(|(id, tenant, stock)| (id, (tenant, stock)))
        .collect();

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
            results.failed.push((member.saga.id, reason));
            continue;
        }
        for (product, quantity) in needs {
            if let Some((_, left)) = stock.get_mut(&product) {
                *left -= quantity;
            }
            *taken.entry(product).or_default() += quantity;
            movements.push(stock_movements::ActiveModel {
                tenant_id: Set(member.saga.tenant_id.clone()),
                saga_id: Set(member.saga.id),
                product_id: Set(product),
                kind: Set(RESERVE.into()),
                quantity: Set(-quantity),
                created_at: Set(now),
                ..Default::default()
            });
        }
        results.succeeded.push(member.saga.id);
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
    insert_all(txn, movements).await
}

/// Asks the gateway for every saga not yet charged, concurrently.
async fn charge_all(
    db: &DatabaseConnection,
    members: &[Member<'_>],
    gateway: &Gateway,
) -> Result<HashMap<i64, Charge>, DbErr> {
    let charged = sagas_with::<payments::Entity, _>(
        db,
        payments::Column::SagaId,
        &ids(members),
        Condition::all(),
    )
    .await?;
    let pending = members.iter().filter(|m| !charged.contains(&m.saga.id));
    let answers = futures_util::future::join_all(pending.map(|m| async move {
        let charge = gateway
            .charge(m.payload.payment_token.as_deref(), m.payload.total_cents())
            .await;
        (m.saga.id, charge)
    }))
    .await;
    Ok(answers.into_iter().collect())
}

/// One payment row per captured charge; a saga already charged (a re-run) succeeds as is.
async fn record_payments(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    charges: &HashMap<i64, Charge>,
    results: &mut Results,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut rows = Vec::new();
    for member in members {
        match charges.get(&member.saga.id) {
            None => results.succeeded.push(member.saga.id),
            Some(Charge::Declined(reason)) => results.failed.push((member.saga.id, reason.clone())),
            Some(Charge::Captured) => {
                results.succeeded.push(member.saga.id);
                rows.push(payments::ActiveModel {
                    tenant_id: Set(member.saga.tenant_id.clone()),
                    saga_id: Set(member.saga.id),
                    amount_cents: Set(member.payload.total_cents()),
                    method: Set(member.payload.payment_method.as_str().into()),
                    status: Set(CAPTURED.into()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
            }
        }
    }
    insert_all(txn, rows).await
}

/// The orders (PENDING until their sagas complete) and their lines at the prices
/// snapshotted at checkout; then the carts checked out are cleared.
async fn create_orders(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
    results: &mut Results,
) -> Result<(), DbErr> {
    let created = sagas_with::<orders::Entity, _>(
        txn,
        orders::Column::SagaId,
        &ids(members),
        Condition::all(),
    )
    .await?;
    let todo: Vec<&Member> = members
        .iter()
        .filter(|m| !created.contains(&m.saga.id))
        .collect();
    results.succeeded.extend(members.iter().map(|m| m.saga.id));
    if todo.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let new_orders = todo
        .iter()
        .map(|m| steps::new_order(m.saga, m.payload, now));
    insert_all(txn, new_orders.collect()).await?;
    let todo_ids: Vec<i64> = todo.iter().map(|m| m.saga.id).collect();
    let order_of: HashMap<i64, i64> = orders::Entity::find()
        .select_only()
        .columns([orders::Column::SagaId, orders::Column::Id])
        .filter(orders::Column::SagaId.is_in(todo_ids.iter().copied()))
        .into_tuple::<(i64, i64)>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let mut lines = Vec::new();
    for member in &todo {
        let order = *order_of
            .get(&member.saga.id)
            .ok_or_else(|| DbErr::Custom("an order just inserted was not found".into()))?;
        lines.extend(
            member
                .payload
                .lines
                .iter()
                .map(|line| order_items::ActiveModel {
                    tenant_id: Set(member.saga.tenant_id.clone()),
                    order_id: Set(order),
                    product_id: Set(line.product_id),
                    quantity: Set(line.quantity),
                    unit_price_cents: Set(line.unit_price_cents),
                    ..Default::default()
                }),
        );
    }
    insert_all(txn, lines).await?;
    sagas::Entity::update_many()
        .col_expr(
            sagas::Column::OrderId,
            Expr::cust("(SELECT orders.id FROM orders WHERE orders.saga_id = sagas.id)"),
        )
        .filter(sagas::Column::Id.is_in(todo_ids))
        .exec(txn)
        .await?;
    for member in todo.iter().filter(|m| m.payload.clear_cart) {
        cart_items::Entity::delete_many()
            .filter(cart_items::Column::TenantId.eq(member.saga.tenant_id.as_str()))
            .filter(cart_items::Column::CustomerId.eq(member.saga.customer_id))
            .filter(
                cart_items::Column::ProductId
                    .is_in(member.payload.lines.iter().map(|l| l.product_id)),
            )
            .exec(txn)
            .await?;
    }
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

/// Which of `ids` have a row in `E` (whose `saga` column holds the saga id) that
/// also matches `condition`: the sagas whose step already took effect.
async fn sagas_with<E, C>(
    conn: &C,
    saga: E::Column,
    ids: &[i64],
    condition: Condition,
) -> Result<HashSet<i64>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    Ok(E::find()
        .select_only()
        .column(saga)
        .filter(saga.is_in(ids.iter().copied()))
        .filter(condition)
        .into_tuple::<i64>()
        .all(conn)
        .await?
        .into_iter()
        .collect())
}
