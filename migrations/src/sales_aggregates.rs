//! Recomputes the sales aggregates from the orders: once when they are introduced, and
//! on demand (`shopgraph rebuild-stats`) after orders were written by other means than
//! checkouts (imports, the seed command). The transactions that change orders keep
//! them up to date otherwise (`services::stats::tally`).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

/// The UTC day (`YYYY-MM-DD`) of a timestamp column. SQLite stores timestamps as UTC
/// text starting with the date.
pub fn day_of(backend: DatabaseBackend, column: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        _ => format!("substr({column}, 1, 10)"),
    }
}

/// Replaces every aggregate with one computed from the orders. Run it inside a
/// transaction: on PostgreSQL it locks the aggregates first, so a checkout completing
/// meanwhile adds its order after the rebuild instead of being counted twice or lost.
pub async fn rebuild<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        db.execute_unprepared(
            "LOCK TABLE product_sales, daily_product_sales, daily_sales, customer_sales IN EXCLUSIVE MODE",
        )
        .await?;
    }
    let placed = day_of(backend, "o.created_at");
    let cancelled = day_of(backend, "o.updated_at");
    let statements = [
        // Orders from before `completed_at` existed: a completed one, or a cancelled one
        // whose checkout had completed (a cancellation), was charged.
        "UPDATE orders SET completed_at = updated_at WHERE completed_at IS NULL AND status = 'COMPLETED'".to_owned(),
        "UPDATE orders SET completed_at = created_at WHERE completed_at IS NULL AND status = 'CANCELLED' \
         AND saga_id IN (SELECT id FROM sagas WHERE status = 'COMPLETED')".to_owned(),
        "DELETE FROM product_sales".to_owned(),
        "DELETE FROM daily_product_sales".to_owned(),
        "DELETE FROM daily_sales".to_owned(),
        "DELETE FROM customer_sales".to_owned(),
        "INSERT INTO product_sales (tenant_id, product_id, units, revenue_cents) \
         SELECT o.tenant_id, oi.product_id, SUM(oi.quantity), SUM(oi.quantity * oi.unit_price_cents) \
         FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.status = 'COMPLETED' \
         GROUP BY o.tenant_id, oi.product_id".to_owned(),
        format!(
            "INSERT INTO daily_product_sales (tenant_id, day, product_id, units, revenue_cents) \
             SELECT o.tenant_id, {placed}, oi.product_id, SUM(oi.quantity), SUM(oi.quantity * oi.unit_price_cents) \
             FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.status = 'COMPLETED' \
             GROUP BY o.tenant_id, {placed}, oi.product_id"
        ),
        format!(
            "INSERT INTO daily_sales (tenant_id, day, payment_method, orders, revenue_cents, refunds_cents) \
             SELECT tenant_id, day, method, SUM(orders), SUM(revenue), SUM(refunds) FROM ( \
               SELECT o.tenant_id AS tenant_id, {placed} AS day, o.payment_method AS method, 1 AS orders, \
                 o.total_cents AS revenue, 0 AS refunds FROM orders o WHERE o.completed_at IS NOT NULL \
               UNION ALL \
               SELECT o.tenant_id, {cancelled}, o.payment_method, 0, 0, o.total_cents FROM orders o \
                 WHERE o.completed_at IS NOT NULL AND o.status = 'CANCELLED' \
             ) AS moves GROUP BY tenant_id, day, method"
        ),
        "INSERT INTO customer_sales (tenant_id, customer_id, orders, spent_cents) \
         SELECT o.tenant_id, o.customer_id, COUNT(*), SUM(o.total_cents) FROM orders o \
         WHERE o.status = 'COMPLETED' GROUP BY o.tenant_id, o.customer_id".to_owned(),
    ];
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}
