//! What is cached and for how long: each root field's declaration (made beside its
//! resolver) with the configured TTL overrides applied.
use crate::domain::EntityId;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The same for every caller of a tenant (catalog).
    Public,
    /// Per principal (a cart); keys include who asked.
    Private,
}

/// How a root query field is cached, once the configuration applied.
#[derive(Debug, Clone)]
pub struct ModulePolicy {
    pub module: &'static str,
    pub ttl: Duration,
    pub scope: Scope,
    /// Tags every entry of the field carries besides those its values record.
    pub base_tags: &'static [&'static str],
    /// Tags taken from the field's arguments.
    pub argument_tags: &'static [ArgumentTag],
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

/// A root query field's cache decision, declared next to its resolver (a
/// `FieldDeclarations` impl beside each `#[Object]` root). The field-policy test fails
/// when a Query field has none.
#[derive(Debug, Clone, Copy)]
pub enum FieldCache {
    Cached(CachedField),
    /// Never cached; the reason is for the reader (and the test's failure message).
    Never {
        field: &'static str,
        reason: &'static str,
    },
}

/// A cached root field: its module, default TTL (`CACHE_TTL_<MODULE>` overrides it),
/// scope, the tags every entry carries and those read from its arguments.
#[derive(Debug, Clone, Copy)]
pub struct CachedField {
    pub field: &'static str,
    pub module: &'static str,
    pub ttl_secs: u64,
    pub scope: Scope,
    pub base_tags: &'static [&'static str],
    pub argument_tags: &'static [ArgumentTag],
}

/// A tag read from an id argument: `product(id: 5)` depends on `product:5` even when it
/// resolved to null (nothing was built that could record it).
#[derive(Debug, Clone, Copy)]
pub struct ArgumentTag {
    pub argument: &'static str,
    pub tag: fn(EntityId) -> String,
}

impl FieldCache {
    /// A cached field with no base or argument tags (add them with `tags`/`argument_tag`).
    pub const fn cached(
        field: &'static str,
        module: &'static str,
        ttl_secs: u64,
        scope: Scope,
    ) -> Self {
        Self::Cached(CachedField {
            field,
            module,
            ttl_secs,
            scope,
            base_tags: &[],
            argument_tags: &[],
        })
    }

    pub const fn never(field: &'static str, reason: &'static str) -> Self {
        Self::Never { field, reason }
    }

    /// Tags every entry of the field carries (lists it shows, statistics it reads).
    pub const fn tags(self, base_tags: &'static [&'static str]) -> Self {
        match self {
            Self::Cached(field) => Self::Cached(CachedField { base_tags, ..field }),
            never => never,
        }
    }

    /// Tags derived from id arguments.
    pub const fn argument_tags(self, argument_tags: &'static [ArgumentTag]) -> Self {
        match self {
            Self::Cached(field) => Self::Cached(CachedField {
                argument_tags,
                ..field
            }),
            never => never,
        }
    }

    pub fn field(self) -> &'static str {
        match self {
            Self::Cached(cached) => cached.field,
            Self::Never { field, .. } => field,
        }
    }
}

/// Implemented by each GraphQL root object for the Query fields it defines.
pub trait FieldDeclarations {
    const FIELDS: &'static [FieldCache];
}

/// The cached fields the schema declares, in schema order. The only place the cache reads
/// the GraphQL layer: the declarations stay beside the resolvers, and `modules()` works
/// before any schema is built (startup reads `CACHE_TTL_<MODULE>` first).
fn declared() -> impl Iterator<Item = &'static CachedField> {
    crate::graphql::cache_declarations().filter_map(|decl| match decl {
        FieldCache::Cached(cached) => Some(cached),
        FieldCache::Never { .. } => None,
    })
}

impl CachePolicy {
    /// Builds the policy; `ttl_override(module)` reads `CACHE_TTL_<MODULE>`.
    pub fn new(
        enabled: bool,
        prefix: String,
        negative_ttl: Duration,
        jitter_percent: u8,
        ttl_override: impl Fn(&str) -> Option<Duration>,
    ) -> Self {
        let fields = declared()
            .map(|decl| {
                let ttl = ttl_override(decl.module).unwrap_or(Duration::from_secs(decl.ttl_secs));
                (
                    decl.field,
                    ModulePolicy {
                        module: decl.module,
                        ttl,
                        scope: decl.scope,
                        base_tags: decl.base_tags,
                        argument_tags: decl.argument_tags,
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
        let mut modules: Vec<&str> = Vec::new();
        for module in declared().map(|f| f.module).chain([RESPONSE_MODULE]) {
            if !modules.contains(&module) {
                modules.push(module);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ttl_override: impl Fn(&str) -> Option<Duration>) -> CachePolicy {
        CachePolicy::new(true, "p".into(), Duration::from_secs(5), 10, ttl_override)
    }

    #[test]
    fn the_declarations_give_the_fields_modules_and_ttls_of_the_central_table() {
        // What `FIELDS` in this file said before the declarations moved beside the
        // resolvers; a change here is a change of behaviour, not of layout.
        let before: [(&str, &str, u64, Scope, &[&str]); 7] = [
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
            // `customers` was recorded by the resolver; it is declared now.
            (
                "customerStats",
                "customer_stats",
                600,
                Scope::Private,
                &["stats", "customers"],
            ),
        ];
        let policy = policy(|_| None);
        assert_eq!(policy.fields.len(), before.len());
        for (field, module, ttl, scope, base_tags) in before {
            let declared = &policy.fields[field];
            assert_eq!(declared.module, module, "{field}");
            assert_eq!(declared.ttl, Duration::from_secs(ttl), "{field}");
            assert_eq!(declared.scope, scope, "{field}");
            assert_eq!(declared.base_tags, base_tags, "{field}");
        }
        let modules: Vec<&str> = CachePolicy::modules().collect();
        assert_eq!(
            modules,
            [
                "products",
                "categories",
                "cart",
                "top_products",
                "sales_stats",
                "customer_stats",
                RESPONSE_MODULE
            ]
        );
        // 1800 s carts plus 10 % jitter.
        assert_eq!(policy.longest_ttl(), Duration::from_secs(1980));
    }

    #[test]
    fn a_module_override_applies_to_every_field_of_the_module() {
        let policy = policy(|module| (module == "products").then_some(Duration::from_secs(7)));
        assert_eq!(policy.fields["product"].ttl, Duration::from_secs(7));
        assert_eq!(policy.fields["products"].ttl, Duration::from_secs(7));
        assert_eq!(policy.fields["categories"].ttl, Duration::from_secs(300));
    }

    #[test]
    fn product_by_id_is_tagged_from_its_argument() {
        let policy = policy(|_| None);
        let [tag] = policy.fields["product"].argument_tags else {
            panic!("product declares one argument tag")
        };
        assert_eq!(tag.argument, "id");
        assert_eq!((tag.tag)(EntityId::from_db(5)), "product:5");
        assert!(policy.fields["products"].argument_tags.is_empty());
    }
}
