//! The cache-aside layer. It knows keys, tags, TTLs and backends — nothing of products
//! or carts.
//!
//! Design rules:
//! - Only the Query root (`RequestCache`) reads or writes cached resolver results;
//!   services only say which tags their commits changed, and `invalidate` drops those
//!   entries.
//! - Invalidation is by tag (a set of keys per tag), never by key pattern or flush.
//! - Stale sets are refused: a loader records the tenant's invalidation sequence before
//!   reading the database, and the store is refused if any of the entry's tags was
//!   invalidated after that point (checked atomically with the write).
//! - A backend fault is a miss, never a client error; the cache recovers by itself.
mod backend;
mod coalesced;
mod keys;
mod memory;
pub mod outbox;
mod policy;
mod redis_backend;
mod replicas;
mod root_fields;
mod stats;
mod tags;

pub use backend::{Backend, BackendState, EntryInfo, Found};
pub use keys::{selected_operation, tenant_prefix};
pub use memory::MemoryBackend;
pub use policy::{
    ArgumentTag, CachePolicy, FieldCache, FieldDeclarations, ModulePolicy, RESPONSE_MODULE, Scope,
};
pub use redis_backend::{RedisBackend, connection as redis_connection};
pub(crate) use root_fields::RequestCache;
pub use root_fields::{CacheTrace, FieldOutcome};
pub use stats::{CacheStatsSnapshot, ModuleStats};
pub use tags::{CacheTags, Embeds, record_entity, record_failure};

use crate::domain::TenantId;
use async_graphql::Value;
use coalesced::Coalesced;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// A load in flight on this instance, which concurrent misses on the same key join.
struct Flight {
    seq: u64,
    result: watch::Receiver<Option<Option<Tagged>>>,
}

/// See `Cache::set_store_hook`.
pub type StoreHook =
    Arc<dyn Fn(String) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// What `get_raw` found.
pub enum RawLookup {
    Hit(Vec<u8>),
    /// Not cached: store under this sequence.
    Miss(u64),
    Bypass,
}

/// A cached value with the tags it was stored under.
pub type Tagged = (Value, Vec<String>);

/// Where a cached value lives: its tenant, module (for stats) and key.
pub struct Slot<'a> {
    pub tenant: &'a TenantId,
    pub module: &'a str,
    pub key: &'a str,
}

struct Inner {
    store_hook: Mutex<Option<StoreHook>>,
    /// Invalidations the backend refused, replayed in order when it answers again; in
    /// memory only when the database outbox is not attached or refused them too.
    pending: Mutex<Vec<(TenantId, Vec<String>)>>,
    /// Where refused invalidations wait for every instance to replay (`outbox`).
    outbox: OnceLock<sea_orm::DatabaseConnection>,
    /// Fault injection: how long an invalidation waits before it runs.
    invalidation_delay: Mutex<Option<Duration>>,
    /// Outbox rows of invalidations the backend took: deleted in batches.
    settled: Mutex<Vec<i64>>,
    /// Tags invalidated by the outbox rounds rather than by each change (`coalesce`).
    coalesced: OnceLock<Coalesced>,
    /// Outbox rows of this instance's invalidations the backend refused: replayed
    /// without waiting for `outbox::GRACE`.
    refused: Mutex<BTreeSet<i64>>,
    /// Backend faults this instance saw, counted: its refused invalidations, and (with
    /// the outbox attached) failed reads and writes, since while this instance could not
    /// reach the backend another one's invalidations may have been refused too.
    /// `replayed` is the count up to which every invalidation refused meanwhile is known
    /// replayed. While they differ, reads skip the cache: the backend may still hold
    /// entries a refused invalidation drops (a Redis back with its data, a promoted
    /// replica that never got it), and serving one would be a stale read after an
    /// acknowledged mutation.
    faults: AtomicU64,
    replayed: AtomicU64,
    backend: Backend,
    policy: CachePolicy,
    stats: stats::Stats,
    flights: Mutex<HashMap<String, Flight>>,
}

/// The cache facade: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Cache(Arc<Inner>);

/// What `lookup` found for a key.
pub enum Lookup {
    Hit(Value, Vec<String>),
    /// Not cached: load under this sequence (see `store`). `leader` is `Some` when this
    /// caller must load and then call `finish_flight`.
    Miss {
        seq: u64,
        leader: Option<FlightGuard>,
    },
    /// A load already running here finished with this value.
    Joined(Value, Vec<String>),
    /// The cache is disabled or unreachable: load without storing.
    Bypass,
}

/// Held by the one request loading a key; dropping it without `complete` lets the
/// followers load for themselves.
pub struct FlightGuard {
    cache: Cache,
    key: String,
    sender: watch::Sender<Option<Option<Tagged>>>,
}

impl FlightGuard {
    pub fn complete(self, value: Option<Tagged>) {
        let _ = self.sender.send(Some(value));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.cache.0.flights.lock() {
            flights.remove(&self.key);
        }
    }
}

impl Cache {
    pub fn new(backend: Backend, policy: CachePolicy) -> Self {
        Self(Arc::new(Inner {
            store_hook: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            outbox: OnceLock::new(),
            invalidation_delay: Mutex::new(None),
            settled: Mutex::new(Vec::new()),
            coalesced: OnceLock::new(),
            refused: Mutex::new(BTreeSet::new()),
            faults: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            backend,
            policy,
            stats: stats::Stats::default(),
            flights: Mutex::new(HashMap::new()),
        }))
    }

    pub fn policy(&self) -> &CachePolicy {
        &self.0.policy
    }

    pub fn enabled(&self) -> bool {
        self.0.policy.enabled
    }

    pub fn backend_state(&self) -> BackendState {
        if !self.enabled() {
            return BackendState::Disabled;
        }
        self.0.backend.state()
    }

    pub fn backend_name(&self) -> &'static str {
        self.0.backend.name()
    }

    /// Looks a key up; on a miss either joins a load in flight here or becomes its leader.
    pub async fn lookup(&self, slot: &Slot<'_>) -> Lookup {
        if !self.enabled() || self.replay_pending() {
            return Lookup::Bypass;
        }
        let found = match self.0.backend.get(slot.tenant, slot.key).await {
            Ok(found) => found,
            Err(_) => {
                self.0.stats.error(slot.tenant, slot.module);
                self.note_fault();
                return Lookup::Bypass;
            }
        };
        if let Some(value) = found.entry.as_deref().and_then(decode) {
            self.0.stats.hit(slot.tenant, slot.module);
            tracing::debug!(key = slot.key, "cache hit");
            return Lookup::Hit(value, found.tags);
        }
        self.0.stats.miss(slot.tenant, slot.module);
        tracing::debug!(key = slot.key, "cache miss");
        let seq = found.seq;
        let joined = match self.join_or_lead(slot.key, seq) {
            Ok(receiver) => receiver,
            Err(leader) => return self.lead(slot, seq, leader).await,
        };
        if let Some(mut receiver) = joined
            && let Ok(result) = receiver.wait_for(Option::is_some).await
            && let Some(Some((value, tags))) = result.clone()
        {
            return Lookup::Joined(value, tags);
        }
        Lookup::Miss { seq, leader: None }
    }

    /// `Ok(Some(receiver))` joins a flight; `Ok(None)` loads alone (a flight exists but
    /// began before an invalidation we have seen); `Err(guard)` leads a new flight.
    #[allow(clippy::type_complexity)]
    fn join_or_lead(
        &self,
        key: &str,
        seq: u64,
    ) -> Result<Option<watch::Receiver<Option<Option<Tagged>>>>, FlightGuard> {
        let Ok(mut flights) = self.0.flights.lock() else {
            return Ok(None);
        };
        match flights.get(key) {
            // Only a load that began after every invalidation we can see is fresh
            // enough to share.
            Some(flight) if flight.seq == seq => Ok(Some(flight.result.clone())),
            Some(_) => Ok(None),
            None => {
                let (sender, receiver) = watch::channel(None);
                flights.insert(
                    key.to_owned(),
                    Flight {
                        seq,
                        result: receiver,
                    },
                );
                Err(FlightGuard {
                    cache: self.clone(),
                    key: key.to_owned(),
                    sender,
                })
            }
        }
    }

    /// A new leader reads once more: the previous leader may have stored the value and
    /// left between our first read and our taking the lead.
    async fn lead(&self, slot: &Slot<'_>, seq: u64, leader: FlightGuard) -> Lookup {
        if let Ok(found) = self.0.backend.get(slot.tenant, slot.key).await
            && let Some(value) = found.entry.as_deref().and_then(decode)
        {
            leader.complete(Some((value.clone(), found.tags.clone())));
            return Lookup::Joined(value, found.tags);
        }
        Lookup::Miss {
            seq,
            leader: Some(leader),
        }
    }

    /// Stores a loaded value unless one of `tags` was invalidated after `seq`.
    pub async fn store(
        &self,
        slot: &Slot<'_>,
        value: &Value,
        ttl: Duration,
        tags: &[String],
        seq: u64,
    ) {
        if let Some(hook) = self.0.store_hook.lock().ok().and_then(|h| h.clone()) {
            hook(slot.key.to_owned()).await;
        }
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        self.store_raw(slot, bytes, ttl, tags, seq).await;
    }

    /// Reads stored bytes as they are (whole responses), counting hits and misses.
    pub async fn get_raw(&self, slot: &Slot<'_>) -> RawLookup {
        if !self.enabled() || self.replay_pending() {
            return RawLookup::Bypass;
        }
        match self.0.backend.get(slot.tenant, slot.key).await {
            Ok(Found {
                entry: Some(bytes), ..
            }) => {
                self.0.stats.hit(slot.tenant, slot.module);
                RawLookup::Hit(bytes)
            }
            Ok(found) => {
                self.0.stats.miss(slot.tenant, slot.module);
                RawLookup::Miss(found.seq)
            }
            Err(_) => {
                self.0.stats.error(slot.tenant, slot.module);
                self.note_fault();
                RawLookup::Bypass
            }
        }
    }

    /// Stores bytes unless one of `tags` was invalidated after `seq`.
    pub async fn store_raw(
        &self,
        slot: &Slot<'_>,
        bytes: Vec<u8>,
        ttl: Duration,
        tags: &[String],
        seq: u64,
    ) {
        match self
            .0
            .backend
            .set(slot.tenant, slot.key, bytes, ttl, tags, seq)
            .await
        {
            Ok(true) => {
                self.0.stats.set(slot.tenant, slot.module);
                tracing::debug!(key = slot.key, ttl = ttl.as_secs(), "cache set");
            }
            Ok(false) => tracing::debug!(
                key = slot.key,
                "cache set refused: invalidated while loading"
            ),
            Err(_) => {
                self.0.stats.error(slot.tenant, slot.module);
                self.note_fault();
            }
        }
    }

    /// Test hook: runs between a loader's database read and its cache store, so a test
    /// can commit a mutation in that window (the stale-set race).
    #[doc(hidden)]
    pub fn set_store_hook(&self, hook: Option<StoreHook>) {
        if let Ok(mut slot) = self.0.store_hook.lock() {
            *slot = hook;
        }
    }

    /// Drops every entry of `tenant` tagged with one of `tags`; returns how many.
    ///
    /// Runs in a task of its own, which the caller awaits: a request dropped after its
    /// commit (the client went away, the request timed out) must not take the
    /// invalidation (or its deferral while the backend is unreachable) with it.
    pub async fn invalidate(&self, tenant: &TenantId, tags: &[String]) -> u64 {
        self.invalidate_recorded(tenant, tags, None).await
    }

    /// `invalidate` for a change whose transaction recorded it in the outbox as
    /// `recorded` (`outbox::record`): once the backend took it, the row is deleted; if
    /// the backend refused it, the row stays for every instance to replay.
    pub async fn invalidate_recorded(
        &self,
        tenant: &TenantId,
        tags: &[String],
        recorded: Option<i64>,
    ) -> u64 {
        if tags.is_empty() {
            return 0;
        }
        let cache = self.clone();
        let tenant = tenant.clone();
        let tags = tags.to_vec();
        tokio::spawn(async move { cache.invalidate_now(&tenant, &tags, recorded).await })
            .await
            .unwrap_or(0)
    }

    async fn invalidate_now(
        &self,
        tenant: &TenantId,
        tags: &[String],
        recorded: Option<i64>,
    ) -> u64 {
        let delay = self.0.invalidation_delay.lock().ok().and_then(|d| *d);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let coalesced = self.0.outbox.get().and(self.0.coalesced.get());
        let (now, later) = match (recorded, coalesced) {
            (Some(_), Some(coalesced)) => coalesced.split(tags),
            _ => (tags.to_vec(), Vec::new()),
        };
        let invalidated = if now.is_empty() {
            Ok(0)
        } else {
            self.0.backend.invalidate(tenant, &now).await
        };
        match invalidated {
            Ok(dropped) => {
                self.0.stats.invalidated(tenant, &now, dropped);
                tracing::debug!(tenant = %tenant, tags = ?now, dropped, "cache invalidate");
                // Deleted by the outbox rounds (after theirs, with coalesced tags); without
                // them (no database attached) the row is another instance's to replay.
                match (recorded, coalesced, self.0.outbox.get()) {
                    (Some(id), Some(coalesced), _) if !later.is_empty() => {
                        coalesced.wait(tenant, later, id);
                    }
                    (Some(id), _, Some(_)) => {
                        if let Ok(mut settled) = self.0.settled.lock() {
                            settled.push(id);
                        }
                    }
                    _ => {}
                }
                dropped
            }
            Err(_) => {
                self.0.stats.error(tenant, "invalidate");
                let recorded = match (recorded, self.0.outbox.get()) {
                    (Some(id), _) => Some(id),
                    (None, Some(db)) => outbox::record(db, tenant, tags).await.ok(),
                    (None, None) => None,
                };
                match (recorded, self.0.refused.lock()) {
                    (Some(id), Ok(mut refused)) => {
                        refused.insert(id);
                    }
                    _ => self.defer_invalidation(tenant, tags),
                }
                // Counted once kept, so a replay round that began before cannot settle it.
                self.0.faults.fetch_add(1, Ordering::SeqCst);
                0
            }
        }
    }

    /// Fault injection (`FAULT_INVALIDATION_DELAY_MS`): every invalidation waits `delay`
    /// before it runs.
    pub fn delay_invalidations(&self, delay: Duration) {
        if let Ok(mut slot) = self.0.invalidation_delay.lock() {
            *slot = Some(delay);
        }
    }

    /// Runs the outbox with `db` (the database the services record their changes in):
    /// deletes the rows of invalidations the backend took, and replays the others (this
    /// instance's refused ones at once, every instance's after `outbox::GRACE`) whenever
    /// the backend answers.
    pub fn keep_refused_invalidations_in(&self, db: sea_orm::DatabaseConnection) {
        if self.0.outbox.set(db).is_err() {
            return;
        }
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(OUTBOX_REPLAY_EVERY);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.run_outbox().await;
            }
        });
    }

    /// Sends what waits for the next outbox round now (coalesced invalidations,
    /// refused ones, the deletion of settled rows): called on a graceful stop.
    pub async fn flush(&self) {
        self.0.run_outbox().await;
    }

    /// Invalidates `tags` at most once per outbox round (every `OUTBOX_REPLAY_EVERY`)
    /// instead of at every change that names them; a read of an entry under one of them
    /// may show what it was up to one round earlier. Takes effect with the outbox
    /// attached: the rounds and the durability of what they leave come from it.
    pub fn coalesce(&self, tags: &[&str]) {
        let _ = self.0.coalesced.set(Coalesced::new(tags));
    }

    /// Whether invalidations refused while this instance saw faults may still wait for
    /// a replay.
    fn replay_pending(&self) -> bool {
        self.0.faults.load(Ordering::SeqCst) != self.0.replayed.load(Ordering::SeqCst)
    }

    /// A read or write failed. Counted only with the outbox attached: its replay round
    /// is what says every invalidation refused meanwhile, by any instance, is replayed.
    fn note_fault(&self) {
        if self.0.outbox.get().is_some() {
            self.0.faults.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Keeps an invalidation that could not reach the backend and replays it until it
    /// does: a Redis that comes back with its data (append-only) must not serve entries
    /// that a mutation made stale while it was away.
    fn defer_invalidation(&self, tenant: &TenantId, tags: &[String]) {
        let Ok(mut pending) = self.0.pending.lock() else {
            return;
        };
        pending.push((tenant.clone(), tags.to_vec()));
        if pending.len() > 1 {
            return; // a replay task is already running
        }
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(inner) = weak.upgrade() else { return };
                let faults = inner.faults.load(Ordering::SeqCst);
                let batch: Vec<(TenantId, Vec<String>)> = match inner.pending.lock() {
                    Ok(pending) => pending.clone(),
                    Err(_) => return,
                };
                let mut replayed = 0;
                for (tenant, tags) in &batch {
                    if inner.backend.invalidate(tenant, tags).await.is_err() {
                        break;
                    }
                    replayed += 1;
                }
                if let Ok(mut pending) = inner.pending.lock() {
                    pending.drain(..replayed);
                    if pending.is_empty() {
                        tracing::info!(replayed, "deferred cache invalidations replayed");
                        // With an outbox, its replay round says when everything is replayed.
                        if inner.outbox.get().is_none() {
                            inner.replayed.fetch_max(faults, Ordering::SeqCst);
                        }
                        return;
                    }
                }
            }
        });
    }

    pub async fn entries(
        &self,
        tenant: &TenantId,
        module: Option<&str>,
        limit: usize,
    ) -> Vec<EntryInfo> {
        self.0
            .backend
            .entries(tenant, module, limit)
            .await
            .unwrap_or_default()
    }

    /// `tenant`'s hits, misses, sets, errors and invalidations.
    pub fn stats(&self, tenant: &TenantId) -> CacheStatsSnapshot {
        self.0.stats.snapshot(tenant, self.backend_state())
    }
}

fn decode(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

/// The tag every entry of a module carries, for `invalidateCache(module:)`.
pub fn module_tag(module: &str) -> String {
    format!("module:{module}")
}

/// The tag every entry carries, for a tenant-wide `invalidateCache`.
pub const ALL_TAG: &str = "all";

/// How often the outbox is checked for invalidations to replay.
const OUTBOX_REPLAY_EVERY: Duration = Duration::from_millis(500);
/// Outbox rows replayed per round at most.
const OUTBOX_BATCH: u64 = 100;

impl Inner {
    /// Invalidates, once per tenant, the coalesced tags changes left since the last
    /// round, and hands their rows to the batched delete.
    async fn invalidate_coalesced(&self) {
        let Some(coalesced) = self.coalesced.get() else {
            return;
        };
        for due in coalesced.take() {
            match self.backend.invalidate(&due.tenant, &due.tags).await {
                Ok(dropped) => {
                    self.stats.invalidated(&due.tenant, &due.tags, dropped);
                    if let Ok(mut settled) = self.settled.lock() {
                        settled.extend(&due.rows);
                    }
                }
                Err(_) => {
                    self.stats.error(&due.tenant, "invalidate");
                    coalesced.restore(due);
                    // As for any refused invalidation: reads skip the cache until a
                    // round finds the outbox replayed.
                    self.faults.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// One round of the outbox: delete what was taken, collapse crowded tenants, replay
    /// what is due, oldest first, until the backend refuses.
    async fn run_outbox(&self) {
        let Some(db) = self.outbox.get() else { return };
        self.invalidate_coalesced().await;
        let settled: Vec<i64> = match self.settled.lock() {
            Ok(mut settled) => std::mem::take(&mut *settled),
            Err(_) => return,
        };
        if outbox::remove(db, &settled).await.is_err() {
            if let Ok(mut again) = self.settled.lock() {
                again.extend(settled);
            }
            return;
        }
        // After a fault this instance saw, every row is replayed whatever its age, and
        // reads skip the cache until a round has replayed them all (`replay_pending`).
        let faults = self.faults.load(Ordering::SeqCst);
        let catching_up = faults != self.replayed.load(Ordering::SeqCst);
        let before = if catching_up {
            chrono::Utc::now()
        } else {
            chrono::Utc::now() - outbox::GRACE
        };
        for tenant in outbox::crowded(db, before).await.unwrap_or_default() {
            if self
                .backend
                .invalidate(&tenant, &[ALL_TAG.to_owned()])
                .await
                .is_err()
                || outbox::remove_tenant(db, &tenant, before).await.is_err()
            {
                return;
            }
            tracing::warn!(tenant = %tenant, "cache outbox crowded: the tenant's whole cache was invalidated");
        }
        let own: Vec<i64> = match self.refused.lock() {
            Ok(refused) => refused.iter().copied().collect(),
            Err(_) => return,
        };
        let Ok(waiting) = outbox::waiting(db, before, &own, OUTBOX_BATCH).await else {
            return;
        };
        if waiting.len() < OUTBOX_BATCH as usize
            && let Ok(mut refused) = self.refused.lock()
        {
            // Rows another instance replayed (and deleted) are no longer ours to replay.
            refused.retain(|id| waiting.iter().any(|w| w.id == *id));
        }
        let mut replayed = Vec::new();
        for entry in &waiting {
            if self
                .backend
                .invalidate(&entry.tenant, &entry.tags)
                .await
                .is_err()
            {
                break;
            }
            replayed.push(entry.id);
        }
        if !replayed.is_empty() {
            if outbox::remove(db, &replayed).await.is_err() {
                return;
            }
            if let Ok(mut refused) = self.refused.lock() {
                for id in &replayed {
                    refused.remove(id);
                }
            }
            tracing::info!(
                replayed = replayed.len(),
                "cache invalidations replayed from the outbox"
            );
        }
        let drained = waiting.len() < OUTBOX_BATCH as usize && replayed.len() == waiting.len();
        let memory_empty = self.pending.lock().is_ok_and(|p| p.is_empty());
        if drained && memory_empty {
            self.replayed.fetch_max(faults, Ordering::SeqCst);
        }
    }
}
