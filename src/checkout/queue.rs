//! The durable queue is the `sagas` table itself: an accepted checkout is a PENDING row
//! written in the transaction that accepted it. Workers claim rows with a lease; a
//! claim also takes RUNNING/COMPENSATING rows whose lease expired (a worker or process
//! died), so nothing accepted is ever lost and a restart resumes every unfinished saga.
use super::model::SagaStatus;
use crate::db::entities::sagas;
use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use std::time::Duration;

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Which sagas a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Accepted and never claimed: the queue proper.
    Queued,
    /// Running or compensating under an expired lease: their worker or process died.
    Expired,
}

/// Claims up to `limit` of the oldest such sagas for `lease`, oldest first.
/// `FOR UPDATE SKIP LOCKED` lets many workers claim concurrently on PostgreSQL;
/// SQLite's single writer serializes claims. The two kinds are separate statements so
/// that each is a plain scan of the (status, id) index in id order.
pub async fn claim(
    db: &DatabaseConnection,
    which: Claim,
    lease: Duration,
    limit: usize,
) -> Result<Vec<sagas::Model>, DbErr> {
    let now = now_ms();
    let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    let limit = i64::try_from(limit.max(1)).unwrap_or(1);
    let backend = db.get_database_backend();
    let postgres = backend == DatabaseBackend::Postgres;
    let param = |n: usize| {
        if postgres {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    };
    // Values bind in order: the new lease, then `now` for an expired lease, then the limit.
    let (set_status, claimable, mut values) = match which {
        Claim::Queued => (
            "status = 'RUNNING', ",
            "status = 'PENDING'".to_owned(),
            vec![until.into()],
        ),
        Claim::Expired => (
            "",
            format!(
                "status IN ('RUNNING', 'COMPENSATING') AND lease_until < {}",
                param(2)
            ),
            vec![until.into(), now.into()],
        ),
    };
    values.push(limit.into());
    let query = format!(
        "UPDATE sagas SET {set_status}lease_until = {p1}, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM sagas WHERE {claimable} ORDER BY id LIMIT {limit}{lock}) \
         RETURNING *",
        p1 = param(1),
        limit = param(values.len()),
        lock = if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        },
    );
    let statement = Statement::from_sql_and_values(backend, query, values);
    let mut claimed = db
        .query_all_raw(statement)
        .await?
        .iter()
        .map(|row| sagas::Model::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|saga| saga.id);
    Ok(claimed)
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
