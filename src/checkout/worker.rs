//! The worker pool. A worker only loops: claim a batch (`lease`), decide each saga's
//! next action (`machine`), start it, run it through its step for the whole group
//! (`steps`), persist, publish, invalidate. A group whose transaction fails is retried
//! saga by saga, so one saga's fault cannot hold the others; a saga's own fault puts it
//! back with a backoff, or, for a checkout step out of attempts or a permanent error,
//! dead-letters it: compensated, then FAILED with the reason.
use super::events::Events;
use super::failures::FailureRates;
use super::gateway::PaymentGateway;
use super::invalidation;
use super::lease::{self, Claim, Lease};
use super::machine::{Action, next_action};
use super::model::{OrderStatus, Payload, SagaKind, SagaStatus, SagaStepName, StepStatus};
use super::steps::{self, Ctx, Member, Opening, Outcomes, Verdict, Work};
use crate::cache::Cache;
use crate::db::entities::{saga_steps, sagas};
use crate::db::in_list::padded;
use crate::services::stats::tally;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Everything the checkout needs, shared by the API (to accept) and the workers.
pub struct Engine {
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub events: Events,
    /// Wakes idle workers of this process when a saga is accepted here.
    pub wake: Notify,
    pub gateway: Arc<dyn PaymentGateway>,
    pub failures: FailureRates,
    pub lease: Duration,
    /// Sagas a worker claims at once.
    pub batch: usize,
    /// How long after a claim that emptied the queue a worker claims again (`work`).
    pub gather: Duration,
    /// Attempts a checkout step gets before its saga is dead-lettered.
    pub max_attempts: u32,
    /// Group commit for accepted sagas (PostgreSQL); `None`: one transaction each.
    pub intake: Option<super::intake::Intake>,
}

const IDLE_MIN: Duration = Duration::from_millis(10);
const IDLE_MAX: Duration = Duration::from_millis(250);
/// How often a worker looks for sagas whose lease expired (a dead worker's, or put
/// back to retry).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Actions a claimed saga goes through before it is put back: a checkout needs at
/// most six (three steps failing at the last, two compensations, the finish).
const ROUNDS: usize = 8;

/// The wait before a saga claimed `claims` times is tried again.
fn backoff(claims: i32) -> Duration {
    let exponent = u32::try_from(claims.clamp(0, 7)).unwrap_or(0);
    (Duration::from_millis(250) * 2u32.pow(exponent)).min(Duration::from_secs(30))
}

/// A constraint the data refuses will refuse it again on every retry.
fn is_permanent(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_) | SqlErr::UniqueConstraintViolation(_))
    )
}

/// With traces on, one span per saga for the step its group runs now, child of the
/// request that placed it; each ends when dropped, after the group's step.
fn step_spans(next: Next, group: &[Held]) -> Vec<tracing::Span> {
    if !crate::traces::enabled() {
        return Vec::new();
    }
    let (action, step) = match next {
        Next::Work(Work::Run(_, step)) => ("run", step.as_str()),
        Next::Work(Work::Compensate(step)) => ("compensate", step.as_str()),
        Next::Finish(status) => ("finish", status.as_str()),
    };
    group
        .iter()
        .map(|h| {
            let span = tracing::info_span!(
                "saga step",
                otel.name = %format!("saga {action} {step}"),
                saga.id = h.saga.id,
                saga.action = action,
                saga.step = step,
            );
            crate::traces::continue_from(&span, h.payload.trace.as_deref());
            span
        })
        .collect()
}

/// The running workers of a process.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Stops claiming, lets each worker finish the round it is in and put back the
    /// sagas it still holds, and waits for that up to `grace`; a worker still busy then
    /// is dropped, and its sagas are resumed by others when their lease expires.
    pub async fn stop(self, grace: Duration) {
        self.stop.send_replace(true);
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                ?grace,
                "checkout workers still busy after the grace period; their sagas wait for their leases to expire"
            );
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

/// A saga this worker holds, with its decoded payload.
struct Held {
    saga: sagas::Model,
    payload: Payload,
    /// Its row changed in ways not mirrored here (it was dead-lettered): read it again.
    stale: bool,
}

impl Held {
    fn kind(&self) -> SagaKind {
        SagaKind::parse(&self.saga.kind).unwrap_or(SagaKind::Checkout)
    }

    fn member(&self) -> Member<'_> {
        Member {
            saga: &self.saga,
            payload: &self.payload,
        }
    }
}

/// What a group of sagas does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Next {
    Work(Work),
    Finish(SagaStatus),
}

impl Engine {
    /// Starts `count` workers; `Workers::stop` stops them.
    pub fn spawn_workers(self: &Arc<Self>, count: usize) -> Workers {
        let (stop, stopping) = watch::channel(false);
        let tasks = (0..count)
            .map(|worker| {
                let engine = self.clone();
                let stopping = stopping.clone();
                tokio::spawn(async move { engine.work(worker, stopping).await })
            })
            .collect();
        tracing::info!(workers = count, "checkout workers started");
        Workers { stop, tasks }
    }

    async fn work(self: Arc<Self>, worker: usize, mut stopping: watch::Receiver<bool>) {
        let mut idle = IDLE_MIN;
        let mut last_sweep: Option<Instant> = None;
        while !*stopping.borrow() {
            let claimed_at = tokio::time::Instant::now();
            match self.next_batch(&mut last_sweep).await {
                Ok((lease, claimed)) if !claimed.is_empty() => {
                    idle = IDLE_MIN;
                    // A claim that took fewer than a batch emptied the queue. Claiming
                    // again at once would take the next few arrivals, and each step costs
                    // the database about as much for a few sagas as for a batch: under a
                    // steady load, waiting lets them gather. An idle worker still takes a
                    // lone checkout at once (`wake`), and a full claim is followed at once.
                    let gathered = claimed.len() < self.batch;
                    self.process_batch(worker, lease, claimed, &stopping).await;
                    if gathered {
                        tokio::select! {
                            () = tokio::time::sleep_until(claimed_at + self.gather) => {},
                            _ = stopping.changed() => {},
                        }
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        () = self.wake.notified() => {},
                        () = tokio::time::sleep(idle) => {},
                        _ = stopping.changed() => {},
                    }
                    idle = (idle * 2).min(IDLE_MAX);
                }
                Err(err) => {
                    tracing::warn!(worker, error = %err, "claiming sagas failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {},
                        _ = stopping.changed() => {},
                    }
                }
            }
        }
    }

    /// Sagas whose lease expired first (looked for at most every `SWEEP_EVERY`, and at
    /// once on start), else the oldest queued ones.
    async fn next_batch(
        &self,
        last_sweep: &mut Option<Instant>,
    ) -> Result<(Lease, Vec<sagas::Model>), DbErr> {
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            *last_sweep = Some(Instant::now());
            let expired = lease::claim(&self.db, Claim::Expired, self.lease, self.batch).await?;
            if !expired.1.is_empty() {
                return Ok(expired);
            }
        }
        lease::claim(&self.db, Claim::Queued, self.lease, self.batch).await
    }

    /// Moves the claimed sagas on, group by group, until each is finished, put back,
    /// or taken over by another worker.
    /// When the workers are stopping, the round under way is finished and the sagas
    /// still held are put back at once, for another worker to go on with.
    async fn process_batch(
        &self,
        worker: usize,
        lease: Lease,
        claimed: Vec<sagas::Model>,
        stopping: &watch::Receiver<bool>,
    ) {
        let mut held = Vec::with_capacity(claimed.len());
        for saga in claimed {
            match serde_json::from_str::<Payload>(&saga.payload) {
                Ok(payload) => held.push(Held {
                    saga,
                    payload,
                    stale: false,
                }),
                Err(_) => {
                    let reason = "unreadable saga payload".to_owned();
                    if let Err(err) = self.dead_letter(&lease, &saga, None, &reason, false).await {
                        tracing::warn!(worker, saga = saga.id, error = %err, "dead-lettering failed");
                    }
                }
            }
        }
        let mut renewed = Instant::now();
        for _ in 0..ROUNDS {
            if held.is_empty() {
                return;
            }
            if *stopping.borrow() {
                break;
            }
            // The whole batch's lease is renewed while it is worked on.
            if renewed.elapsed() > self.lease / 3 {
                renewed = Instant::now();
                let ids: Vec<i64> = held.iter().map(|h| h.saga.id).collect();
                if let Err(err) = lease.renew(&self.db, &ids).await {
                    tracing::warn!(worker, error = %err, "renewing a lease failed");
                }
            }
            match self.round(&lease, &mut held).await {
                Ok(()) => {}
                Err(err) => {
                    // Reading the batch failed (the database is away): the lease
                    // expires and the sagas are claimed again.
                    tracing::warn!(worker, sagas = held.len(), error = %err, "a batch stopped; its sagas will be resumed");
                    return;
                }
            }
        }
        let ids: Vec<i64> = held.iter().map(|h| h.saga.id).collect();
        if let Err(err) = lease.release(&self.db, &ids, Duration::ZERO).await {
            tracing::warn!(worker, error = %err, "putting sagas back failed; their lease will expire");
        }
    }

    /// One action for every held saga, grouped by action.
    async fn round(&self, lease: &Lease, held: &mut Vec<Held>) -> Result<(), DbErr> {
        let ids: Vec<i64> = held.iter().map(|h| h.saga.id).collect();
        // Rows this worker's writes do not mirror, read again under this lease (a saga
        // taken over meanwhile is not found: it is left to its new owner).
        let stale: Vec<i64> = held.iter().filter(|h| h.stale).map(|h| h.saga.id).collect();
        let fresh: HashMap<i64, sagas::Model> = if stale.is_empty() {
            HashMap::new()
        } else {
            sagas::Entity::find()
                .filter(sagas::Column::Id.is_in(padded(stale.iter().copied())))
                .filter(sagas::Column::Fence.eq(lease.fence))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect()
        };
        let lost: Vec<i64> = stale
            .iter()
            .copied()
            .filter(|id| !fresh.contains_key(id))
            .collect();
        taken_over(&lost);
        let steps = load_steps_of(&self.db, &ids).await?;
        let mut groups: HashMap<Next, Vec<Held>> = HashMap::new();
        let mut attempts: HashMap<i64, i32> = HashMap::new();
        for mut h in held.drain(..) {
            if h.stale {
                let Some(saga) = fresh.get(&h.saga.id) else {
                    continue;
                };
                h.saga = saga.clone();
                h.stale = false;
            }
            let saga = &h.saga;
            let status = SagaStatus::parse(&saga.status).unwrap_or(SagaStatus::Running);
            let rows = steps.get(&saga.id).map_or(&[][..], Vec::as_slice);
            let saga_steps: Vec<(SagaStepName, StepStatus)> = rows
                .iter()
                .map(|(name, status, _)| (*name, *status))
                .collect();
            let next = match (h.kind(), next_action(h.kind(), status, &saga_steps)) {
                (_, Action::Done) => continue,
                (kind, Action::Run(step)) => Next::Work(Work::Run(kind, step)),
                // A cancellation that cannot proceed is not undone: it stops, FAILED.
                (SagaKind::CancelOrder, Action::Compensate(_) | Action::FinishCompensated) => {
                    Next::Finish(SagaStatus::Failed)
                }
                (_, Action::Compensate(step)) => Next::Work(Work::Compensate(step)),
                (_, Action::Complete) => Next::Finish(SagaStatus::Completed),
                (_, Action::FinishCompensated) if saga.dead_lettered_at.is_some() => {
                    Next::Finish(SagaStatus::Failed)
                }
                (_, Action::FinishCompensated) => Next::Finish(SagaStatus::Compensated),
            };
            if let Next::Work(work) = next {
                let tried = rows.iter().find(|(name, ..)| *name == work.step());
                attempts.insert(saga.id, tried.map_or(0, |(.., attempts)| *attempts));
            }
            groups.entry(next).or_default().push(h);
        }
        for (next, group) in groups {
            let _spans = step_spans(next, &group);
            let (keep, dead) = match next {
                Next::Work(work) => self.run_group(lease, work, &group, &attempts).await,
                Next::Finish(status) => (
                    self.finish_group(lease, status, &group).await,
                    BTreeSet::new(),
                ),
            };
            let status = match next {
                Next::Work(Work::Compensate(_)) => SagaStatus::Compensating,
                _ => SagaStatus::Running,
            };
            for mut h in group.into_iter().filter(|h| keep.contains(&h.saga.id)) {
                h.saga.status = status.as_str().to_owned();
                h.stale = dead.contains(&h.saga.id);
                held.push(h);
            }
        }
        held.sort_by_key(|h| h.saga.id);
        Ok(())
    }

    /// Runs `work` for the group (after recording its intent, when it calls the payment
    /// provider); on a fault, saga by saga. A checkout step already out of attempts
    /// dead-letters its saga instead. Returns the sagas that stay with this worker, and
    /// which of them were dead-lettered (they stay, to be compensated next round).
    async fn run_group(
        &self,
        lease: &Lease,
        work: Work,
        group: &[Held],
        attempts: &HashMap<i64, i32>,
    ) -> (BTreeSet<i64>, BTreeSet<i64>) {
        let (ready, mut dead) = match self.give_up_exhausted(lease, work, group, attempts).await {
            Ok(split) => split,
            Err(err) => {
                self.put_back_all(lease, group, &err.to_string(), None)
                    .await;
                return (BTreeSet::new(), BTreeSet::new());
            }
        };
        let mut keep = dead.clone();
        // Only sagas whose status changes are written: every write of a saga row is a
        // row version PostgreSQL must vacuum, and the queue is scanned through them.
        let changing: Vec<i64> = ready
            .iter()
            .filter(|h| h.saga.status != work.saga_status().as_str())
            .map(|h| h.saga.id)
            .collect();
        let opening = Opening {
            changing: &changing,
        };
        let (ready, opening) = if work.asks_provider() {
            match self.record_intent(lease, work, &ready, &changing).await {
                Ok(started) => (
                    ready
                        .into_iter()
                        .filter(|h| started.contains(&h.saga.id))
                        .collect(),
                    None,
                ),
                Err(err) => {
                    for h in ready {
                        self.put_back(lease, h, &err.to_string(), Some(work.step()))
                            .await;
                    }
                    return (keep, dead);
                }
            }
        } else {
            (ready, Some(&opening))
        };
        let members: Vec<Member> = ready.iter().map(|h| h.member()).collect();
        if members.is_empty() {
            return (keep, dead);
        }
        let ctx = Ctx {
            db: &self.db,
            gateway: self.gateway.as_ref(),
            failures: &self.failures,
            lease,
        };
        // What a fault leaves uncounted: the attempt, when it was to be counted with
        // the effect that rolled back.
        let uncounted = opening.is_some().then_some(work.step());
        match steps::execute(&ctx, work, &members, opening).await {
            Ok(outcomes) => keep.extend(self.settle(lease, group, outcomes).await),
            Err(err) if members.len() == 1 => {
                if self
                    .fault(lease, work, group, &members[0], &err, uncounted)
                    .await
                {
                    keep.insert(members[0].id());
                    dead.insert(members[0].id());
                }
            }
            Err(err) => {
                tracing::debug!(sagas = members.len(), error = %err, "a group step failed; retrying its sagas one by one");
                let ids: Vec<i64> = members.iter().map(Member::id).collect();
                let mut renewed = Instant::now();
                for member in &members {
                    // One by one takes longer: keep the rest of the group's lease.
                    if renewed.elapsed() > self.lease / 3 {
                        renewed = Instant::now();
                        if let Err(err) = lease.renew(&self.db, &ids).await {
                            tracing::warn!(error = %err, "renewing a lease failed");
                        }
                    }
                    let one = std::slice::from_ref(member);
                    match steps::execute(&ctx, work, one, opening).await {
                        Ok(outcomes) => keep.extend(self.settle(lease, group, outcomes).await),
                        Err(err) => {
                            if self
                                .fault(lease, work, group, member, &err, uncounted)
                                .await
                            {
                                keep.insert(member.id());
                                dead.insert(member.id());
                            }
                        }
                    }
                }
            }
        }
        (keep, dead)
    }

    /// Dead-letters the group's sagas whose checkout step is out of attempts; returns
    /// the others, and those dead-lettered.
    async fn give_up_exhausted<'g>(
        &self,
        lease: &Lease,
        work: Work,
        group: &'g [Held],
        attempts: &HashMap<i64, i32>,
    ) -> Result<(Vec<&'g Held>, BTreeSet<i64>), DbErr> {
        let step = work.step();
        let limit = i32::try_from(self.max_attempts).unwrap_or(i32::MAX);
        let (exhausted, ready): (Vec<&Held>, Vec<&Held>) = group.iter().partition(|h| {
            work.gives_up() && attempts.get(&h.saga.id).copied().unwrap_or(0) >= limit
        });
        let mut dead = BTreeSet::new();
        for h in exhausted {
            let reason = format!("gave up after {limit} attempts at {}", step.as_str());
            if self
                .dead_letter(lease, &h.saga, Some(step), &reason, false)
                .await?
            {
                dead.insert(h.saga.id);
            }
        }
        if !dead.is_empty() {
            self.events
                .publish_many(&dead.iter().copied().collect::<Vec<_>>())
                .await;
        }
        Ok((ready, dead))
    }

    /// Before a call to the payment provider: "this step runs now" (one attempt more)
    /// commits for the sagas still held, so that a crash after the call leaves a saga
    /// whose next worker asks again with the same key. Returns the sagas started.
    async fn record_intent(
        &self,
        lease: &Lease,
        work: Work,
        ready: &[&Held],
        changing: &[i64],
    ) -> Result<BTreeSet<i64>, DbErr> {
        let ids: Vec<i64> = ready.iter().map(|h| h.saga.id).collect();
        let (txn, held) = lease.begin(&self.db, &ids).await?;
        let (started, lost): (Vec<i64>, Vec<i64>) =
            ids.into_iter().partition(|id| held.contains(id));
        taken_over(&lost);
        steps::enter_status(&txn, work, changing, &held, lease).await?;
        steps::count_attempts(&txn, &started, work.step()).await?;
        steps::set_steps(&txn, &started, work.step(), work.started(), None).await?;
        txn.commit().await?;
        self.events.publish_many(&started).await;
        Ok(started.into_iter().collect())
    }

    /// Publishes what a step decided, invalidates what it changed, and puts back the
    /// sagas whose provider answer was lost. Returns the sagas that stay.
    async fn settle(&self, lease: &Lease, group: &[Held], outcomes: Outcomes) -> Vec<i64> {
        let decided: Vec<i64> = outcomes.verdicts.iter().map(|(id, _)| *id).collect();
        self.events.publish_many(&decided).await;
        invalidation::invalidate(&self.cache, outcomes.recorded).await;
        taken_over(&outcomes.lost);
        let mut keep = Vec::new();
        let mut unknown = Vec::new();
        for (id, verdict) in &outcomes.verdicts {
            match verdict {
                Verdict::Unknown(_) => unknown.push(*id),
                _ => keep.push(*id),
            }
        }
        for h in group.iter().filter(|h| unknown.contains(&h.saga.id)) {
            self.put_back(lease, h, "payment provider outcome unknown", None)
                .await;
        }
        keep
    }

    /// A saga's own fault in `work`: a checkout step meeting a permanent error
    /// dead-letters the saga (which stays, to be compensated: `true`); anything else
    /// puts it back with a backoff.
    async fn fault(
        &self,
        lease: &Lease,
        work: Work,
        group: &[Held],
        member: &Member<'_>,
        err: &DbErr,
        uncounted: Option<SagaStepName>,
    ) -> bool {
        let Some(h) = group.iter().find(|h| h.saga.id == member.id()) else {
            return false;
        };
        if !(work.gives_up() && is_permanent(err)) {
            self.put_back(lease, h, &err.to_string(), uncounted).await;
            return false;
        }
        tracing::warn!(saga = h.saga.id, error = %err, "permanent error; compensating the saga");
        let reason = format!(
            "{} cannot be done: something it refers to was removed or conflicts",
            work.step().as_str()
        );
        match self
            .dead_letter(
                lease,
                &h.saga,
                Some(work.step()),
                &reason,
                uncounted.is_some(),
            )
            .await
        {
            Ok(dead) => {
                self.events.publish(h.saga.id).await;
                dead
            }
            Err(err) => {
                self.put_back(lease, h, &err.to_string(), uncounted).await;
                false
            }
        }
    }

    async fn put_back_all(
        &self,
        lease: &Lease,
        group: &[Held],
        why: &str,
        uncounted: Option<SagaStepName>,
    ) {
        for h in group {
            self.put_back(lease, h, why, uncounted).await;
        }
    }

    /// Gives a saga back to be retried after a backoff (by any worker), counting the
    /// attempt at `uncounted` that the fault rolled back.
    async fn put_back(&self, lease: &Lease, h: &Held, why: &str, uncounted: Option<SagaStepName>) {
        let wait = backoff(h.saga.attempts);
        tracing::warn!(
            saga = h.saga.id,
            retry_in_ms = wait.as_millis() as u64,
            error = why,
            "saga step failed transiently"
        );
        crate::telemetry::saga_retry();
        if let Err(err) = self.give_back(lease, h.saga.id, wait, uncounted).await {
            tracing::warn!(saga = h.saga.id, error = %err, "putting the saga back failed; its lease will expire");
        }
    }

    /// Fenced, like every write: the attempt counted and the lease shortened only
    /// while this worker still holds the saga.
    async fn give_back(
        &self,
        lease: &Lease,
        saga: i64,
        wait: Duration,
        uncounted: Option<SagaStepName>,
    ) -> Result<(), DbErr> {
        let (txn, held) = lease.begin(&self.db, &[saga]).await?;
        if held.contains(&saga) {
            if let Some(step) = uncounted {
                steps::count_attempts(&txn, &[saga], step).await?;
            }
            lease.release(&txn, &[saga], wait).await?;
        }
        txn.commit().await
    }

    /// The saga gives up: marked dead (it ends FAILED once compensated), and its
    /// current step closed so that compensation starts. A charge whose outcome may be
    /// unknown is left to be compensated (refunded or cancelled at the provider); any
    /// other step's effect commits with its status, so it did not happen: FAILED.
    async fn dead_letter(
        &self,
        lease: &Lease,
        saga: &sagas::Model,
        step: Option<SagaStepName>,
        reason: &str,
        count_attempt: bool,
    ) -> Result<bool, DbErr> {
        let (txn, held) = lease.begin(&self.db, &[saga.id]).await?;
        if !held.contains(&saga.id) {
            return Ok(false);
        }
        if let (Some(step), true) = (step, count_attempt) {
            steps::count_attempts(&txn, &[saga.id], step).await?;
        }
        let reason: String = reason.chars().take(500).collect();
        let status = if step.is_some() {
            SagaStatus::Compensating
        } else {
            SagaStatus::Failed
        };
        sagas::Entity::update_many()
            .col_expr(sagas::Column::Status, Expr::value(status.as_str()))
            .col_expr(sagas::Column::Error, Expr::value(reason.clone()))
            .col_expr(sagas::Column::DeadLetteredAt, Expr::value(Utc::now()))
            .col_expr(sagas::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(sagas::Column::Id.eq(saga.id))
            .exec(&txn)
            .await?;
        if let Some(step) = step {
            let closed = if step == SagaStepName::ChargePayment {
                StepStatus::Compensating
            } else {
                StepStatus::Failed
            };
            steps::set_steps(&txn, &[saga.id], step, closed, Some(&reason)).await?;
        }
        txn.commit().await?;
        crate::telemetry::dead_letter();
        tracing::warn!(saga = saga.id, reason, "saga dead-lettered");
        Ok(true)
    }

    /// Ends the group's sagas in `status`; on a fault they are put back.
    async fn finish_group(
        &self,
        lease: &Lease,
        status: SagaStatus,
        group: &[Held],
    ) -> BTreeSet<i64> {
        match self.finish(lease, status, group).await {
            Ok(()) => BTreeSet::new(),
            Err(err) => {
                self.put_back_all(lease, group, &err.to_string(), None)
                    .await;
                BTreeSet::new()
            }
        }
    }

    /// Ends sagas in `status` (a compensated or failed one with its first failed
    /// step's error, unless it already carries its dead letter's reason), then drops
    /// the cached results tagged with what each changed.
    async fn finish(&self, lease: &Lease, status: SagaStatus, group: &[Held]) -> Result<(), DbErr> {
        let ids: Vec<i64> = group.iter().map(|h| h.saga.id).collect();
        let errors = if status == SagaStatus::Completed {
            HashMap::new()
        } else {
            first_errors(&self.db, &ids).await?
        };
        let mut by_error: BTreeMap<Option<&str>, Vec<i64>> = BTreeMap::new();
        for h in group {
            let error = match &h.saga.error {
                Some(reason) if h.saga.dead_lettered_at.is_some() => Some(reason.as_str()),
                _ => errors.get(&h.saga.id).map(String::as_str),
            };
            by_error.entry(error).or_default().push(h.saga.id);
        }
        let (txn, held) = lease.begin(&self.db, &ids).await?;
        let lost: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !held.contains(id))
            .collect();
        taken_over(&lost);
        for (error, ids) in by_error {
            let ids: Vec<i64> = ids.into_iter().filter(|id| held.contains(id)).collect();
            if ids.is_empty() {
                continue;
            }
            let mut update = sagas::Entity::update_many()
                .col_expr(sagas::Column::Status, Expr::value(status.as_str()))
                .col_expr(sagas::Column::UpdatedAt, Expr::value(Utc::now()))
                .col_expr(sagas::Column::LeaseUntil, Expr::value(Option::<i64>::None))
                .filter(sagas::Column::Id.is_in(padded(ids)));
            if let Some(error) = error {
                update = update.col_expr(
                    sagas::Column::Error,
                    Expr::value(error.chars().take(500).collect::<String>()),
                );
            }
            update.exec(&txn).await?;
        }
        if status == SagaStatus::Completed {
            let checkouts: Vec<i64> = group
                .iter()
                .filter(|h| h.kind() == SagaKind::Checkout && held.contains(&h.saga.id))
                .map(|h| h.saga.id)
                .collect();
            let completed = steps::set_order_status(
                &txn,
                &checkouts,
                OrderStatus::Completed,
                OrderStatus::Pending,
            )
            .await?;
            tally::completed(&txn, &completed).await?;
        }
        let finished: Vec<&Held> = group.iter().filter(|h| held.contains(&h.saga.id)).collect();
        let recorded = invalidation::record(
            &txn,
            finished
                .iter()
                .map(|h| (&h.saga, h.payload.lines_tags(&h.saga))),
        )
        .await?;
        txn.commit().await?;
        for _ in &finished {
            crate::telemetry::saga_transition(status.as_str());
        }
        let ids: Vec<i64> = finished.iter().map(|h| h.saga.id).collect();
        tracing::info!(
            first = ids.first(),
            sagas = ids.len(),
            status = status.as_str(),
            "sagas finished"
        );
        invalidation::invalidate(&self.cache, recorded).await;
        self.events.publish_many(&ids).await;
        Ok(())
    }
}

/// Sagas another worker claimed since this one did (this one stalled past its lease):
/// they are its now, and nothing more is written for them here.
fn taken_over(sagas: &[i64]) {
    for saga in sagas {
        tracing::info!(
            saga,
            "lease taken over by another worker; leaving the saga to it"
        );
    }
}

/// The steps of many sagas, in order, by saga: name, status, attempts.
async fn load_steps_of(
    db: &DatabaseConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<(SagaStepName, StepStatus, i32)>>, DbErr> {
    let rows = saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.is_in(padded(ids.iter().copied())))
        .order_by_asc(saga_steps::Column::SagaId)
        .order_by_asc(saga_steps::Column::Position)
        .all(db)
        .await?;
    let mut steps: HashMap<i64, Vec<(SagaStepName, StepStatus, i32)>> = HashMap::new();
    for row in rows {
        if let (Some(name), Some(status)) = (
            SagaStepName::parse(&row.name),
            StepStatus::parse(&row.status),
        ) {
            steps
                .entry(row.saga_id)
                .or_default()
                .push((name, status, row.attempts));
        }
    }
    Ok(steps)
}

/// The first failed step's error of each saga, as "STEP: reason".
async fn first_errors(db: &DatabaseConnection, ids: &[i64]) -> Result<HashMap<i64, String>, DbErr> {
    let failed = saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.is_in(padded(ids.iter().copied())))
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
