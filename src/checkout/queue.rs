//! The durable queue is the `sagas` table itself: an accepted checkout is a PENDING row
//! written in the transaction that accepted it. Workers claim rows with a lease
//! (`lease`); a claim also takes RUNNING/COMPENSATING rows whose lease expired (a worker
//! or process died), so nothing accepted is ever lost and a restart resumes every
//! unfinished saga. This module counts what the queue holds.
use super::model::SagaStatus;
use crate::db::entities::sagas;
use chrono::Utc;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

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
    /// Failed because they gave up (attempts exhausted or a permanent error), after
    /// being compensated: dead letters, a subset of `failed`.
    pub dead_letters: u64,
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
        dead_letters: sagas::Entity::find()
            .filter(sagas::Column::TenantId.eq(tenant))
            .filter(sagas::Column::DeadLetteredAt.is_not_null())
            .count(db)
            .await?,
        oldest_wait_seconds: oldest.map_or(0.0, |s| {
            (Utc::now() - s.created_at).num_milliseconds().max(0) as f64 / 1000.0
        }),
    })
}
