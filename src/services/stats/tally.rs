//! Keeps the sales aggregates up to date inside the transactions that move orders: a
//! completion adds its orders, a cancellation of a completed order takes them out of
//! the product and customer figures and books the refund on the day it happened.
//! Rows are upserted in key order, so two workers completing batches at once lock
//! shared rows in the same order and cannot deadlock.
use crate::db::dialect::{Dialect, placeholders, rows};
use crate::db::in_list::padded;
use crate::error::AppResult;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, TransactionTrait, Value,
};
use std::collections::BTreeSet;

/// Orders per statement: well under either database's bind-parameter limit.
const CHUNK: usize = 500;

/// Adds orders that just completed.
pub async fn completed(txn: &impl ConnectionTrait, orders: &[i64]) -> Result<(), DbErr> {
    apply(txn, orders, Move::Completed).await
}

/// Takes out completed orders that were just cancelled and books their refunds.
pub async fn cancelled(txn: &impl ConnectionTrait, orders: &[i64]) -> Result<(), DbErr> {
    apply(txn, orders, Move::Cancelled).await
}

/// Recomputes every aggregate from the orders (after orders were written by other means
/// than checkouts: the seed command, imports).
pub async fn rebuild(db: &DatabaseConnection) -> AppResult<()> {
    let txn = db.begin().await?;
    migration::sales_aggregates::rebuild(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Where the aggregates differ from a recomputation from the orders (nothing, when
/// every change of an order went through `completed`/`cancelled`). Changes nothing.
pub async fn verify(db: &DatabaseConnection) -> AppResult<Vec<String>> {
    let txn = db.begin().await?;
    let kept = lines(&txn).await?;
    migration::sales_aggregates::rebuild(&txn).await?;
    let recomputed = lines(&txn).await?;
    txn.rollback().await?;
    let kept: BTreeSet<String> = kept.into_iter().collect();
    let recomputed: BTreeSet<String> = recomputed.into_iter().collect();
    Ok(kept
        .symmetric_difference(&recomputed)
        .map(|line| {
            let side = if kept.contains(line) {
                "kept"
            } else {
                "recomputed"
            };
            format!("{side}: {line}")
        })
        .collect())
}

#[derive(FromQueryResult)]
struct Line {
    line: String,
}

/// Every aggregate row that is not all zeros (a product whose orders were all
/// cancelled keeps a row of zeros; a recomputation has none), as text.
async fn lines(txn: &impl ConnectionTrait) -> AppResult<Vec<String>> {
    let found: Vec<Line> = rows(
        txn,
        "SELECT 'product_sales ' || tenant_id || ' ' || product_id || ' ' || units || ' ' || revenue_cents AS line \
           FROM product_sales WHERE units <> 0 OR revenue_cents <> 0 \
         UNION ALL SELECT 'daily_product_sales ' || tenant_id || ' ' || day || ' ' || product_id || ' ' || units || ' ' || revenue_cents \
           FROM daily_product_sales WHERE units <> 0 OR revenue_cents <> 0 \
         UNION ALL SELECT 'daily_sales ' || tenant_id || ' ' || day || ' ' || payment_method || ' ' || orders || ' ' || revenue_cents || ' ' || refunds_cents \
           FROM daily_sales WHERE orders <> 0 OR revenue_cents <> 0 OR refunds_cents <> 0 \
         UNION ALL SELECT 'customer_sales ' || tenant_id || ' ' || customer_id || ' ' || orders || ' ' || spent_cents \
           FROM customer_sales WHERE orders <> 0 OR spent_cents <> 0",
        vec![],
    )
    .await?;
    Ok(found.into_iter().map(|l| l.line).collect())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Move {
    Completed,
    Cancelled,
}

async fn apply(txn: &impl ConnectionTrait, orders: &[i64], how: Move) -> Result<(), DbErr> {
    let dialect = Dialect::of(txn);
    for chunk in orders.chunks(CHUNK) {
        let chunk = padded(chunk.iter().copied());
        let ids = placeholders(chunk.len());
        for sql in statements(dialect, how, &ids) {
            let values: Vec<Value> = chunk.iter().map(|&id| id.into()).collect();
            txn.execute_raw(dialect.statement(&sql, values)).await?;
        }
    }
    Ok(())
}

fn add(table: &str, columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn statements(dialect: Dialect, how: Move, ids: &str) -> Vec<String> {
    let sign = if how == Move::Completed { "" } else { "-" };
    let placed = dialect.day("o.created_at");
    let lines =
        format!("FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.id IN ({ids})");
    let mut statements = vec![
        format!(
            "INSERT INTO product_sales (tenant_id, product_id, units, revenue_cents) \
             SELECT o.tenant_id, oi.product_id, {sign}SUM(oi.quantity), {sign}SUM(oi.quantity * oi.unit_price_cents) \
             {lines} GROUP BY o.tenant_id, oi.product_id ORDER BY o.tenant_id, oi.product_id \
             ON CONFLICT (tenant_id, product_id) DO UPDATE SET {}",
            add("product_sales", &["units", "revenue_cents"])
        ),
        format!(
            "INSERT INTO daily_product_sales (tenant_id, day, product_id, units, revenue_cents) \
             SELECT o.tenant_id, {placed}, oi.product_id, {sign}SUM(oi.quantity), {sign}SUM(oi.quantity * oi.unit_price_cents) \
             {lines} GROUP BY o.tenant_id, {placed}, oi.product_id ORDER BY o.tenant_id, {placed}, oi.product_id \
             ON CONFLICT (tenant_id, day, product_id) DO UPDATE SET {}",
            add("daily_product_sales", &["units", "revenue_cents"])
        ),
        format!(
            "INSERT INTO customer_sales (tenant_id, customer_id, orders, spent_cents) \
             SELECT o.tenant_id, o.customer_id, {sign}COUNT(*), {sign}SUM(o.total_cents) \
             FROM orders o WHERE o.id IN ({ids}) GROUP BY o.tenant_id, o.customer_id \
             ORDER BY o.tenant_id, o.customer_id \
             ON CONFLICT (tenant_id, customer_id) DO UPDATE SET {}",
            add("customer_sales", &["orders", "spent_cents"])
        ),
    ];
    // Sales by the day the order was placed; refunds by the day it was cancelled (now).
    let (day, orders, revenue, refunds) = match how {
        Move::Completed => (placed, "COUNT(*)", "SUM(o.total_cents)", "0"),
        Move::Cancelled => (dialect.day("o.updated_at"), "0", "0", "SUM(o.total_cents)"),
    };
    statements.push(format!(
        "INSERT INTO daily_sales (tenant_id, day, payment_method, orders, revenue_cents, refunds_cents) \
         SELECT o.tenant_id, {day}, o.payment_method, {orders}, {revenue}, {refunds} \
         FROM orders o WHERE o.id IN ({ids}) GROUP BY o.tenant_id, {day}, o.payment_method \
         ORDER BY o.tenant_id, {day}, o.payment_method \
         ON CONFLICT (tenant_id, day, payment_method) DO UPDATE SET {}",
        add("daily_sales", &["orders", "revenue_cents", "refunds_cents"])
    ));
    statements
}
