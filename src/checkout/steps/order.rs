//! CREATE_ORDER (the order at the prices snapshotted at checkout, then the ordered
//! units leave the cart), its compensation (the PENDING order is voided), and a
//! cancellation's first step (a COMPLETED order becomes CANCELLED, once).
use super::{Member, Verdict, insert_all, sagas_with};
use crate::checkout::model::{Line, OrderStatus, Payload};
use crate::db::dialect::{Dialect, placeholders};
use crate::db::entities::{cart_items, order_items, orders, sagas};
use crate::db::in_list::padded;
use crate::services::stats::tally;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, ExprTrait, QueryFilter, QuerySelect, Value,
};
use std::collections::{BTreeMap, HashMap};

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

/// The orders (PENDING until their sagas complete) and their lines.
pub(super) async fn create(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let verdicts = members.iter().map(|m| (m.id(), Verdict::Done)).collect();
    let created = sagas_with::<orders::Entity, _>(
        txn,
        orders::Column::SagaId,
        members.iter().map(Member::id),
        Condition::all(),
    )
    .await?;
    let todo: Vec<&Member> = members
        .iter()
        .filter(|m| !created.contains(&m.id()))
        .collect();
    if todo.is_empty() {
        return Ok(verdicts);
    }
    let now = Utc::now();
    let new_orders = todo.iter().map(|m| new_order(m.saga, m.payload, now));
    insert_all(txn, new_orders.collect()).await?;
    let todo_ids: Vec<i64> = todo.iter().map(|m| m.id()).collect();
    let order_of: HashMap<i64, i64> = orders::Entity::find()
        .select_only()
        .columns([orders::Column::SagaId, orders::Column::Id])
        .filter(orders::Column::SagaId.is_in(padded(todo_ids.iter().copied())))
        .into_tuple::<(i64, i64)>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let mut lines = Vec::new();
    for member in &todo {
        let order = *order_of
            .get(&member.id())
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
        .filter(sagas::Column::Id.is_in(padded(todo_ids)))
        .exec(txn)
        .await?;
    let carts = todo.iter().filter(|m| m.payload.clear_cart).map(|m| {
        (
            m.saga.tenant_id.as_str(),
            m.saga.customer_id,
            &m.payload.lines[..],
        )
    });
    take_from_carts(txn, taken_from_carts(carts)).await?;
    Ok(verdicts)
}

/// Units to take from carts: (customer, product) → (tenant, quantity).
type Taken<'a> = BTreeMap<(i64, i64), (&'a str, i32)>;

/// The ordered units each cart gives up, in (customer, product) order. Every batch
/// locks its cart rows in that one order, so two workers whose batches share customers
/// wait for each other instead of deadlocking (PostgreSQL finds a deadlock only after a
/// second, and fails one side, whose batch then waits, holding its locks, and retries).
fn taken_from_carts<'a>(carts: impl Iterator<Item = (&'a str, i64, &'a [Line])>) -> Taken<'a> {
    let mut taken = Taken::new();
    for (tenant, customer, lines) in carts {
        for line in lines {
            taken
                .entry((customer, line.product_id))
                .or_insert((tenant, 0))
                .1 += line.quantity;
        }
    }
    taken
}

/// Removes the ordered units from the customers' carts, and no more: units added after
/// the checkout was accepted stay.
async fn take_from_carts(txn: &DatabaseTransaction, taken: Taken<'_>) -> Result<(), DbErr> {
    for ((customer, product), (tenant, quantity)) in taken {
        let line = || {
            Condition::all()
                .add(cart_items::Column::TenantId.eq(tenant))
                .add(cart_items::Column::CustomerId.eq(customer))
                .add(cart_items::Column::ProductId.eq(product))
        };
        cart_items::Entity::delete_many()
            .filter(line())
            .filter(cart_items::Column::Quantity.lte(quantity))
            .exec(txn)
            .await?;
        cart_items::Entity::update_many()
            .col_expr(
                cart_items::Column::Quantity,
                Expr::col(cart_items::Column::Quantity).sub(quantity),
            )
            .filter(line())
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Compensation: a checkout's own order, still PENDING, is voided (CANCELLED).
pub(super) async fn void(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let ids: Vec<i64> = members.iter().map(Member::id).collect();
    set_status(txn, &ids, OrderStatus::Cancelled, OrderStatus::Pending).await?;
    Ok(ids.into_iter().map(|id| (id, Verdict::Done)).collect())
}

/// A cancellation: the checkout's order goes from COMPLETED to CANCELLED. Only one
/// cancellation per order exists (a unique index), and this update is conditional, so
/// an order is cancelled at most once.
pub(super) async fn cancel(
    txn: &DatabaseTransaction,
    members: &[Member<'_>],
) -> Result<Vec<(i64, Verdict)>, DbErr> {
    let mut verdicts = Vec::with_capacity(members.len());
    for member in members {
        let cancelled = set_status(
            txn,
            &[member.checkout()],
            OrderStatus::Cancelled,
            OrderStatus::Completed,
        )
        .await?;
        tally::cancelled(txn, &cancelled).await?;
        // Already CANCELLED means by this cancellation (there is one per order, and it
        // was accepted for a completed order): a re-run after a lost commit answer.
        let verdict = if cancelled.len() == 1
            || status_of(txn, member.checkout()).await? == Some(OrderStatus::Cancelled)
        {
            Verdict::Done
        } else {
            Verdict::Failed("the order is not completed".into())
        };
        verdicts.push((member.id(), verdict));
    }
    Ok(verdicts)
}

async fn status_of(txn: &DatabaseTransaction, checkout: i64) -> Result<Option<OrderStatus>, DbErr> {
    Ok(orders::Entity::find()
        .filter(orders::Column::SagaId.eq(checkout))
        .one(txn)
        .await?
        .and_then(|o| OrderStatus::parse(&o.status)))
}

/// Moves the orders of `sagas` from `from` to `status`; the ids of those that moved.
/// A completion stamps `completed_at` (the order was charged).
pub async fn set_status(
    txn: &DatabaseTransaction,
    sagas: &[i64],
    status: OrderStatus,
    from: OrderStatus,
) -> Result<Vec<i64>, DbErr> {
    if sagas.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let mut values: Vec<Value> = vec![status.as_str().into(), now.into()];
    let completed = if status == OrderStatus::Completed {
        values.push(now.into());
        ", completed_at = ?"
    } else {
        ""
    };
    let sagas = padded(sagas.iter().copied());
    values.extend(sagas.iter().map(|&id| Value::from(id)));
    values.push(from.as_str().into());
    let sql = format!(
        "UPDATE orders SET status = ?, updated_at = ?{completed} WHERE saga_id IN ({}) AND status = ? RETURNING id",
        placeholders(sagas.len())
    );
    let moved = txn
        .query_all_raw(Dialect::of(txn).statement(&sql, values))
        .await?;
    moved
        .iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product_id: i64, quantity: i32) -> Line {
        Line {
            product_id,
            quantity,
            unit_price_cents: 100,
        }
    }

    #[test]
    fn carts_are_taken_from_in_one_order_whatever_the_batch_order() {
        let (late, early) = (
            [line(9, 1), line(2, 1)],
            [line(5, 2), line(3, 1), line(5, 1)],
        );
        let batch = [("default", 20, &late[..]), ("default", 10, &early[..])];
        let taken: Vec<_> = taken_from_carts(batch.into_iter()).into_iter().collect();
        assert_eq!(
            taken,
            vec![
                ((10, 3), ("default", 1)),
                ((10, 5), ("default", 3)),
                ((20, 2), ("default", 1)),
                ((20, 9), ("default", 1)),
            ]
        );
    }
}
