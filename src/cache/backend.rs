//! The two storage backends behind one interface: in-process (embedded default) and
//! Redis (primary + read replicas).
use super::memory::MemoryBackend;
use super::redis_backend::RedisBackend;
use crate::domain::TenantId;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum BackendState {
    Ok,
    Degraded,
    Disabled,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Disabled => "disabled",
        }
    }
}

/// The backend could not answer (down, slow, reset); callers treat it as a miss.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

/// A read: the entry (if any) and the tenant's invalidation sequence at read time.
pub struct Found {
    pub entry: Option<Vec<u8>>,
    /// The tags the entry was stored with (empty on a miss).
    pub tags: Vec<String>,
    pub seq: u64,
}

impl Found {
    pub fn miss(seq: u64) -> Self {
        Self {
            entry: None,
            tags: Vec::new(),
            seq,
        }
    }
}

#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct EntryInfo {
    pub key: String,
    pub module: String,
    pub tags: Vec<String>,
    /// Seconds until it expires.
    pub ttl_seconds: i64,
    pub bytes: i64,
}

pub enum Backend {
    Memory(MemoryBackend),
    Redis(RedisBackend),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    pub fn state(&self) -> BackendState {
        match self {
            Self::Memory(_) => BackendState::Ok,
            Self::Redis(redis) => redis.state(),
        }
    }

    pub async fn get(&self, tenant: &TenantId, key: &str) -> Result<Found, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.get(tenant, key)),
            Self::Redis(redis) => redis.get(tenant, key).await,
        }
    }

    pub async fn set(
        &self,
        tenant: &TenantId,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
        tags: &[String],
        seq: u64,
    ) -> Result<bool, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.set(tenant, key, value, ttl, tags, seq)),
            Self::Redis(redis) => redis.set(tenant, key, value, ttl, tags, seq).await,
        }
    }

    pub async fn invalidate(&self, tenant: &TenantId, tags: &[String]) -> Result<u64, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.invalidate(tenant, tags)),
            Self::Redis(redis) => redis.invalidate(tenant, tags).await,
        }
    }

    pub async fn entries(
        &self,
        tenant: &TenantId,
        module: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntryInfo>, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.entries(tenant, module, limit)),
            Self::Redis(redis) => redis.entries(tenant, module, limit).await,
        }
    }
}
