//! The cache-aside layer. It knows keys, tags, TTLs and backends — nothing of products
//! or carts.
//!
//! Design rules:
//! - Only the GraphQL extension reads or writes cached resolver results; services only
//!   say which tags their commits changed, and `invalidate` drops those entries.
//! - Invalidation is by tag (a set of keys per tag), never by key pattern or flush.
//! - Stale sets are refused: a loader records the tenant's invalidation sequence before
//!   reading the database, and the store is refused if any of the entry's tags was
//!   invalidated after that point (checked atomically with the write).
//! - A backend fault is a miss, never a client error; the cache recovers by itself.
mod backend;
mod extension;
mod keys;
mod memory;
mod outbox;
mod policy;
mod redis_backend;
mod stats;
mod tags;

pub use backend::{Backend, BackendState, EntryInfo, Found};
pub use extension::{CacheExtension, CacheTrace, FieldOutcome};
pub use keys::{selected_operation, tenant_prefix};
pub use memory::MemoryBackend;
pub use policy::{CachePolicy, ModulePolicy, RESPONSE_MODULE, Scope};
pub use redis_backend::{RedisBackend, connection as redis_connection};
pub use stats::{CacheStatsSnapshot, ModuleStats};
pub use tags::{record_failure, record_tag};

use crate::domain::TenantId;
use async_graphql::Value;
use std::collections::HashMap;
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
        if tags.is_empty() {
            return 0;
        }
        let cache = self.clone();
        let tenant = tenant.clone();
        let tags = tags.to_vec();
        tokio::spawn(async move { cache.invalidate_now(&tenant, &tags).await })
            .await
            .unwrap_or(0)
    }

    async fn invalidate_now(&self, tenant: &TenantId, tags: &[String]) -> u64 {
        match self.0.backend.invalidate(tenant, tags).await {
            Ok(dropped) => {
                self.0.stats.invalidated(tenant, tags, dropped);
                tracing::debug!(tenant = %tenant, ?tags, dropped, "cache invalidate");
                dropped
            }
            Err(_) => {
                self.0.stats.error(tenant, "invalidate");
                let kept = match self.0.outbox.get() {
                    Some(db) => outbox::push(db, tenant, tags).await.is_ok(),
                    None => false,
                };
                if !kept {
                    self.defer_invalidation(tenant, tags);
                }
                // Counted once kept, so a replay round that began before cannot settle it.
                self.0.faults.fetch_add(1, Ordering::SeqCst);
                0
            }
        }
    }

    /// Keeps invalidations the backend refuses in the database's outbox, and replays the
    /// outbox (this instance's and every other's) whenever the backend answers.
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
                let Some(db) = inner.outbox.get() else { return };
                let faults = inner.faults.load(Ordering::SeqCst);
                let Ok(waiting) = outbox::oldest(db, OUTBOX_BATCH).await else {
                    continue;
                };
                let drained = (waiting.len() as u64) < OUTBOX_BATCH;
                let total = waiting.len();
                let mut replayed = 0;
                for entry in waiting {
                    if inner
                        .backend
                        .invalidate(&entry.tenant, &entry.tags)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if outbox::remove(db, entry.id).await.is_err() {
                        break;
                    }
                    replayed += 1;
                }
                if replayed > 0 {
                    tracing::info!(replayed, "cache invalidations replayed from the outbox");
                }
                let memory_empty = inner.pending.lock().is_ok_and(|p| p.is_empty());
                if drained && replayed == total && memory_empty {
                    inner.replayed.fetch_max(faults, Ordering::SeqCst);
                }
            }
        });
    }

    /// Keeps an invalidation that could not reach the backend and replays it until it
    /// does: a Redis that comes back with its data (append-only) must not serve entries
    /// that a mutation made stale while it was away.
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

/// Most outbox rows replayed per round.
const OUTBOX_BATCH: u64 = 100;

/// How often the outbox is checked for invalidations to replay.
const OUTBOX_REPLAY_EVERY: Duration = Duration::from_millis(500);
