//! Cache administration (ADMIN): statistics, entries, targeted invalidation.
use super::context::{ContextExt, Services};
use crate::cache::{ALL_TAG, BackendState, CachePolicy, EntryInfo, ModuleStats, module_tag};
use crate::cache::{FieldCache, FieldDeclarations};
use crate::error::{AppError, GqlResultExt};
use async_graphql::{Context, Object, SimpleObject};

#[derive(SimpleObject)]
pub struct CacheStats {
    hits: u64,
    misses: u64,
    hit_ratio: f64,
    sets: u64,
    /// Invalidation calls (one per mutation that changed something).
    invalidations: u64,
    /// Entries those invalidations dropped.
    invalidated_entries: u64,
    errors: u64,
    /// `memory` or `redis`.
    backend: String,
    state: BackendState,
    modules: Vec<ModuleStats>,
}

fn services<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Services> {
    ctx.data::<Services>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("services missing")).to_graphql())
}

#[derive(Default)]
pub struct AdminQuery;

impl FieldDeclarations for AdminQuery {
    const FIELDS: &'static [FieldCache] = &[
        FieldCache::never("cacheStats", "describes the cache itself, read live"),
        FieldCache::never("cacheEntries", "describes the cache itself, read live"),
    ];
}

#[Object]
impl AdminQuery {
    /// ADMIN: this tenant's hits, misses, sets, invalidations and errors, overall and per
    /// module.
    async fn cache_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<CacheStats> {
        let actor = ctx.actor()?;
        actor.require_admin().gql()?;
        let cache = &services(ctx)?.cache;
        let snapshot = cache.stats(&actor.tenant);
        Ok(CacheStats {
            hits: snapshot.overall.hits,
            misses: snapshot.overall.misses,
            hit_ratio: snapshot.overall.hit_ratio,
            sets: snapshot.overall.sets,
            invalidations: snapshot.invalidations,
            invalidated_entries: snapshot.invalidated_entries,
            errors: snapshot.overall.errors,
            backend: cache.backend_name().to_owned(),
            state: snapshot.state,
            modules: snapshot.modules,
        })
    }

    /// ADMIN: this tenant's cached entries (key, module, tags, TTL left, bytes).
    #[graphql(complexity = "super::limits::weighted(first, 50, child_complexity)")]
    async fn cache_entries(
        &self,
        ctx: &Context<'_>,
        module: Option<String>,
        #[graphql(default = 50)] first: Option<i32>,
    ) -> async_graphql::Result<Vec<CacheEntry>> {
        let actor = ctx.actor()?;
        actor.require_admin().gql()?;
        let module = module.map(|m| known_module(&m)).transpose().gql()?;
        let first = first.unwrap_or(50);
        if !(0..=500).contains(&first) {
            return Err(AppError::BadInput("first must be between 0 and 500".into()).to_graphql());
        }
        let entries = services(ctx)?
            .cache
            .entries(&actor.tenant, module, usize::try_from(first).unwrap_or(0))
            .await;
        Ok(entries.into_iter().map(CacheEntry).collect())
    }
}

/// A cached entry as `cacheEntries` shows it.
pub struct CacheEntry(EntryInfo);

#[Object]
impl CacheEntry {
    async fn key(&self) -> &str {
        &self.0.key
    }
    async fn module(&self) -> &str {
        &self.0.module
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn ttl_seconds(&self) -> i64 {
        self.0.ttl_seconds
    }
    async fn bytes(&self) -> i64 {
        self.0.bytes
    }
}

fn known_module(name: &str) -> Result<&'static str, AppError> {
    CachePolicy::modules().find(|m| *m == name).ok_or_else(|| {
        let known: Vec<&str> = CachePolicy::modules().collect();
        AppError::BadInput(format!(
            "module: unknown, expected one of {}",
            known.join(", ")
        ))
    })
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// ADMIN: drops this tenant's entries of one module or one tag (e.g. `product:12`);
    /// with no argument, the tenant's whole cache. Returns how many entries were dropped
    /// (with Redis, an upper bound: the entries stored under those tags since they were
    /// last invalidated, as invalidation does not walk the entries).
    async fn invalidate_cache(
        &self,
        ctx: &Context<'_>,
        module: Option<String>,
        tag: Option<String>,
    ) -> async_graphql::Result<u64> {
        let actor = ctx.actor()?;
        actor.require_admin().gql()?;
        let tag = match (module, tag) {
            (Some(_), Some(_)) => Err(AppError::BadInput("give module or tag, not both".into())),
            (Some(module), None) => known_module(&module).map(module_tag),
            (None, Some(tag)) => {
                let tag = tag.trim().to_owned();
                if tag.is_empty() || tag.len() > 200 || tag.contains(char::is_whitespace) {
                    Err(AppError::BadInput(
                        "tag: 1-200 characters, no spaces".into(),
                    ))
                } else {
                    Ok(tag)
                }
            }
            (None, None) => Ok(ALL_TAG.to_owned()),
        }
        .gql()?;
        Ok(services(ctx)?.cache.invalidate(&actor.tenant, &[tag]).await)
    }
}
