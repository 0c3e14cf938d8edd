//! Hit/miss/set/error counters per tenant, overall and per module, for `cacheStats`: a
//! tenant's admin sees the tenant's own traffic, not the other tenants' (the Prometheus
//! metrics, for the operator, count everything).
use super::backend::BackendState;
use super::policy::CachePolicy;
use crate::domain::TenantId;
use crate::telemetry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// Tenants counted apart. Any caller may name a tenant (`X-Tenant`), so the map is
/// bounded: traffic of tenants past it is counted together, shown to none of them.
const MAX_TENANTS: usize = 4_096;

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    errors: AtomicU64,
}

/// One tenant's counters.
struct TenantStats {
    modules: HashMap<&'static str, Counters>,
    other: Counters,
    invalidations: AtomicU64,
    invalidated_entries: AtomicU64,
}

impl Default for TenantStats {
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

#[derive(Default)]
pub struct Stats {
    tenants: RwLock<HashMap<TenantId, Arc<TenantStats>>>,
    overflow: Arc<TenantStats>,
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
    const FAMILIES: [&str; 13] = [
        "all",
        "module",
        "product",
        "stock",
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
    /// `tenant`'s counters, made on its first use.
    fn tenant(&self, tenant: &TenantId) -> Arc<TenantStats> {
        if let Ok(tenants) = self.tenants.read()
            && let Some(stats) = tenants.get(tenant)
        {
            return stats.clone();
        }
        let Ok(mut tenants) = self.tenants.write() else {
            return self.overflow.clone();
        };
        if tenants.len() >= MAX_TENANTS && !tenants.contains_key(tenant) {
            return self.overflow.clone();
        }
        tenants.entry(tenant.clone()).or_default().clone()
    }

    fn count(&self, tenant: &TenantId, module: &str, outcome: &'static str) {
        let stats = self.tenant(tenant);
        let (name, c) = stats
            .modules
            .get_key_value(module)
            .map_or(("other", &stats.other), |(name, c)| (*name, c));
        let counter = match outcome {
            "hit" => &c.hits,
            "miss" => &c.misses,
            "set" => &c.sets,
            _ => &c.errors,
        };
        counter.fetch_add(1, Relaxed);
        telemetry::cache(name, outcome);
    }

    pub fn hit(&self, tenant: &TenantId, module: &str) {
        self.count(tenant, module, "hit");
    }
    pub fn miss(&self, tenant: &TenantId, module: &str) {
        self.count(tenant, module, "miss");
    }
    pub fn set(&self, tenant: &TenantId, module: &str) {
        self.count(tenant, module, "set");
    }
    pub fn error(&self, tenant: &TenantId, module: &str) {
        self.count(tenant, module, "error");
    }
    pub fn invalidated(&self, tenant: &TenantId, tags: &[String], dropped: u64) {
        let stats = self.tenant(tenant);
        stats.invalidations.fetch_add(1, Relaxed);
        stats.invalidated_entries.fetch_add(dropped, Relaxed);
        for tag in tags {
            telemetry::cache_invalidation(tag_family(tag));
        }
    }

    /// `tenant`'s counters (all zero before its first cached field).
    pub fn snapshot(&self, tenant: &TenantId, state: BackendState) -> CacheStatsSnapshot {
        let stats = self
            .tenants
            .read()
            .ok()
            .and_then(|tenants| tenants.get(tenant).cloned())
            .unwrap_or_default();
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
        let mut modules: Vec<ModuleStats> = stats
            .modules
            .iter()
            .map(|(name, c)| read(name, c))
            .collect();
        modules.sort_by(|a, b| a.module.cmp(&b.module));
        let mut overall = read("all", &stats.other);
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
            invalidations: stats.invalidations.load(Relaxed),
            invalidated_entries: stats.invalidated_entries.load(Relaxed),
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_sees_its_own_counts_and_the_map_is_bounded() {
        let stats = Stats::default();
        let a = TenantId::parse("a").unwrap_or_else(|e| panic!("{e:?}"));
        let b = TenantId::parse("b").unwrap_or_else(|e| panic!("{e:?}"));
        stats.hit(&a, "catalog");
        stats.miss(&b, "catalog");
        stats.miss(&b, "catalog");
        let of = |t: &TenantId| stats.snapshot(t, BackendState::Ok).overall;
        assert_eq!((of(&a).hits, of(&a).misses), (1, 0));
        assert_eq!((of(&b).hits, of(&b).misses), (0, 2));
        for n in 0..MAX_TENANTS + 10 {
            let t = TenantId::parse(&format!("t{n}")).unwrap_or_else(|e| panic!("{e:?}"));
            stats.hit(&t, "catalog");
        }
        assert!(stats.tenants.read().map(|t| t.len()).unwrap_or(0) <= MAX_TENANTS);
        assert_eq!(of(&a).hits, 1);
    }
}
