//! What is cached and for how long: one policy per module, from configuration.
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The same for every caller of a tenant (catalog).
    Public,
    /// Per principal (a cart); keys include who asked.
    Private,
}

#[derive(Debug, Clone)]
pub struct ModulePolicy {
    pub module: &'static str,
    pub ttl: Duration,
    pub scope: Scope,
    /// Tags every entry of the field carries besides those its values record.
    pub base_tags: &'static [&'static str],
}

#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub enabled: bool,
    pub prefix: String,
    pub negative_ttl: Duration,
    pub jitter_percent: u8,
    /// Cacheable root query fields (GraphQL names) and their policy.
    pub fields: HashMap<&'static str, ModulePolicy>,
}

/// Whole responses of documents whose root fields are all cacheable.
pub const RESPONSE_MODULE: &str = "response";

/// Root query fields that are cached, their module, default TTL (seconds), scope and
/// base tags. `CACHE_TTL_<MODULE>` overrides the TTL.
pub const FIELDS: &[(&str, &str, u64, Scope, &[&str])] = &[
    ("product", "products", 60, Scope::Public, &[]),
    ("products", "products", 60, Scope::Public, &["products"]),
    (
        "categories",
        "categories",
        300,
        Scope::Public,
        &["categories"],
    ),
    ("cart", "cart", 1800, Scope::Private, &[]),
    (
        "topProducts",
        "top_products",
        300,
        Scope::Public,
        &["stats"],
    ),
    ("salesStats", "sales_stats", 300, Scope::Private, &["stats"]),
    (
        "customerStats",
        "customer_stats",
        600,
        Scope::Private,
        &["stats"],
    ),
];

impl CachePolicy {
    /// Builds the policy; `ttl_override(module)` reads `CACHE_TTL_<MODULE>`.
    pub fn new(
        enabled: bool,
        prefix: String,
        negative_ttl: Duration,
        jitter_percent: u8,
        ttl_override: impl Fn(&str) -> Option<Duration>,
    ) -> Self {
        let fields = FIELDS
            .iter()
            .map(|&(field, module, ttl, scope, base_tags)| {
                let ttl = ttl_override(module).unwrap_or(Duration::from_secs(ttl));
                (
                    field,
                    ModulePolicy {
                        module,
                        ttl,
                        scope,
                        base_tags,
                    },
                )
            })
            .collect();
        Self {
            enabled,
            prefix,
            negative_ttl,
            jitter_percent,
            fields,
        }
    }

    pub fn modules() -> impl Iterator<Item = &'static str> {
        let mut modules: Vec<&str> = FIELDS.iter().map(|f| f.1).collect();
        modules.dedup();
        modules.push(RESPONSE_MODULE);
        modules.into_iter()
    }

    /// The longest any entry may live: the longest module TTL (or the negative TTL), with
    /// its jitter.
    pub fn longest_ttl(&self) -> Duration {
        let longest = self
            .fields
            .values()
            .map(|f| f.ttl)
            .chain([self.negative_ttl])
            .max()
            .unwrap_or_default();
        longest + longest * u32::from(self.jitter_percent) / 100
    }

    /// `ttl` plus up to `jitter_percent` more, so entries written together do not all
    /// expire together.
    pub fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter_percent == 0 || ttl.is_zero() {
            return ttl;
        }
        let max_extra = ttl.as_millis() as u64 * u64::from(self.jitter_percent) / 100;
        ttl + Duration::from_millis(rand::random_range(0..=max_extra))
    }
}
