//! Tags invalidated once per outbox round instead of once per change. Statistics are
//! rebuilt from every completed order: invalidating them at each of hundreds of
//! checkouts a second would make every statistics read a miss exactly when the shop is
//! busy. A change still records such a tag in its outbox row, so it survives a crash:
//! the row is deleted only after the round invalidated the tag, and another instance
//! replays a row left behind (`outbox::GRACE`).
use crate::domain::TenantId;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// One tenant's tags waiting for the next round, and the outbox rows they settle.
type Waiting = (BTreeSet<String>, Vec<i64>);

#[derive(Default)]
pub struct Coalesced {
    tags: BTreeSet<String>,
    waiting: Mutex<HashMap<TenantId, Waiting>>,
}

/// One tenant's share of a round.
pub struct Due {
    pub tenant: TenantId,
    pub tags: Vec<String>,
    pub rows: Vec<i64>,
}

impl Coalesced {
    pub fn new(tags: &[&str]) -> Self {
        Self {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Splits `tags` into those to invalidate now and those left for the round.
    pub fn split(&self, tags: &[String]) -> (Vec<String>, Vec<String>) {
        tags.iter().cloned().partition(|t| !self.tags.contains(t))
    }

    /// Leaves `tags` of outbox row `row` to the next round.
    pub fn wait(&self, tenant: &TenantId, tags: Vec<String>, row: i64) {
        if let Ok(mut waiting) = self.waiting.lock() {
            let (waiting_tags, rows) = waiting.entry(tenant.clone()).or_default();
            waiting_tags.extend(tags);
            rows.push(row);
        }
    }

    /// Everything waiting, taken for a round.
    pub fn take(&self) -> Vec<Due> {
        let Ok(mut waiting) = self.waiting.lock() else {
            return Vec::new();
        };
        std::mem::take(&mut *waiting)
            .into_iter()
            .map(|(tenant, (tags, rows))| Due {
                tenant,
                tags: tags.into_iter().collect(),
                rows,
            })
            .collect()
    }

    /// Puts back what a round could not invalidate.
    pub fn restore(&self, due: Due) {
        if let Ok(mut waiting) = self.waiting.lock() {
            let (tags, rows) = waiting.entry(due.tenant).or_default();
            tags.extend(due.tags);
            rows.extend(due.rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::memory::MemoryBackend;
    use crate::cache::{Backend, Cache, CachePolicy, outbox};
    use crate::db::entities::cache_outbox;
    use crate::domain::TenantId;
    use sea_orm::{EntityTrait, PaginatorTrait};
    use std::time::Duration;

    fn tenant() -> TenantId {
        TenantId::parse("t1").unwrap_or_else(|_| unreachable!())
    }

    fn cached(cache: &Cache, key: &str) -> bool {
        match &cache.0.backend {
            Backend::Memory(memory) => memory.get(&tenant(), key).entry.is_some(),
            Backend::Redis(_) => unreachable!(),
        }
    }

    fn store(cache: &Cache, key: &str, tag: &str) {
        if let Backend::Memory(memory) = &cache.0.backend {
            let ttl = Duration::from_secs(60);
            assert!(memory.set(&tenant(), key, b"1".to_vec(), ttl, &[tag.into()], 0));
        }
    }

    /// Three changes naming `stats` drop a product entry each at once; the statistics
    /// entry stays until the round, which invalidates it once, and only then are the
    /// rows (which would let another instance replay it) deleted.
    #[tokio::test]
    async fn coalesced_tags_wait_for_the_round_and_keep_their_rows_until_then() {
        let db = crate::db::connect(
            "sqlite::memory:",
            crate::db::PoolSettings {
                min: 1,
                max: 1,
                ping: crate::db::Ping::EveryAcquire,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        crate::db::migrate(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let policy = CachePolicy::new(true, "p".into(), Duration::from_secs(5), 0, |_| None);
        let cache = Cache::new(Backend::Memory(MemoryBackend::new(100)), policy);
        // The outbox without its periodic rounds: this test runs the round itself.
        assert!(cache.0.outbox.set(db.clone()).is_ok());
        cache.coalesce(&["stats"]);
        store(&cache, "top", "stats");
        for product in 1..=3 {
            let tags = vec![format!("product:{product}"), "stats".to_owned()];
            store(&cache, &format!("p{product}"), &tags[0]);
            let row = outbox::record(&db, &tenant(), &tags)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            cache.invalidate_recorded(&tenant(), &tags, Some(row)).await;
            assert!(!cached(&cache, &format!("p{product}")));
        }
        assert!(cached(&cache, "top"));
        let rows = || async {
            cache_outbox::Entity::find()
                .count(&db)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(rows().await, 3);
        let before = cache.stats(&tenant()).invalidations;
        cache.0.run_outbox().await;
        assert!(!cached(&cache, "top"));
        assert_eq!(cache.stats(&tenant()).invalidations, before + 1);
        assert_eq!(rows().await, 0);
    }
}
