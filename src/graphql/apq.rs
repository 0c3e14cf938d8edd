//! Automatic persisted queries (Apollo APQ): the protocol of async-graphql's
//! `ApolloPersistedQueries` (`expand`, called by the `gateway` before execution),
//! with a store that is Redis when configured (`{prefix}:apq:{sha256}`, so every
//! instance knows a hash any of them registered; one key per call, so any topology,
//! cluster included, serves it) or an in-process LRU.
//!
//! A store failure is a miss (the client sends the full query again), never an error.
//! Documents over the query limits, or larger than `MAX_STORED_BYTES` serialized, are
//! not stored, so registrations cannot fill memory with abusive documents.
use super::limits::Limits;
use super::measure::check;
use crate::redis_topology::RedisConn;
use async_graphql::extensions::apollo_persisted_queries::CacheStorage;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ServerResult};
use lru::LruCache;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// Largest serialized document kept.
const MAX_STORED_BYTES: usize = 64 * 1024;
/// Byte budget of the in-process store, on top of its entry bound.
const MEMORY_BUDGET: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct ApqStore {
    backend: Backend,
    limits: Limits,
}

#[derive(Clone)]
enum Backend {
    Redis {
        conn: RedisConn,
        prefix: Arc<str>,
        ttl_secs: u64,
    },
    Memory(Arc<Mutex<Lru>>),
}

struct Lru {
    entries: LruCache<String, (Arc<ExecutableDocument>, usize)>,
    capacity: usize,
    bytes: usize,
}

impl ApqStore {
    pub fn redis(conn: RedisConn, prefix: &str, ttl_secs: u64, limits: Limits) -> Self {
        Self {
            backend: Backend::Redis {
                conn,
                prefix: prefix.into(),
                ttl_secs,
            },
            limits,
        }
    }

    pub fn memory(capacity: usize, limits: Limits) -> Self {
        Self {
            backend: Backend::Memory(Arc::new(Mutex::new(Lru {
                entries: LruCache::unbounded(),
                capacity: capacity.max(1),
                bytes: 0,
            }))),
            limits,
        }
    }
}

/// A hash as Apollo clients send it: 64 lowercase hex digits.
fn is_sha256(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn redis_key(prefix: &str, hash: &str) -> String {
    format!("{prefix}:apq:{hash}")
}

/// The `persistedQuery` request extension, as Apollo clients send it.
#[derive(serde::Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

/// Turns a persisted-query request into one carrying its document: a hash alone is looked
/// up (`PersistedQueryNotFound` tells the client to send the text), a hash with its text
/// registers the document. Requests without the extension pass unchanged.
pub async fn expand(store: &ApqStore, mut request: Request) -> ServerResult<Request> {
    let Some(value) = request.extensions.remove("persistedQuery") else {
        return Ok(request);
    };
    let persisted: PersistedQuery = async_graphql::from_value(value).map_err(|_| {
        ServerError::new("Invalid \"PersistedQuery\" extension configuration.", None)
    })?;
    if persisted.version != 1 {
        return Err(ServerError::new(
            format!(
                "Only the \"PersistedQuery\" extension of version \"1\" is supported, and the current version is \"{}\".",
                persisted.version
            ),
            None,
        ));
    }
    if request.query.is_empty() {
        let doc = store
            .get(persisted.sha256_hash)
            .await
            .ok_or_else(|| ServerError::new("PersistedQueryNotFound", None))?;
        request.set_parsed_query(doc);
        return Ok(request);
    }
    let hash = format!("{:x}", Sha256::digest(request.query.as_bytes()));
    if persisted.sha256_hash != hash {
        return Err(ServerError::new("provided sha does not match query", None));
    }
    let doc = async_graphql::parser::parse_query(&request.query)?;
    store.set(hash, doc.clone()).await;
    request.query = String::new();
    request.set_parsed_query(doc);
    Ok(request)
}

#[async_trait::async_trait]
impl CacheStorage for ApqStore {
    async fn get(&self, key: String) -> Option<ExecutableDocument> {
        if !is_sha256(&key) {
            return None;
        }
        match &self.backend {
            Backend::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                match conn
                    .get::<_, Option<Vec<u8>>>(redis_key(prefix, &key))
                    .await
                {
                    Ok(stored) => stored.and_then(|bytes| serde_json::from_slice(&bytes).ok()),
                    Err(err) => {
                        tracing::debug!(error = %err, "persisted query lookup failed: a miss");
                        None
                    }
                }
            }
            Backend::Memory(lru) => {
                let mut lru = lru.lock().ok()?;
                lru.entries
                    .get(&key)
                    .map(|(doc, _)| ExecutableDocument::clone(doc))
            }
        }
    }

    async fn set(&self, key: String, query: ExecutableDocument) {
        if check(&query, &self.limits).is_err() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&query) else {
            return;
        };
        if bytes.len() > MAX_STORED_BYTES {
            return;
        }
        match &self.backend {
            Backend::Redis {
                conn,
                prefix,
                ttl_secs,
            } => {
                let mut conn = conn.clone();
                let stored: redis::RedisResult<()> =
                    conn.set_ex(redis_key(prefix, &key), bytes, *ttl_secs).await;
                if let Err(err) = stored {
                    tracing::debug!(error = %err, "persisted query not stored");
                }
            }
            Backend::Memory(lru) => {
                let Ok(mut lru) = lru.lock() else {
                    return;
                };
                let size = bytes.len();
                if let Some((_, old)) = lru.entries.put(key, (Arc::new(query), size)) {
                    lru.bytes -= old;
                }
                lru.bytes += size;
                while lru.entries.len() > lru.capacity || lru.bytes > MEMORY_BUDGET {
                    match lru.entries.pop_lru() {
                        Some((_, (_, size))) => lru.bytes -= size,
                        None => break,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn the_memory_store_is_bounded_and_refuses_malformed_hashes() {
        let store = ApqStore::memory(2, Limits::default());
        let hashes: Vec<String> = (0..3).map(|i| format!("{i:064x}")).collect();
        for hash in &hashes {
            store.set(hash.clone(), doc("{ __typename }")).await;
        }
        assert!(store.get(hashes[0].clone()).await.is_none(), "evicted");
        assert!(store.get(hashes[2].clone()).await.is_some());
        assert!(store.get("not-a-hash".into()).await.is_none());
    }

    #[tokio::test]
    async fn documents_over_the_limits_are_not_stored() {
        let store = ApqStore::memory(10, Limits::default());
        let wide: String = (0..40).map(|i| format!("f{i} ")).collect();
        let hash = format!("{:064x}", 7);
        store.set(hash.clone(), doc(&format!("{{ {wide} }}"))).await;
        assert!(store.get(hash).await.is_none());
    }
}
