//! The durable queue is the `sagas` table itself: an accepted checkout is a PENDING row
//! written in the transaction that accepted it. Workers claim rows with a lease; a
//! claim also takes RUNNING/COMPENSATING rows whose lease expired (a worker or process
//! died), so nothing accepted is ever lost and a restart resumes every unfinished saga.
use super::model::SagaStatus;
use crate::db::entities::sagas;
use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use std::time::Duration;

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Claims the oldest claimable saga for `lease`: `FOR UPDATE SKIP LOCKED` lets many
/// workers claim concurrently on PostgreSQL; SQLite's single writer serializes claims.
pub async fn claim(
    db: &DatabaseConnection,
    lease: Duration,
) -> Result<Option<sagas::Model>, DbErr> {
    let now = now_ms();
    let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    let backend = db.get_database_backend();
    let (sql, lock) = match backend {
        DatabaseBackend::Postgres => ("$1", " FOR UPDATE SKIP LOCKED"),
        _ => ("?", ""),
    };
    let param = |n: usize| {
        if sql == "$1" {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    };
    let query = format!(
        "UPDATE sagas SET status = CASE WHEN status = 'PENDING' THEN 'RUNNING' ELSE status END, \
         lease_until = {p1}, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM sagas WHERE status = 'PENDING' \
            OR (status IN ('RUNNING', 'COMPENSATING') AND lease_until < {p2}) \
            ORDER BY id LIMIT 1{lock}) \
         RETURNING *",
        p1 = param(1),
        p2 = param(2),
    );
    let statement = Statement::from_sql_and_values(backend, query, [until.into(), now.into()]);
    let row = db.query_one_raw(statement).await?;
    row.map(|row| sagas::Model::from_query_result(&row, ""))
        .transpose()
}

/// Extends a claimed saga's lease (called as each step starts).
pub async fn extend_lease<C: ConnectionTrait>(
    conn: &C,
    saga: i64,
    lease: Duration,
) -> Result<(), DbErr> {
    let until = now_ms() + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    sagas::Entity::update_many()
        .col_expr(
            sagas::Column::LeaseUntil,
            sea_orm::sea_query::Expr::value(until),
        )
        .filter(sagas::Column::Id.eq(saga))
        .exec(conn)
        .await?;
    Ok(())
}

/// Sagas accepted and not yet claimed, across tenants (for `/metrics`).
pub async fn depth(db: &DatabaseConnection) -> Result<u64, DbErr> {
    sagas::Entity::find()
        .filter(sagas::Column::Status.eq(SagaStatus::Pending.as_str()))
        .count(db)
        .await
}

#[derive(Debug, Clone, Default, async_graphql::SimpleObject)]
pub struct QueueStats {
    /// Accepted, not yet claimed.
    pub queued: u64,
    /// Claimed and running or compensating.
    pub running: u64,
    /// Completed or compensated.
    pub done: u64,
    pub failed: u64,
    /// Seconds the oldest queued saga has waited.
    pub oldest_wait_seconds: f64,
}

pub async fn stats(db: &DatabaseConnection, tenant: &str) -> Result<QueueStats, DbErr> {
    let count = |statuses: &'static [SagaStatus]| {
        sagas::Entity::find()
            .filter(sagas::Column::TenantId.eq(tenant))
            .filter(sagas::Column::Status.is_in(statuses.iter().map(|s| s.as_str())))
            .count(db)
    };
    let oldest = sagas::Entity::find()
        .filter(sagas::Column::TenantId.eq(tenant))
        .filter(sagas::Column::Status.eq(SagaStatus::Pending.as_str()))
        .order_by_asc(sagas::Column::Id)
        .one(db)
        .await?;
    Ok(QueueStats {
        queued: count(&[SagaStatus::Pending]).await?,
        running: count(&[SagaStatus::Running, SagaStatus::Compensating]).await?,
        done: count(&[SagaStatus::Completed, SagaStatus::Compensated]).await?,
        failed: count(&[SagaStatus::Failed]).await?,
        oldest_wait_seconds: oldest.map_or(0.0, |s| {
            (Utc::now() - s.created_at).num_milliseconds().max(0) as f64 / 1000.0
        }),
    })
}
