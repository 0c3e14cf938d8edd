//! Hit/miss/set/error counters, overall and per module, for `cacheStats`.
use super::backend::BackendState;
use super::policy::CachePolicy;
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

fn ratio(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

impl Stats {
    fn counters(&self, module: &str) -> &Counters {
        self.modules.get(module).unwrap_or(&self.other)
    }
    pub fn hit(&self, module: &str) {
        self.counters(module).hits.fetch_add(1, Relaxed);
    }
    pub fn miss(&self, module: &str) {
        self.counters(module).misses.fetch_add(1, Relaxed);
    }
    pub fn set(&self, module: &str) {
        self.counters(module).sets.fetch_add(1, Relaxed);
    }
    pub fn error(&self, module: &str) {
        self.counters(module).errors.fetch_add(1, Relaxed);
    }
    pub fn invalidated(&self, _tags: &[String], dropped: u64) {
        self.invalidations.fetch_add(1, Relaxed);
        self.invalidated_entries.fetch_add(dropped, Relaxed);
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
