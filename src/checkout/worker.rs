//! The worker pool: each worker claims a batch of sagas and drives them to a terminal
//! state step by step (persisting every transition before acting), publishes each
//! transition, and invalidates the cached results the sagas changed. Checkouts move
//! through each step together (`batch`); a saga that must be compensated, a
//! cancellation, or a saga whose batch step kept failing continues alone.
use super::batch::{self, Member};
use super::events::Events;
use super::gateway::{FailureRates, Gateway};
use super::machine::{Action, next_action};
use super::model::{OrderStatus, Payload, SagaKind, SagaStatus, SagaStepName, StepStatus};
use super::queue::{self, Claim};
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
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// Sagas a worker claims at once.
    pub batch: usize,
    /// Group commit for accepted sagas (PostgreSQL); `None`: one transaction each.
    pub intake: Option<super::intake::Intake>,
}

const IDLE_MIN: Duration = Duration::from_millis(10);
const IDLE_MAX: Duration = Duration::from_millis(250);
/// How often a worker looks for sagas whose lease expired (a dead worker's).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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
        let mut last_sweep: Option<Instant> = None;
        loop {
            match self.next_batch(&mut last_sweep).await {
                Ok(claimed) if !claimed.is_empty() => {
                    idle = IDLE_MIN;
                    self.process_batch(worker, claimed).await;
                }
                Ok(_) => {
                    tokio::select! {
                        () = self.wake.notified() => {},
                        () = tokio::time::sleep(idle) => {},
                    }
                    idle = (idle * 2).min(IDLE_MAX);
                }
                Err(err) => {
                    tracing::warn!(worker, error = %err, "claiming sagas failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Sagas whose lease expired first (looked for at most every `SWEEP_EVERY`, and at
    /// once on start), else the oldest queued ones.
    async fn next_batch(
        &self,
        last_sweep: &mut Option<Instant>,
    ) -> Result<Vec<sagas::Model>, DbErr> {
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            *last_sweep = Some(Instant::now());
            let expired = queue::claim(&self.db, Claim::Expired, self.lease, self.batch).await?;
            if !expired.is_empty() {
                return Ok(expired);
            }
        }
        queue::claim(&self.db, Claim::Queued, self.lease, self.batch).await
    }

    /// Moves the claimed checkouts together while they can; the rest go one at a time.
    async fn process_batch(&self, worker: usize, claimed: Vec<sagas::Model>) {
        let mut together = Vec::new();
        let mut alone = Vec::new();
        for saga in claimed {
            let payload = if saga.kind == SagaKind::Checkout.as_str() {
                serde_json::from_str::<Payload>(&saga.payload).ok()
            } else {
                None
            };
            match payload {
                Some(payload) => together.push((saga, payload)),
                None => alone.push(saga),
            }
        }
        if let Err(err) = self.advance_together(&mut together, &mut alone).await {
            tracing::warn!(worker, sagas = together.len(), error = %err, "a batch step failed; its sagas continue one at a time");
        }
        // Whatever is left (a failed batch step, or the round limit) continues alone.
        alone.extend(together.into_iter().map(|(saga, _)| saga));
        for saga in alone {
            let id = saga.id;
            if let Err(err) = self.process(saga).await {
                // The lease expires and the saga is claimed again.
                tracing::warn!(worker, saga = id, error = %err, "saga interrupted; it will be resumed");
            }
        }
    }

    /// Each round runs, for every saga in `together`, its next step, grouped by step:
    /// one batch transaction per group. Sagas that finish leave; sagas that must be
    /// compensated move to `alone`. On an error, every unfinished saga is left in
    /// `together`.
    async fn advance_together(
        &self,
        together: &mut Vec<(sagas::Model, Payload)>,
        alone: &mut Vec<sagas::Model>,
    ) -> Result<(), DbErr> {
        // Every round moves each saga one step on or out, so the steps plus a finish
        // bound the rounds.
        for _ in 0..=SagaKind::Checkout.steps().len() {
            if together.is_empty() {
                return Ok(());
            }
            let ids: Vec<i64> = together.iter().map(|(saga, _)| saga.id).collect();
            let steps = load_steps_of(&self.db, &ids).await?;
            let mut groups: HashMap<Action, Vec<(sagas::Model, Payload)>> = HashMap::new();
            for (saga, payload) in together.drain(..) {
                let status = SagaStatus::parse(&saga.status).unwrap_or(SagaStatus::Running);
                let saga_steps = steps.get(&saga.id).map_or(&[][..], Vec::as_slice);
                match next_action(SagaKind::Checkout, status, saga_steps) {
                    Action::Done => {}
                    Action::Compensate(_) => alone.push(saga),
                    action => groups.entry(action).or_default().push((saga, payload)),
                }
            }
            let mut groups: Vec<_> = groups.into_iter().collect();
            while let Some((action, group)) = groups.pop() {
                let members: Vec<Member> = group
                    .iter()
                    .map(|(saga, payload)| Member { saga, payload })
                    .collect();
                let done = match action {
                    Action::Run(step) => self.run_together(step, &members).await,
                    Action::Complete => self.finish_together(&members, SagaStatus::Completed).await,
                    _ => {
                        self.finish_together(&members, SagaStatus::Compensated)
                            .await
                    }
                };
                let unfinished = matches!(action, Action::Run(_)) || done.is_err();
                if unfinished {
                    together.extend(group);
                }
                if let Err(err) = done {
                    together.extend(groups.into_iter().flat_map(|(_, group)| group));
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    async fn run_together(&self, step: SagaStepName, members: &[Member<'_>]) -> Result<(), DbErr> {
        let ids: Vec<i64> = members.iter().map(|m| m.saga.id).collect();
        self.begin_steps(&ids, SagaStatus::Running, step, StepStatus::Running)
            .await?;
        let results =
            retry(|| batch::run(&self.db, step, members, &self.gateway, &self.failures)).await?;
        self.events.publish_many(&ids).await;
        if step == SagaStepName::ReserveStock {
            let reserved = members
                .iter()
                .filter(|m| results.succeeded.contains(&m.saga.id))
                .map(|m| (m.saga, m.payload.stock_tags()));
            self.invalidate(reserved).await;
        }
        Ok(())
    }

    async fn finish_together(
        &self,
        members: &[Member<'_>],
        status: SagaStatus,
    ) -> Result<(), DbErr> {
        let ids: Vec<i64> = members.iter().map(|m| m.saga.id).collect();
        let errors = if status == SagaStatus::Completed {
            HashMap::new()
        } else {
            first_errors(&self.db, &ids).await?
        };
        let finished: Vec<(&sagas::Model, Vec<String>)> = members
            .iter()
            .map(|m| (m.saga, m.payload.lines_tags(m.saga)))
            .collect();
        self.finish(&finished, status, &errors).await
    }

    #[tracing::instrument(skip(self, saga), fields(saga = saga.id, kind = %saga.kind))]
    async fn process(&self, saga: sagas::Model) -> Result<(), DbErr> {
        let kind = SagaKind::parse(&saga.kind).unwrap_or(SagaKind::Checkout);
        let Ok(payload) = serde_json::from_str::<Payload>(&saga.payload) else {
            let error = HashMap::from([(saga.id, "unreadable saga payload".to_owned())]);
            self.finish(&[(&saga, Vec::new())], SagaStatus::Failed, &error)
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
                    let errors = first_errors(&self.db, &[saga.id]).await?;
                    self.finish(
                        &[(&saga, payload.lines_tags(&saga))],
                        SagaStatus::Failed,
                        &errors,
                    )
                    .await?;
                    return Ok(());
                }
                Action::Run(step) => {
                    status = SagaStatus::Running;
                    self.begin_steps(&[saga.id], status, step, StepStatus::Running)
                        .await?;
                    let outcome = retry(|| steps::run(&ctx, step)).await?;
                    self.events.publish(saga.id).await;
                    if step == SagaStepName::ReserveStock && outcome == Outcome::Succeeded {
                        self.invalidate([(&saga, payload.stock_tags())]).await;
                    }
                }
                Action::Compensate(step) => {
                    status = SagaStatus::Compensating;
                    self.begin_steps(&[saga.id], status, step, StepStatus::Compensating)
                        .await?;
                    retry(|| steps::compensate(&ctx, step)).await?;
                    self.events.publish(saga.id).await;
                    if step == SagaStepName::ReserveStock {
                        self.invalidate([(&saga, payload.stock_tags())]).await;
                    }
                }
                Action::Complete => {
                    self.finish(
                        &[(&saga, payload.lines_tags(&saga))],
                        SagaStatus::Completed,
                        &HashMap::new(),
                    )
                    .await?;
                    return Ok(());
                }
                Action::FinishCompensated => {
                    let errors = first_errors(&self.db, &[saga.id]).await?;
                    self.finish(
                        &[(&saga, payload.lines_tags(&saga))],
                        SagaStatus::Compensated,
                        &errors,
                    )
                    .await?;
                    return Ok(());
                }
            }
        }
    }

    /// Persists "this step starts now" for some sagas (and extends their leases)
    /// before it runs.
    async fn begin_steps(
        &self,
        ids: &[i64],
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
            .filter(sagas::Column::Id.is_in(ids.iter().copied()))
            .exec(&txn)
            .await?;
        steps::set_steps(&txn, ids, step, step_status, None).await?;
        txn.commit().await?;
        self.events.publish_many(ids).await;
        Ok(())
    }

    /// Ends sagas in `status` (with the error, if any, of each), then drops the cached
    /// results tagged with what each changed.
    async fn finish(
        &self,
        finished: &[(&sagas::Model, Vec<String>)],
        status: SagaStatus,
        errors: &HashMap<i64, String>,
    ) -> Result<(), DbErr> {
        let mut by_error: BTreeMap<Option<&str>, Vec<i64>> = BTreeMap::new();
        for (saga, _) in finished {
            let error = errors.get(&saga.id).map(String::as_str);
            by_error.entry(error).or_default().push(saga.id);
        }
        let txn = self.db.begin().await?;
        for (error, ids) in by_error {
            let mut update = sagas::Entity::update_many()
                .col_expr(sagas::Column::Status, Expr::value(status.as_str()))
                .col_expr(sagas::Column::UpdatedAt, Expr::value(Utc::now()))
                .col_expr(sagas::Column::LeaseUntil, Expr::value(Option::<i64>::None))
                .filter(sagas::Column::Id.is_in(ids));
            if let Some(error) = error {
                update = update.col_expr(
                    sagas::Column::Error,
                    Expr::value(error.chars().take(500).collect::<String>()),
                );
            }
            update.exec(&txn).await?;
        }
        if status == SagaStatus::Completed {
            let checkouts: Vec<i64> = finished
                .iter()
                .filter(|(saga, _)| saga.kind == SagaKind::Checkout.as_str())
                .map(|(saga, _)| saga.id)
                .collect();
            steps::set_orders_status(
                &txn,
                &checkouts,
                OrderStatus::Completed,
                Some(OrderStatus::Pending),
            )
            .await?;
        }
        txn.commit().await?;
        let ids: Vec<i64> = finished.iter().map(|(saga, _)| saga.id).collect();
        for _ in &ids {
            crate::telemetry::saga_transition(status.as_str());
        }
        tracing::info!(
            first = ids.first(),
            sagas = ids.len(),
            status = status.as_str(),
            "sagas finished"
        );
        self.invalidate(finished.iter().map(|(saga, tags)| (*saga, tags.clone())))
            .await;
        self.events.publish_many(&ids).await;
        Ok(())
    }

    /// One invalidation per tenant for the union of the sagas' tags.
    async fn invalidate<'a>(
        &self,
        changed: impl IntoIterator<Item = (&'a sagas::Model, Vec<String>)>,
    ) {
        let mut by_tenant: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (saga, tags) in changed {
            by_tenant
                .entry(saga.tenant_id.as_str())
                .or_default()
                .extend(tags);
        }
        for (tenant, tags) in by_tenant {
            if let Ok(tenant) = TenantId::parse(tenant) {
                let tags: Vec<String> = tags.into_iter().collect();
                self.cache.invalidate(&tenant, &tags).await;
            }
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
    Ok(load_steps_of(db, &[saga])
        .await?
        .remove(&saga)
        .unwrap_or_default())
}

/// The steps of many sagas, in order, by saga.
async fn load_steps_of(
    db: &DatabaseConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<(SagaStepName, StepStatus)>>, DbErr> {
    let rows = saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.is_in(ids.iter().copied()))
        .order_by_asc(saga_steps::Column::SagaId)
        .order_by_asc(saga_steps::Column::Position)
        .all(db)
        .await?;
    let mut steps: HashMap<i64, Vec<(SagaStepName, StepStatus)>> = HashMap::new();
    for row in rows {
        if let (Some(name), Some(status)) = (
            SagaStepName::parse(&row.name),
            StepStatus::parse(&row.status),
        ) {
            steps.entry(row.saga_id).or_default().push((name, status));
        }
    }
    Ok(steps)
}

/// The first failed step's error of each saga, as "STEP: reason".
async fn first_errors(db: &DatabaseConnection, ids: &[i64]) -> Result<HashMap<i64, String>, DbErr> {
    let failed = saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.is_in(ids.iter().copied()))
        .filter(saga_steps::Column::Status.eq(StepStatus::Failed.as_str()))
        .order_by_asc(saga_steps::Column::Position)
        .all(db)
        .await?;
    let mut errors = HashMap::new();
    for step in failed {
        if let Some(error) = step.error {
            errors
                .entry(step.saga_id)
                .or_insert_with(|| format!("{}: {error}", step.name));
        }
    }
    Ok(errors)
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
