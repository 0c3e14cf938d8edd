//! Hit/miss/set/error counters, overall and per module, for `cacheStats`.
use super::backend::BackendState;
use super::policy::CachePolicy;
use crate::telemetry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    errors: AtomicU64,
}

pub struct Stats {
    modules: HashMap<&'static str, Counters>,
    other: Counters,
    invalidations: AtomicU64,
    invalidated_entries: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            modules: CachePolicy::modules()
                .map(|m| (m, Counters::default()))
                .collect(),
            other: Counters::default(),
            invalidations: AtomicU64::new(0),
            invalidated_entries: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct ModuleStats {
    pub module: String,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f64,
    pub sets: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct CacheStatsSnapshot {
    pub overall: ModuleStats,
    pub modules: Vec<ModuleStats>,
    pub invalidations: u64,
    pub invalidated_entries: u64,
    pub state: BackendState,
}

/// A tag's family as a bounded metric label: `product:12` -> `product`.
fn tag_family(tag: &str) -> &'static str {
    const FAMILIES: [&str; 12] = [
        "all",
        "module",
        "product",
        "products",
        "categories",
        "cart",
        "customer",
        "customers",
        "order",
        "orders",
        "stats",
        "top_products",
    ];
    let family = tag.split(':').next().unwrap_or_default();
    FAMILIES
        .iter()
        .find(|f| **f == family)
        .copied()
        .unwrap_or("other")
}

fn ratio(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

impl Stats {
    /// The module's counters and its name as a `'static` metric label.
    fn counters(&self, module: &str) -> (&'static str, &Counters) {
        self.modules
            .get_key_value(module)
            .map_or(("other", &self.other), |(name, c)| (*name, c))
    }
    pub fn hit(&self, module: &str) {
        let (name, c) = self.counters(module);
        c.hits.fetch_add(1, Relaxed);
        telemetry::cache(name, "hit");
    }
    pub fn miss(&self, module: &str) {
        let (name, c) = self.counters(module);
        c.misses.fetch_add(1, Relaxed);
        telemetry::cache(name, "miss");
    }
    pub fn set(&self, module: &str) {
        let (name, c) = self.counters(module);
        c.sets.fetch_add(1, Relaxed);
        telemetry::cache(name, "set");
    }
    pub fn error(&self, module: &str) {
        let (name, c) = self.counters(module);
        c.errors.fetch_add(1, Relaxed);
        telemetry::cache(name, "error");
    }
    pub fn invalidated(&self, tags: &[String], dropped: u64) {
        self.invalidations.fetch_add(1, Relaxed);
        self.invalidated_entries.fetch_add(dropped, Relaxed);
        for tag in tags {
            telemetry::cache_invalidation(tag_family(tag));
        }
    }

    pub fn snapshot(&self, state: BackendState) -> CacheStatsSnapshot {
        let read = |name: &str, c: &Counters| {
            let (hits, misses) = (c.hits.load(Relaxed), c.misses.load(Relaxed));
            ModuleStats {
                module: name.to_owned(),
                hits,
                misses,
                hit_ratio: ratio(hits, misses),
                sets: c.sets.load(Relaxed),
                errors: c.errors.load(Relaxed),
            }
        };
        let mut modules: Vec<ModuleStats> =
            self.modules.iter().map(|(name, c)| read(name, c)).collect();
        modules.sort_by(|a, b| a.module.cmp(&b.module));
        let mut overall = read("all", &self.other);
        for m in &modules {
            overall.hits += m.hits;
            overall.misses += m.misses;
            overall.sets += m.sets;
            overall.errors += m.errors;
        }
        overall.hit_ratio = ratio(overall.hits, overall.misses);
        CacheStatsSnapshot {
            overall,
            modules,
            invalidations: self.invalidations.load(Relaxed),
            invalidated_entries: self.invalidated_entries.load(Relaxed),
            state,
        }
    }
}
