//! The worker pool: each worker claims a saga, drives it to a terminal state step by
//! step (persisting every transition before acting), publishes each transition, and
//! invalidates the cached results the saga changed.
use super::events::Events;
use super::gateway::{FailureRates, Gateway};
use super::machine::{Action, next_action};
use super::model::{OrderStatus, Payload, SagaKind, SagaStatus, SagaStepName, StepStatus};
use super::queue;
use super::steps::{self, Outcome, StepContext};
use crate::cache::Cache;
use crate::db::entities::{saga_steps, sagas};
use crate::domain::{EntityId, TenantId};
use crate::services::tags;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Everything the checkout needs, shared by the API (to accept) and the workers.
pub struct Engine {
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub events: Events,
    /// Wakes idle workers of this process when a saga is accepted here.
    pub wake: Notify,
    pub gateway: Gateway,
    pub failures: FailureRates,
    pub lease: Duration,
}

const IDLE_MIN: Duration = Duration::from_millis(10);
const IDLE_MAX: Duration = Duration::from_millis(250);

impl Engine {
    pub fn spawn_workers(self: &Arc<Self>, count: usize) {
        for worker in 0..count {
            let engine = self.clone();
            tokio::spawn(async move { engine.work(worker).await });
        }
        tracing::info!(workers = count, "checkout workers started");
    }

    async fn work(self: Arc<Self>, worker: usize) {
        let mut idle = IDLE_MIN;
        loop {
            match queue::claim(&self.db, self.lease).await {
                Ok(Some(saga)) => {
                    idle = IDLE_MIN;
                    let id = saga.id;
                    if let Err(err) = self.process(saga).await {
                        // The lease expires and the saga is claimed again.
                        tracing::warn!(worker, saga = id, error = %err, "saga interrupted; it will be resumed");
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        () = self.wake.notified() => {},
                        () = tokio::time::sleep(idle) => {},
                    }
                    idle = (idle * 2).min(IDLE_MAX);
                }
                Err(err) => {
                    tracing::warn!(worker, error = %err, "claiming a saga failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    #[tracing::instrument(skip(self, saga), fields(saga = saga.id, kind = %saga.kind))]
    async fn process(&self, saga: sagas::Model) -> Result<(), DbErr> {
        let kind = SagaKind::parse(&saga.kind).unwrap_or(SagaKind::Checkout);
        let Ok(payload) = serde_json::from_str::<Payload>(&saga.payload) else {
            self.finish(
                &saga,
                SagaStatus::Failed,
                Some("unreadable saga payload"),
                &[],
            )
            .await?;
            return Ok(());
        };
        let mut status = SagaStatus::parse(&saga.status).unwrap_or(SagaStatus::Running);
        self.events.publish(saga.id).await;
        loop {
            let steps = load_steps(&self.db, saga.id).await?;
            let action = next_action(kind, status, &steps);
            let ctx = StepContext {
                db: &self.db,
                saga: &saga,
                payload: &payload,
                gateway: &self.gateway,
                failures: &self.failures,
            };
            match action {
                Action::Done => return Ok(()),
                // A cancellation that cannot proceed is not undone: it stops, FAILED.
                Action::Compensate(_) | Action::FinishCompensated
                    if kind == SagaKind::CancelOrder =>
                {
                    let error = first_error(&self.db, saga.id).await?;
                    self.finish(
                        &saga,
                        SagaStatus::Failed,
                        error.as_deref(),
                        &payload.lines_tags(&saga),
                    )
                    .await?;
                    return Ok(());
                }
                Action::Run(step) => {
                    status = SagaStatus::Running;
                    self.begin_step(&saga, status, step, StepStatus::Running)
                        .await?;
                    let outcome = retry(|| steps::run(&ctx, step)).await?;
                    self.events.publish(saga.id).await;
                    if step == SagaStepName::ReserveStock && outcome == Outcome::Succeeded {
                        self.invalidate(&saga, payload.stock_tags()).await;
                    }
                }
                Action::Compensate(step) => {
                    status = SagaStatus::Compensating;
                    self.begin_step(&saga, status, step, StepStatus::Compensating)
                        .await?;
                    retry(|| steps::compensate(&ctx, step)).await?;
                    self.events.publish(saga.id).await;
                    if step == SagaStepName::ReserveStock {
                        self.invalidate(&saga, payload.stock_tags()).await;
                    }
                }
                Action::Complete => {
                    self.finish(
                        &saga,
                        SagaStatus::Completed,
                        None,
                        &payload.lines_tags(&saga),
                    )
                    .await?;
                    return Ok(());
                }
                Action::FinishCompensated => {
                    let error = first_error(&self.db, saga.id).await?;
                    self.finish(
                        &saga,
                        SagaStatus::Compensated,
                        error.as_deref(),
                        &payload.lines_tags(&saga),
                    )
                    .await?;
                    return Ok(());
                }
            }
        }
    }

    /// Persists "this step starts now" (and extends the lease) before it runs.
    async fn begin_step(
        &self,
        saga: &sagas::Model,
        status: SagaStatus,
        step: SagaStepName,
        step_status: StepStatus,
    ) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        sagas::Entity::update_many()
            .col_expr(sagas::Column::Status, Expr::value(status.as_str()))
            .col_expr(sagas::Column::UpdatedAt, Expr::value(Utc::now()))
            .col_expr(
                sagas::Column::LeaseUntil,
                Expr::value(queue::now_ms() + self.lease.as_millis() as i64),
            )
            .filter(sagas::Column::Id.eq(saga.id))
            .exec(&txn)
            .await?;
        steps::set_step(&txn, saga.id, step, step_status, None).await?;
        txn.commit().await?;
        self.events.publish(saga.id).await;
        Ok(())
    }

    async fn finish(
        &self,
        saga: &sagas::Model,
        status: SagaStatus,
        error: Option<&str>,
        tags: &[String],
    ) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        let mut update = sagas::Entity::update_many()
            .col_expr(sagas::Column::Status, Expr::value(status.as_str()))
            .col_expr(sagas::Column::UpdatedAt, Expr::value(Utc::now()))
            .col_expr(sagas::Column::LeaseUntil, Expr::value(Option::<i64>::None))
            .filter(sagas::Column::Id.eq(saga.id));
        if let Some(error) = error {
            update = update.col_expr(
                sagas::Column::Error,
                Expr::value(error.chars().take(500).collect::<String>()),
            );
        }
        update.exec(&txn).await?;
        if status == SagaStatus::Completed && saga.kind == SagaKind::Checkout.as_str() {
            steps::set_order_status(
                &txn,
                saga.id,
                OrderStatus::Completed,
                Some(OrderStatus::Pending),
            )
            .await?;
        }
        txn.commit().await?;
        crate::telemetry::saga_transition(status.as_str());
        tracing::info!(saga = saga.id, status = status.as_str(), "saga finished");
        self.invalidate(saga, tags.to_vec()).await;
        self.events.publish(saga.id).await;
        Ok(())
    }

    async fn invalidate(&self, saga: &sagas::Model, tags: Vec<String>) {
        if let Ok(tenant) = TenantId::parse(&saga.tenant_id) {
            self.cache.invalidate(&tenant, &tags).await;
        }
    }
}

impl Payload {
    /// Tags of the products whose stock a saga moves.
    fn stock_tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .lines
            .iter()
            .map(|l| tags::product(EntityId::from_db(l.product_id)))
            .collect();
        tags.push(tags::PRODUCTS.to_owned());
        tags
    }

    /// Everything a finished saga may have changed: stock, the cart, statistics.
    fn lines_tags(&self, saga: &sagas::Model) -> Vec<String> {
        let mut tags = self.stock_tags();
        tags.push(tags::cart(EntityId::from_db(saga.customer_id)));
        tags.push(tags::STATS.to_owned());
        tags
    }
}

async fn load_steps(
    db: &DatabaseConnection,
    saga: i64,
) -> Result<Vec<(SagaStepName, StepStatus)>, DbErr> {
    let rows = saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.eq(saga))
        .order_by_asc(saga_steps::Column::Position)
        .all(db)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some((
                SagaStepName::parse(&row.name)?,
                StepStatus::parse(&row.status)?,
            ))
        })
        .collect())
}

async fn first_error(db: &DatabaseConnection, saga: i64) -> Result<Option<String>, DbErr> {
    Ok(saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.eq(saga))
        .filter(saga_steps::Column::Status.eq(StepStatus::Failed.as_str()))
        .one(db)
        .await?
        .and_then(|step| step.error.map(|e| format!("{}: {e}", step.name))))
}

/// Retries transient database faults with backoff (20 ms, 80 ms, 320 ms).
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, DbErr>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    let mut delay = Duration::from_millis(20);
    for _ in 0..3 {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "saga step failed transiently");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
    }
    attempt().await
}
