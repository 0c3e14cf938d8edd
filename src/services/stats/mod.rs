//! Statistics from orders. They are read from aggregates that the transactions
//! changing orders keep up to date (`tally`), so a read costs an index lookup whatever
//! the number of orders; only the partial days at the ends of a requested range are
//! summed from the orders themselves (`days`).
//!
//! Revenue counts charged orders (completed, even if cancelled later) in the period
//! they were placed; refunds count cancelled ones in the period they were cancelled.
//! Top products and customers' orders count completed orders only.
mod days;
pub mod tally;

use crate::auth::Actor;
use crate::checkout::model::PaymentMethod;
use crate::db::dialect::{Dialect, rows};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, FromQueryResult, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum Granularity {
    Day,
    Month,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct ProductSalesRow {
    pub product_id: i64,
    pub units: i64,
    pub revenue_cents: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct PeriodRow {
    pub period: String,
    pub orders: i64,
    pub revenue_cents: i64,
    pub refunds_cents: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
struct MoveRow {
    period: String,
    method: String,
    orders: i64,
    revenue_cents: i64,
    refunds_cents: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct CountRow {
    pub period: String,
    pub count: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct ActiveCustomerRow {
    pub customer_id: i64,
    pub orders: i64,
    pub spent_cents: i64,
}

#[derive(Debug, Clone)]
pub struct SalesStats {
    pub series: Vec<PeriodRow>,
    pub orders: i64,
    pub revenue_cents: i64,
    pub refunds_cents: i64,
    pub by_method: Vec<(PaymentMethod, i64, i64)>,
    pub top_products: Vec<ProductSalesRow>,
}

#[derive(Debug, Clone)]
pub struct CustomerStats {
    pub new_per_month: Vec<CountRow>,
    pub most_active: Vec<ActiveCustomerRow>,
    pub buyers: i64,
    pub repeat_buyers: i64,
}

type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

impl Granularity {
    /// The period of a `YYYY-MM-DD` day column.
    fn of_day(self, day: &str) -> String {
        match self {
            Self::Day => day.to_owned(),
            Self::Month => format!("substr({day}, 1, 7)"),
        }
    }

    /// The period of a timestamp column.
    fn of_time(self, dialect: Dialect, column: &str) -> String {
        self.of_day(&dialect.day(column))
    }
}

/// SQL selecting rows of `daily` for the whole days of `range`, and rows of `edge` for
/// each partial day (`edge` filters on `column` between two placeholders). All parts
/// are joined by UNION ALL, the daily part first, since it names the columns; `values`
/// receives their parameters.
fn by_days(
    actor: &Actor,
    range: Range,
    daily: &str,
    edges: &[(&str, &str)],
    values: &mut Vec<Value>,
) -> String {
    let tenant: Value = actor.tenant.as_str().into();
    let split = days::split(range.0, range.1);
    let mut parts = Vec::new();
    if let Some((first, last)) = split.days {
        let mut sql = format!("{daily} WHERE tenant_id = ?");
        values.push(tenant.clone());
        if let Some(first) = first {
            sql.push_str(" AND day >= ?");
            values.push(first.into());
        }
        if let Some(last) = last {
            sql.push_str(" AND day < ?");
            values.push(last.into());
        }
        parts.push(sql);
    } else {
        parts.push(format!("{daily} WHERE 1 = 0"));
    }
    for (from, to) in split.edges {
        for (select, column) in edges {
            parts.push(format!(
                "{select} AND o.tenant_id = ? AND {column} >= ? AND {column} < ?"
            ));
            values.extend([tenant.clone(), from.into(), to.into()]);
        }
    }
    parts.join(" UNION ALL ")
}

/// Top products by units in completed orders (cancelled ones excluded), with revenue.
pub async fn top_products(
    db: &DatabaseConnection,
    actor: &Actor,
    limit: i32,
    range: Range,
) -> AppResult<Vec<ProductSalesRow>> {
    if !(1..=100).contains(&limit) {
        return Err(AppError::BadInput("limit must be between 1 and 100".into()));
    }
    if range == (None, None) {
        return rows(
            db,
            "SELECT product_id, units, revenue_cents FROM product_sales \
             WHERE tenant_id = ? AND units > 0 ORDER BY units DESC, product_id LIMIT ?",
            vec![actor.tenant.as_str().into(), i64::from(limit).into()],
        )
        .await;
    }
    let mut values = Vec::new();
    let sales = by_days(
        actor,
        range,
        "SELECT product_id, units, revenue_cents AS revenue FROM daily_product_sales",
        &[(
            "SELECT oi.product_id, oi.quantity, oi.quantity * oi.unit_price_cents \
             FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.status = 'COMPLETED'",
            "o.created_at",
        )],
        &mut values,
    );
    values.push(i64::from(limit).into());
    rows(
        db,
        &format!(
            "SELECT product_id, CAST(SUM(units) AS BIGINT) AS units, \
             CAST(SUM(revenue) AS BIGINT) AS revenue_cents FROM ({sales}) AS sales \
             GROUP BY product_id HAVING SUM(units) > 0 ORDER BY units DESC, product_id LIMIT ?"
        ),
        values,
    )
    .await
}

pub async fn sales(
    db: &DatabaseConnection,
    actor: &Actor,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    granularity: Granularity,
) -> AppResult<SalesStats> {
    actor.require_staff()?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(AppError::BadInput("from must be before to".into()));
    }
    let dialect = Dialect::of(db);
    let placed = granularity.of_time(dialect, "o.created_at");
    let cancelled = granularity.of_time(dialect, "o.updated_at");
    let mut values = Vec::new();
    let moves = by_days(
        actor,
        (from, to),
        &format!(
            "SELECT {} AS period, payment_method AS method, orders, revenue_cents AS revenue, \
             refunds_cents AS refunds FROM daily_sales",
            granularity.of_day("day")
        ),
        &[
            (
                &format!(
                    "SELECT {placed}, o.payment_method, 1, o.total_cents, 0 FROM orders o \
                     WHERE o.completed_at IS NOT NULL"
                ),
                "o.created_at",
            ),
            (
                &format!(
                    "SELECT {cancelled}, o.payment_method, 0, 0, o.total_cents FROM orders o \
                     WHERE o.completed_at IS NOT NULL AND o.status = 'CANCELLED'"
                ),
                "o.updated_at",
            ),
        ],
        &mut values,
    );
    let found: Vec<MoveRow> = rows(
        db,
        &format!(
            "SELECT period, method, CAST(SUM(orders) AS BIGINT) AS orders, \
             CAST(SUM(revenue) AS BIGINT) AS revenue_cents, CAST(SUM(refunds) AS BIGINT) AS refunds_cents \
             FROM ({moves}) AS moves GROUP BY period, method"
        ),
        values,
    )
    .await?;
    let mut series: BTreeMap<String, PeriodRow> = BTreeMap::new();
    let mut methods: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in found {
        let period = series.entry(row.period.clone()).or_insert(PeriodRow {
            period: row.period,
            orders: 0,
            revenue_cents: 0,
            refunds_cents: 0,
        });
        period.orders += row.orders;
        period.revenue_cents += row.revenue_cents;
        period.refunds_cents += row.refunds_cents;
        if row.orders > 0 {
            let method = methods.entry(row.method).or_default();
            method.0 += row.orders;
            method.1 += row.revenue_cents;
        }
    }
    let mut by_method: Vec<(PaymentMethod, i64, i64)> = methods
        .into_iter()
        .filter_map(|(method, (orders, revenue))| {
            Some((PaymentMethod::parse(&method)?, orders, revenue))
        })
        .collect();
    by_method.sort_by_key(|m| std::cmp::Reverse(m.2));
    let series: Vec<PeriodRow> = series.into_values().collect();
    let top_products = top_products(db, actor, 10, (from, to)).await?;
    Ok(SalesStats {
        orders: series.iter().map(|p| p.orders).sum(),
        revenue_cents: series.iter().map(|p| p.revenue_cents).sum(),
        refunds_cents: series.iter().map(|p| p.refunds_cents).sum(),
        series,
        by_method,
        top_products,
    })
}

pub async fn customers(db: &DatabaseConnection, actor: &Actor) -> AppResult<CustomerStats> {
    actor.require_staff()?;
    let dialect = Dialect::of(db);
    let tenant: Value = actor.tenant.as_str().into();
    let new_per_month: Vec<CountRow> = rows(
        db,
        &format!(
            "SELECT {} AS period, CAST(COUNT(*) AS BIGINT) AS count FROM customers c WHERE c.tenant_id = ? AND c.guest = FALSE GROUP BY period ORDER BY period",
            Granularity::Month.of_time(dialect, "c.created_at")
        ),
        vec![tenant.clone()],
    )
    .await?;
    let most_active: Vec<ActiveCustomerRow> = rows(
        db,
        "SELECT customer_id, orders, spent_cents FROM customer_sales WHERE tenant_id = ? AND orders > 0 \
         ORDER BY orders DESC, spent_cents DESC, customer_id LIMIT 10",
        vec![tenant.clone()],
    )
    .await?;
    let buyers: Vec<CountRow> = rows(
        db,
        "SELECT 'all' AS period, CAST(COUNT(*) AS BIGINT) AS count FROM customer_sales WHERE tenant_id = ? AND orders >= 1 \
         UNION ALL \
         SELECT 'repeat' AS period, CAST(COUNT(*) AS BIGINT) AS count FROM customer_sales WHERE tenant_id = ? AND orders >= 2",
        vec![tenant.clone(), tenant],
    )
    .await?;
    let count = |name: &str| {
        buyers
            .iter()
            .find(|r| r.period == name)
            .map_or(0, |r| r.count)
    };
    Ok(CustomerStats {
        new_per_month,
        most_active,
        buyers: count("all"),
        repeat_buyers: count("repeat"),
    })
}
