//! The whole-response cache: for a query whose root fields are all cacheable, the
//! serialized response is stored under the caller, the document and its variables,
//! tagged with the union of its fields' tags. A hit skips parsing, validation and
//! execution. Invalidation and the stale-set rule are the field cache's: a mutation
//! that drops any of the fields drops the response, and a response loaded before an
//! invalidation is never stored after it.
use crate::auth::Actor;
use crate::cache::{ALL_TAG, Cache, CacheTrace, RESPONSE_MODULE, RawLookup, Slot, module_tag};
use async_graphql::Request;
use std::collections::HashSet;
use std::sync::Mutex;

/// Documents (query text and operation name) this instance has seen produce a wholly
/// cacheable response. Only those are looked up, so mutations and uncacheable queries
/// never pay for a lookup. Bounded: forgotten wholesale when full.
#[derive(Default)]
pub struct KnownDocuments(Mutex<HashSet<[u8; 16]>>);

const MAX_KNOWN: usize = 10_000;

fn document_id(request: &Request) -> [u8; 16] {
    let extensions = serde_json::to_vec(&request.extensions).unwrap_or_default();
    let operation = request.operation_name.as_deref().unwrap_or_default();
    let digest = super::digest(&[request.query.as_bytes(), operation.as_bytes(), &extensions]);
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

impl KnownDocuments {
    pub fn is_known(&self, document: &[u8; 16]) -> bool {
        self.0.lock().is_ok_and(|known| known.contains(document))
    }

    pub fn learn(&self, request_id: [u8; 16]) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(request_id);
        }
    }
}

pub fn id_of(request: &Request) -> [u8; 16] {
    document_id(request)
}

pub enum Cached {
    Hit {
        body: Vec<u8>,
        cache_control: String,
    },
    /// Not cached: execute, then `store` under this key and sequence.
    Miss(Pending),
    /// Not cacheable here (cache off or unreachable).
    Skip,
}

pub struct Pending {
    key: String,
    seq: u64,
}

fn key(cache: &Cache, actor: &Actor, request: &Request) -> String {
    let variables = serde_json::to_vec(&request.variables).unwrap_or_default();
    let extensions = serde_json::to_vec(&request.extensions).unwrap_or_default();
    let operation = request.operation_name.as_deref().unwrap_or_default();
    let identity = actor.cache_identity();
    let digest = super::digest(&[
        request.query.as_bytes(),
        operation.as_bytes(),
        &variables,
        &extensions,
        identity.as_bytes(),
    ]);
    format!(
        "{}:{RESPONSE_MODULE}:query:{}",
        crate::cache::tenant_prefix(&cache.policy().prefix, actor.tenant.as_str()),
        hex::encode(&digest[..16])
    )
}

pub async fn lookup(cache: &Cache, actor: &Actor, request: &Request) -> Cached {
    let key = key(cache, actor, request);
    let slot = Slot {
        tenant: &actor.tenant,
        module: RESPONSE_MODULE,
        key: &key,
    };
    match cache.get_raw(&slot).await {
        RawLookup::Hit(payload) => match payload.iter().position(|&b| b == b'\n') {
            Some(split) => Cached::Hit {
                cache_control: String::from_utf8_lossy(&payload[..split]).into_owned(),
                body: payload[split + 1..].to_vec(),
            },
            None => Cached::Skip,
        },
        RawLookup::Miss(seq) => Cached::Miss(Pending { key, seq }),
        RawLookup::Bypass => Cached::Skip,
    }
}

/// Stores an error-free response when every root field was served by the field cache
/// (so its tags are known) and the document was cacheable as a whole.
pub async fn store(
    cache: &Cache,
    actor: &Actor,
    pending: Pending,
    body: &[u8],
    trace: &CacheTrace,
) {
    let (Some(mut tags), Some(ttl)) = (trace.response_tags(), trace.max_age()) else {
        return;
    };
    tags.push(module_tag(RESPONSE_MODULE));
    tags.push(ALL_TAG.to_owned());
    tags.sort();
    tags.dedup();
    let mut payload = trace.cache_control().into_bytes();
    payload.push(b'\n');
    payload.extend_from_slice(body);
    let slot = Slot {
        tenant: &actor.tenant,
        module: RESPONSE_MODULE,
        key: &pending.key,
    };
    cache
        .store_raw(&slot, payload, ttl, &tags, pending.seq)
        .await;
}
