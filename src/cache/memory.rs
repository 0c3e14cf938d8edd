//! The in-process backend: bounded, with TTLs, tag sets and the same stale-set rule as
//! Redis. Suits one instance (the embedded default); scale-out needs Redis.
use super::backend::{EntryInfo, Found};
use crate::domain::TenantId;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    tenant: String,
    value: Vec<u8>,
    expires: Instant,
    tags: Vec<String>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// (tenant, tag) -> keys carrying it.
    tag_keys: HashMap<(String, String), HashSet<String>>,
    /// (tenant, tag) -> sequence of its last invalidation.
    tag_seq: HashMap<(String, String), u64>,
    /// tenant -> invalidations so far.
    seq: HashMap<String, u64>,
}

impl State {
    fn remove(&mut self, key: &str) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        for tag in entry.tags {
            if let Some(keys) = self.tag_keys.get_mut(&(entry.tenant.clone(), tag)) {
                keys.remove(key);
            }
        }
        true
    }

    fn make_room(&mut self, max_entries: usize) {
        if self.entries.len() < max_entries {
            return;
        }
        let now = Instant::now();
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
        if self.entries.len() >= max_entries {
            // Still full of live entries: drop the eighth that expires soonest.
            let mut by_expiry: Vec<(Instant, String)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.expires, k.clone()))
                .collect();
            by_expiry.sort();
            for (_, key) in by_expiry.into_iter().take(max_entries / 8 + 1) {
                self.remove(&key);
            }
        }
        self.tag_keys.retain(|_, keys| !keys.is_empty());
    }
}

pub struct MemoryBackend {
    state: Mutex<State>,
    max_entries: usize,
}

impl MemoryBackend {
    pub fn new(max_entries: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_entries: max_entries.max(1),
        }
    }

    pub fn get(&self, tenant: &TenantId, key: &str) -> Found {
        let Ok(state) = self.state.lock() else {
            return Found::miss(0);
        };
        let live = state
            .entries
            .get(key)
            .filter(|e| e.expires > Instant::now());
        let seq = state.seq.get(tenant.as_str()).copied().unwrap_or(0);
        Found {
            entry: live.map(|e| e.value.clone()),
            tags: live.map(|e| e.tags.clone()).unwrap_or_default(),
            seq,
        }
    }

    pub fn set(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
        tags: &[String],
        seq: u64,
    ) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let tenant = tenant.as_str().to_owned();
        let stale = tags.iter().any(|tag| {
            state
                .tag_seq
                .get(&(tenant.clone(), tag.clone()))
                .is_some_and(|&invalidated| invalidated > seq)
        });
        if stale {
            return false;
        }
        state.remove(key);
        state.make_room(self.max_entries);
        for tag in tags {
            state
                .tag_keys
                .entry((tenant.clone(), tag.clone()))
                .or_default()
                .insert(key.to_owned());
        }
        state.entries.insert(
            key.to_owned(),
            Entry {
                tenant,
                value,
                expires: Instant::now() + ttl,
                tags: tags.to_vec(),
            },
        );
        true
    }

    pub fn invalidate(&self, tenant: &TenantId, tags: &[String]) -> u64 {
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        let tenant = tenant.as_str().to_owned();
        let seq = {
            let counter = state.seq.entry(tenant.clone()).or_insert(0);
            *counter += 1;
            *counter
        };
        let mut dropped = 0;
        for tag in tags {
            let id = (tenant.clone(), tag.clone());
            state.tag_seq.insert(id.clone(), seq);
            let keys = state.tag_keys.remove(&id).unwrap_or_default();
            for key in keys {
                if state.remove(&key) {
                    dropped += 1;
                }
            }
        }
        dropped
    }

    pub fn entries(&self, tenant: &TenantId, module: Option<&str>, limit: usize) -> Vec<EntryInfo> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out: Vec<EntryInfo> = state
            .entries
            .iter()
            .filter(|(_, e)| e.tenant == tenant.as_str() && e.expires > now)
            .filter_map(|(key, e)| {
                let info = super::keys::describe(
                    key,
                    &e.tags,
                    e.value.len(),
                    e.expires.duration_since(now),
                )?;
                module.is_none_or(|m| info.module == m).then_some(info)
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("t1").unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_set_that_started_before_an_invalidation_is_refused() {
        let cache = MemoryBackend::new(10);
        let seq = cache.get(&tenant(), "k").seq;
        cache.invalidate(&tenant(), &["product:1".into()]);
        let stored = cache.set(
            &tenant(),
            "k",
            b"old".to_vec(),
            Duration::from_secs(60),
            &["product:1".into()],
            seq,
        );
        assert!(!stored);
        assert!(cache.get(&tenant(), "k").entry.is_none());
    }

    #[test]
    fn invalidation_drops_only_tagged_entries() {
        let cache = MemoryBackend::new(10);
        let ttl = Duration::from_secs(60);
        assert!(cache.set(&tenant(), "a", b"1".to_vec(), ttl, &["product:1".into()], 0));
        assert!(cache.set(&tenant(), "b", b"2".to_vec(), ttl, &["product:2".into()], 0));
        assert_eq!(cache.invalidate(&tenant(), &["product:1".into()]), 1);
        assert!(cache.get(&tenant(), "a").entry.is_none());
        assert!(cache.get(&tenant(), "b").entry.is_some());
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = MemoryBackend::new(16);
        for i in 0..100 {
            cache.set(
                &tenant(),
                &format!("k{i}"),
                vec![0; 8],
                Duration::from_secs(60),
                &[],
                0,
            );
        }
        let len = cache
            .state
            .lock()
            .map(|s| s.entries.len())
            .unwrap_or(usize::MAX);
        assert!(len <= 16, "{len} entries kept");
    }
}
