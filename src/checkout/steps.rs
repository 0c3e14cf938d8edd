//! What each step and compensation does to the database. Each runs in one transaction
//! together with its step's new status, and each is idempotent (keyed by saga and step
//! through unique constraints), so a step re-run after a crash changes nothing twice.
use super::gateway::{Charge, FailureRates, Gateway};
use super::model::{OrderStatus, Payload, SagaKind, SagaStepName, StepStatus};
use crate::db::entities::{
    cart_items, order_items, orders, payments, products, saga_steps, sagas, stock_movements,
};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, ExprTrait, QueryFilter, QueryOrder, TransactionTrait,
};

/// How a step ended; `Err(DbErr)` from `run` is a transient fault to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// A permanent failure (declined, out of stock, injected): compensate.
    Failed(String),
}

pub struct StepContext<'a> {
    pub db: &'a DatabaseConnection,
    pub saga: &'a sagas::Model,
    pub payload: &'a Payload,
    pub gateway: &'a Gateway,
    pub failures: &'a FailureRates,
}

pub(super) const RESERVE: &str = "RESERVE";
const RELEASE: &str = "RELEASE";
const RESTOCK: &str = "RESTOCK";
pub(super) const CAPTURED: &str = "CAPTURED";
const REFUNDED: &str = "REFUNDED";

/// Sets a step's status (and error) inside `conn`.
pub async fn set_step<C: ConnectionTrait>(
    conn: &C,
    saga: i64,
    step: SagaStepName,
    status: StepStatus,
    error: Option<&str>,
) -> Result<(), DbErr> {
    set_steps(conn, &[saga], step, status, error).await
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
    let now = Utc::now();
    let mut update = saga_steps::Entity::update_many()
        .col_expr(saga_steps::Column::Status, Expr::value(status.as_str()))
        .filter(saga_steps::Column::SagaId.is_in(sagas.iter().copied()))
        .filter(saga_steps::Column::Name.eq(step.as_str()));
    update = match status {
        StepStatus::Running | StepStatus::Compensating => update
            .col_expr(
                saga_steps::Column::Attempts,
                Expr::col(saga_steps::Column::Attempts).add(1),
            )
            .col_expr(saga_steps::Column::StartedAt, Expr::value(now)),
        _ => update.col_expr(saga_steps::Column::FinishedAt, Expr::value(now)),
    };
    if let Some(error) = error {
        let error: String = error.chars().take(500).collect();
        update = update.col_expr(saga_steps::Column::Error, Expr::value(error));
    }
    update.exec(conn).await?;
    Ok(())
}

pub async fn run(ctx: &StepContext<'_>, step: SagaStepName) -> Result<Outcome, DbErr> {
    let kind = SagaKind::parse(&ctx.saga.kind).unwrap_or(SagaKind::Checkout);
    if kind == SagaKind::Checkout && ctx.failures.should_fail(step) {
        let outcome = Outcome::Failed(format!("{} failed (injected failure)", step.as_str()));
        set_step(
            ctx.db,
            ctx.saga.id,
            step,
            StepStatus::Failed,
            Some("injected failure"),
        )
        .await?;
        return Ok(outcome);
    }
    let txn = ctx.db.begin().await?;
    let outcome = match (kind, step) {
        (SagaKind::Checkout, SagaStepName::ReserveStock) => reserve_stock(&txn, ctx).await?,
        (SagaKind::Checkout, SagaStepName::ChargePayment) => charge_payment(&txn, ctx).await?,
        (SagaKind::Checkout, SagaStepName::CreateOrder) => create_order(&txn, ctx).await?,
        (SagaKind::CancelOrder, SagaStepName::CreateOrder) => cancel_order(&txn, ctx).await?,
        (SagaKind::CancelOrder, SagaStepName::ChargePayment) => refund(&txn, cancelled_saga(ctx))
            .await
            .map(|()| Outcome::Succeeded)?,
        (SagaKind::CancelOrder, SagaStepName::ReserveStock) => restock(&txn, ctx).await?,
    };
    match &outcome {
        Outcome::Succeeded => {
            set_step(&txn, ctx.saga.id, step, StepStatus::Succeeded, None).await?;
            txn.commit().await?;
        }
        Outcome::Failed(reason) => {
            // Nothing of the step is kept; only its failure is recorded.
            txn.rollback().await?;
            set_step(ctx.db, ctx.saga.id, step, StepStatus::Failed, Some(reason)).await?;
        }
    }
    Ok(outcome)
}

pub async fn compensate(ctx: &StepContext<'_>, step: SagaStepName) -> Result<(), DbErr> {
    let txn = ctx.db.begin().await?;
    match step {
        SagaStepName::CreateOrder => {
            set_order_status(&txn, ctx.saga.id, OrderStatus::Cancelled, None).await?;
        }
        SagaStepName::ChargePayment => refund(&txn, ctx.saga.id).await?,
        SagaStepName::ReserveStock => release_stock(&txn, ctx).await?,
    }
    set_step(&txn, ctx.saga.id, step, StepStatus::Compensated, None).await?;
    txn.commit().await
}

fn cancelled_saga(ctx: &StepContext<'_>) -> i64 {
    ctx.payload.cancels_saga.unwrap_or(ctx.saga.id)
}

async fn movement_exists(txn: &DatabaseTransaction, saga: i64, kind: &str) -> Result<bool, DbErr> {
    Ok(stock_movements::Entity::find()
        .filter(stock_movements::Column::SagaId.eq(saga))
        .filter(stock_movements::Column::Kind.eq(kind))
        .one(txn)
        .await?
        .is_some())
}

/// Takes every line's units or none: a conditional update per product that only
/// succeeds while enough stock is left, whatever runs concurrently.
async fn reserve_stock(txn: &DatabaseTransaction, ctx: &StepContext<'_>) -> Result<Outcome, DbErr> {
    if movement_exists(txn, ctx.saga.id, RESERVE).await? {
        return Ok(Outcome::Succeeded);
    }
    let mut lines = ctx.payload.lines.clone();
    // One lock order for every saga, so concurrent reservations cannot deadlock.
    lines.sort_by_key(|l| l.product_id);
    let now = Utc::now();
    for line in &lines {
        let taken = products::Entity::update_many()
            .col_expr(
                products::Column::Stock,
                Expr::col(products::Column::Stock).sub(line.quantity),
            )
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(line.product_id))
            .filter(products::Column::TenantId.eq(ctx.saga.tenant_id.as_str()))
            .filter(products::Column::Stock.gte(line.quantity))
            .exec(txn)
            .await?;
        if taken.rows_affected != 1 {
            return Ok(Outcome::Failed(format!(
                "insufficient stock for product {}",
                line.product_id
            )));
        }
    }
    stock_movements::Entity::insert_many(lines.iter().map(|line| stock_movements::ActiveModel {
        tenant_id: Set(ctx.saga.tenant_id.clone()),
        saga_id: Set(ctx.saga.id),
        product_id: Set(line.product_id),
        kind: Set(RESERVE.into()),
        quantity: Set(-line.quantity),
        created_at: Set(now),
        ..Default::default()
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(Outcome::Succeeded)
}

/// Puts back what a saga reserved, once (a RELEASE per product).
async fn release_stock(txn: &DatabaseTransaction, ctx: &StepContext<'_>) -> Result<(), DbErr> {
    return_units(txn, ctx.saga.id, ctx.saga.id, &ctx.saga.tenant_id, RELEASE).await
}

/// For a cancellation: puts back what the cancelled checkout reserved (a RESTOCK per
/// product, recorded under the cancellation saga).
async fn restock(txn: &DatabaseTransaction, ctx: &StepContext<'_>) -> Result<Outcome, DbErr> {
    return_units(
        txn,
        cancelled_saga(ctx),
        ctx.saga.id,
        &ctx.saga.tenant_id,
        RESTOCK,
    )
    .await?;
    Ok(Outcome::Succeeded)
}

async fn return_units(
    txn: &DatabaseTransaction,
    reserved_by: i64,
    record_as: i64,
    tenant: &str,
    kind: &str,
) -> Result<(), DbErr> {
    if movement_exists(txn, record_as, kind).await? {
        return Ok(());
    }
    let reserved = stock_movements::Entity::find()
        .filter(stock_movements::Column::SagaId.eq(reserved_by))
        .filter(stock_movements::Column::Kind.eq(RESERVE))
        // Products in id order, the order reservations lock them in: no deadlock.
        .order_by_asc(stock_movements::Column::ProductId)
        .all(txn)
        .await?;
    let now = Utc::now();
    for movement in &reserved {
        products::Entity::update_many()
            .col_expr(
                products::Column::Stock,
                Expr::col(products::Column::Stock).add(-movement.quantity),
            )
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(movement.product_id))
            .exec(txn)
            .await?;
    }
    if !reserved.is_empty() {
        stock_movements::Entity::insert_many(reserved.iter().map(|m| {
            stock_movements::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                saga_id: Set(record_as),
                product_id: Set(m.product_id),
                kind: Set(kind.to_owned()),
                quantity: Set(-m.quantity),
                created_at: Set(now),
                ..Default::default()
            }
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

async fn charge_payment(
    txn: &DatabaseTransaction,
    ctx: &StepContext<'_>,
) -> Result<Outcome, DbErr> {
    let existing = payments::Entity::find()
        .filter(payments::Column::SagaId.eq(ctx.saga.id))
        .one(txn)
        .await?;
    if existing.is_some() {
        return Ok(Outcome::Succeeded);
    }
    let amount = ctx.payload.total_cents();
    match ctx
        .gateway
        .charge(ctx.payload.payment_token.as_deref(), amount)
        .await
    {
        Charge::Declined(reason) => Ok(Outcome::Failed(reason)),
        Charge::Captured => {
            let now = Utc::now();
            payments::ActiveModel {
                tenant_id: Set(ctx.saga.tenant_id.clone()),
                saga_id: Set(ctx.saga.id),
                amount_cents: Set(amount),
                method: Set(ctx.payload.payment_method.as_str().into()),
                status: Set(CAPTURED.into()),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            Ok(Outcome::Succeeded)
        }
    }
}

async fn refund(txn: &DatabaseTransaction, saga: i64) -> Result<(), DbErr> {
    payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::value(REFUNDED))
        .col_expr(payments::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payments::Column::SagaId.eq(saga))
        .filter(payments::Column::Status.eq(CAPTURED))
        .exec(txn)
        .await?;
    Ok(())
}

/// The order and its lines at the prices snapshotted at checkout; then the cart is
/// cleared. The order stays PENDING until the saga completes.
async fn create_order(txn: &DatabaseTransaction, ctx: &StepContext<'_>) -> Result<Outcome, DbErr> {
    let existing = orders::Entity::find()
        .filter(orders::Column::SagaId.eq(ctx.saga.id))
        .one(txn)
        .await?;
    if existing.is_some() {
        return Ok(Outcome::Succeeded);
    }
    let now = Utc::now();
    let order = new_order(ctx.saga, ctx.payload, now).insert(txn).await?;
    order_items::Entity::insert_many(ctx.payload.lines.iter().map(|line| {
        order_items::ActiveModel {
            tenant_id: Set(ctx.saga.tenant_id.clone()),
            order_id: Set(order.id),
            product_id: Set(line.product_id),
            quantity: Set(line.quantity),
            unit_price_cents: Set(line.unit_price_cents),
            ..Default::default()
        }
    }))
    .exec_without_returning(txn)
    .await?;
    sagas::Entity::update_many()
        .col_expr(sagas::Column::OrderId, Expr::value(order.id))
        .filter(sagas::Column::Id.eq(ctx.saga.id))
        .exec(txn)
        .await?;
    if ctx.payload.clear_cart {
        cart_items::Entity::delete_many()
            .filter(cart_items::Column::TenantId.eq(ctx.saga.tenant_id.as_str()))
            .filter(cart_items::Column::CustomerId.eq(ctx.saga.customer_id))
            .filter(
                cart_items::Column::ProductId.is_in(ctx.payload.lines.iter().map(|l| l.product_id)),
            )
            .exec(txn)
            .await?;
    }
    Ok(Outcome::Succeeded)
}

/// For a cancellation: the checkout's order goes from COMPLETED to CANCELLED.
async fn cancel_order(txn: &DatabaseTransaction, ctx: &StepContext<'_>) -> Result<Outcome, DbErr> {
    let saga = cancelled_saga(ctx);
    let order = orders::Entity::find()
        .filter(orders::Column::SagaId.eq(saga))
        .one(txn)
        .await?;
    match order.as_ref().and_then(|o| OrderStatus::parse(&o.status)) {
        Some(OrderStatus::Completed) => {
            set_order_status(txn, saga, OrderStatus::Cancelled, None).await?;
            Ok(Outcome::Succeeded)
        }
        Some(OrderStatus::Cancelled) => Ok(Outcome::Succeeded),
        _ => Ok(Outcome::Failed("the order is not completed".into())),
    }
}

pub async fn set_order_status<C: ConnectionTrait>(
    conn: &C,
    saga: i64,
    status: OrderStatus,
    only_from: Option<OrderStatus>,
) -> Result<(), DbErr> {
    set_orders_status(conn, &[saga], status, only_from).await
}

/// Sets the status of the orders of many sagas at once.
pub async fn set_orders_status<C: ConnectionTrait>(
    conn: &C,
    sagas: &[i64],
    status: OrderStatus,
    only_from: Option<OrderStatus>,
) -> Result<(), DbErr> {
    if sagas.is_empty() {
        return Ok(());
    }
    let mut update = orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(status.as_str()))
        .col_expr(orders::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(orders::Column::SagaId.is_in(sagas.iter().copied()));
    if let Some(from) = only_from {
        update = update.filter(orders::Column::Status.eq(from.as_str()));
    }
    update.exec(conn).await?;
    Ok(())
}

/// The PENDING order a checkout saga creates, priced from its payload.
pub fn new_order(
    saga: &sagas::Model,
    payload: &Payload,
    now: chrono::DateTime<Utc>,
) -> orders::ActiveModel {
    orders::ActiveModel {
        tenant_id: Set(saga.tenant_id.clone()),
        customer_id: Set(saga.customer_id),
        saga_id: Set(saga.id),
        status: Set(OrderStatus::Pending.as_str().into()),
        total_cents: Set(payload.total_cents()),
        payment_method: Set(payload.payment_method.as_str().into()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}
