//! Statistics from orders, as aggregate SQL (GROUP BY in the database, never loops
//! over rows in Rust). Revenue counts charged orders (completed, or cancelled later);
//! refunds count cancelled orders in the period they were cancelled.
use crate::auth::Actor;
use crate::checkout::model::PaymentMethod;
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, FromQueryResult, Statement, Value,
};

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
pub struct MethodRow {
    pub method: String,
    pub orders: i64,
    pub revenue_cents: i64,
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

/// SQL that differs between the databases. Timestamps are text on SQLite starting
/// with `YYYY-MM-DD`, so a prefix is the period.
struct Dialect {
    backend: DatabaseBackend,
}

impl Dialect {
    fn period(&self, column: &str, granularity: Granularity) -> String {
        match (self.backend, granularity) {
            (DatabaseBackend::Postgres, Granularity::Month) => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')")
            }
            (DatabaseBackend::Postgres, Granularity::Day) => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
            }
            (_, Granularity::Month) => format!("substr({column}, 1, 7)"),
            (_, Granularity::Day) => format!("substr({column}, 1, 10)"),
        }
    }

    /// Numbered placeholders for PostgreSQL, `?` for SQLite.
    fn params(&self, sql: &str) -> String {
        if self.backend != DatabaseBackend::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len());
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }
}

async fn rows<T: FromQueryResult>(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> AppResult<Vec<T>> {
    let dialect = Dialect {
        backend: db.get_database_backend(),
    };
    let statement = Statement::from_sql_and_values(dialect.backend, dialect.params(sql), values);
    let found = db.query_all_raw(statement).await?;
    found
        .iter()
        .map(|row| T::from_query_result(row, ""))
        .collect::<Result<Vec<T>, _>>()
        .map_err(AppError::from)
}

const CHARGED: &str = "o.status IN ('COMPLETED', 'CANCELLED')";

/// Top products by units in completed orders (cancelled ones excluded), with revenue.
pub async fn top_products(
    db: &DatabaseConnection,
    actor: &Actor,
    limit: i32,
    range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> AppResult<Vec<ProductSalesRow>> {
    if !(1..=100).contains(&limit) {
        return Err(AppError::BadInput("limit must be between 1 and 100".into()));
    }
    let (range_sql, mut values) = range_filter(actor, range);
    values.push(i64::from(limit).into());
    rows(
        db,
        &format!(
            "SELECT oi.product_id AS product_id, CAST(SUM(oi.quantity) AS BIGINT) AS units, \
             CAST(SUM(oi.quantity * oi.unit_price_cents) AS BIGINT) AS revenue_cents \
             FROM order_items oi JOIN orders o ON o.id = oi.order_id \
             WHERE o.status = 'COMPLETED' AND {range_sql} \
             GROUP BY oi.product_id ORDER BY units DESC, oi.product_id LIMIT ?"
        ),
        values,
    )
    .await
}

fn range_filter(
    actor: &Actor,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> (String, Vec<Value>) {
    let mut sql = "o.tenant_id = ?".to_owned();
    let mut values: Vec<Value> = vec![actor.tenant.as_str().into()];
    if let Some(from) = from {
        sql.push_str(" AND o.created_at >= ?");
        values.push(from.into());
    }
    if let Some(to) = to {
        sql.push_str(" AND o.created_at < ?");
        values.push(to.into());
    }
    (sql, values)
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
    let dialect = Dialect {
        backend: db.get_database_backend(),
    };
    let (range_sql, values) = range_filter(actor, (from, to));
    let created = dialect.period("o.created_at", granularity);
    let cancelled = dialect.period("o.updated_at", granularity);
    // Sales by the period they were placed, refunds by the period they were cancelled.
    let series_sql = format!(
        "SELECT period, CAST(SUM(orders) AS BIGINT) AS orders, CAST(SUM(revenue) AS BIGINT) AS revenue_cents, \
         CAST(SUM(refunds) AS BIGINT) AS refunds_cents FROM ( \
           SELECT {created} AS period, 1 AS orders, o.total_cents AS revenue, 0 AS refunds FROM orders o WHERE {CHARGED} AND {range_sql} \
           UNION ALL \
           SELECT {cancelled} AS period, 0, 0, o.total_cents FROM orders o WHERE o.status = 'CANCELLED' AND {range_sql} \
         ) AS moves GROUP BY period ORDER BY period"
    );
    let mut series_values = values.clone();
    series_values.extend(values.clone());
    let series: Vec<PeriodRow> = rows(db, &series_sql, series_values).await?;
    let methods: Vec<MethodRow> = rows(
        db,
        &format!(
            "SELECT o.payment_method AS method, CAST(COUNT(*) AS BIGINT) AS orders, CAST(SUM(o.total_cents) AS BIGINT) AS revenue_cents \
             FROM orders o WHERE {CHARGED} AND {range_sql} GROUP BY o.payment_method ORDER BY revenue_cents DESC"
        ),
        values,
    )
    .await?;
    let top_products = top_products(db, actor, 10, (from, to)).await?;
    Ok(SalesStats {
        orders: series.iter().map(|p| p.orders).sum(),
        revenue_cents: series.iter().map(|p| p.revenue_cents).sum(),
        refunds_cents: series.iter().map(|p| p.refunds_cents).sum(),
        series,
        by_method: methods
            .into_iter()
            .filter_map(|m| Some((PaymentMethod::parse(&m.method)?, m.orders, m.revenue_cents)))
            .collect(),
        top_products,
    })
}

pub async fn customers(db: &DatabaseConnection, actor: &Actor) -> AppResult<CustomerStats> {
    actor.require_staff()?;
    let dialect = Dialect {
        backend: db.get_database_backend(),
    };
    let tenant: Value = actor.tenant.as_str().into();
    let new_per_month: Vec<CountRow> = rows(
        db,
        &format!(
            "SELECT {} AS period, CAST(COUNT(*) AS BIGINT) AS count FROM customers c WHERE c.tenant_id = ? GROUP BY period ORDER BY period",
            dialect.period("c.created_at", Granularity::Month)
        ),
        vec![tenant.clone()],
    )
    .await?;
    let most_active: Vec<ActiveCustomerRow> = rows(
        db,
        "SELECT o.customer_id AS customer_id, CAST(COUNT(*) AS BIGINT) AS orders, CAST(SUM(o.total_cents) AS BIGINT) AS spent_cents \
         FROM orders o WHERE o.tenant_id = ? AND o.status = 'COMPLETED' \
         GROUP BY o.customer_id ORDER BY orders DESC, spent_cents DESC, o.customer_id LIMIT 10",
        vec![tenant.clone()],
    )
    .await?;
    let buyers: Vec<CountRow> = rows(
        db,
        "SELECT 'all' AS period, CAST(COUNT(*) AS BIGINT) AS count FROM \
         (SELECT o.customer_id FROM orders o WHERE o.tenant_id = ? AND o.status = 'COMPLETED' GROUP BY o.customer_id) AS b \
         UNION ALL \
         SELECT 'repeat' AS period, CAST(COUNT(*) AS BIGINT) AS count FROM \
         (SELECT o.customer_id FROM orders o WHERE o.tenant_id = ? AND o.status = 'COMPLETED' GROUP BY o.customer_id HAVING COUNT(*) >= 2) AS r",
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
