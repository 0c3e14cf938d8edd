//! The Redis backend: writes and invalidations on the primary, reads round-robin over
//! healthy replicas (falling back to the primary). Every call is bounded by a short
//! timeout; a failure counts as a miss and flips the state to `degraded` (logged once),
//! and the first success flips it back.
//!
//! Read-your-writes with replicas across instances: see `replicas`.
//!
//! Behind Sentinels (reads on the primary only) an invalidation counts as done once a
//! replica has it: the replica a failover promotes is the most advanced one, so an
//! acknowledged invalidation survives the failover; one no replica took goes to the
//! outbox like any refused one. In a cluster every key of a tenant is on one slot
//! (`keys::tenant_prefix`), so each script runs on one node.
use super::backend::{BackendState, EntryInfo, Found, Unavailable};
use super::keys::{describe, tenant_prefix};
use super::replicas::Replicas;
use crate::domain::TenantId;
use crate::redis_topology::{RedisConn, Timeouts, Topology};
use redis::Script;
use redis::aio::ConnectionLike;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RESPONSE_TIMEOUT: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const REPLICA_ACK_TIMEOUT_MS: u64 = 250;
const TIMEOUTS: Timeouts = Timeouts {
    response: RESPONSE_TIMEOUT,
    connect: CONNECT_TIMEOUT,
    retries: Some(1),
};

/// Checks the entry's header only (not its value): returns the header when none of its
/// tags was invalidated after its fill, else nil.
/// KEYS: entry, tenant seq. ARGV: tag-seq key prefix.
const CHECK_SCRIPT: &str = r"
local head = redis.call('GETRANGE', KEYS[1], 0, 1023)
local newline = string.find(head, '\n', 1, true)
if not newline then
  head = redis.call('GET', KEYS[1])
  if not head then return false end
  newline = string.find(head, '\n', 1, true)
  if not newline then return false end
end
local header = string.sub(head, 1, newline - 1)
local bar = string.find(header, '|', 1, true)
if not bar then return false end
local fill = tonumber(string.sub(header, 1, bar - 1))
if fill == nil then return false end
local seq = redis.call('GET', KEYS[2])
if seq and tonumber(seq) > fill then
  local keys = {}
  for tag in string.gmatch(string.sub(header, bar + 1), '[^,]+') do
    keys[#keys + 1] = ARGV[1] .. tag
  end
  if #keys > 0 then
    for _, stamp in ipairs(redis.call('MGET', unpack(keys))) do
      if stamp and tonumber(stamp) > fill then return false end
    end
  end
end
return header
";

/// Stores an entry unless one of its tags was invalidated after the reader's sequence,
/// and counts it under each of its tags (the count `invalidate` reports).
/// KEYS: entry, tag-seq keys (n), tag-count keys (n). ARGV: payload, ttl ms, seq.
const SET_SCRIPT: &str = r"
local n = (#KEYS - 1) / 2
local seq = tonumber(ARGV[3])
for i = 1, n do
  local invalidated = redis.call('GET', KEYS[1 + i])
  if invalidated and tonumber(invalidated) > seq then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local keep = math.floor(tonumber(ARGV[2]) / 1000) + 60
for i = 1, n do
  local count = KEYS[1 + n + i]
  redis.call('INCR', count)
  if redis.call('TTL', count) < keep then redis.call('EXPIRE', count, keep) end
end
return 1
";

/// Bumps the tenant's sequence and stamps each tag with it: every entry filled before
/// is stale from now on, whatever their number. Returns how many entries were stored
/// under those tags since their last invalidation (an upper bound of the entries made
/// stale: some may have expired already, and an entry under two of the tags counts twice).
/// KEYS: tenant seq, tag-seq keys (n), tag-count keys (n). ARGV: tag-seq ttl.
const INVALIDATE_SCRIPT: &str = r"
local n = (#KEYS - 1) / 2
local seq = redis.call('INCR', KEYS[1])
local dropped = 0
for i = 1, n do
  redis.call('SET', KEYS[1 + i], seq, 'EX', ARGV[1])
  dropped = dropped + (tonumber(redis.call('GETDEL', KEYS[1 + n + i])) or 0)
end
return dropped
";

struct Shared {
    primary: RedisConn,
    /// Invalidations, each followed by `WAIT`, which holds up every later command of its
    /// connection: on a connection of their own, a replica slow to acknowledge delays
    /// only other invalidations, never reads or fills.
    invalidations: RedisConn,
    /// Replicas (unlisted: a Sentinel's) that must hold an invalidation before it
    /// counts as done; 0 when none are required.
    required_acks: usize,
    replicas: Replicas,
    primary_up: AtomicBool,
    /// Whether reads check the entry's tags in the same round trip. A plain `MGET` is
    /// the cheapest read while nothing is invalidated, but while writes keep invalidating
    /// (checkouts moving stock), most entries need their tags checked, which alone would
    /// take a second round trip: the last read that needed the check, or found it
    /// needless, decides.
    check_in_read: AtomicBool,
    prefix: String,
    /// How long a tag's invalidation is remembered: longer than any entry lives, so no
    /// entry filled before it can outlive the memory of it.
    tag_seq_ttl: Duration,
    check_script: Script,
    set_script: Script,
    invalidate_script: Script,
}

#[derive(Clone)]
pub struct RedisBackend(Arc<Shared>);

/// A lazily connecting connection with this module's short timeouts and few retries.
pub fn connection(topology: &Topology) -> anyhow::Result<RedisConn> {
    topology.connect(TIMEOUTS)
}

impl RedisBackend {
    /// Connects lazily: a Redis that is down at start means `degraded`, not a failed start.
    /// `longest_ttl`: the longest any entry may live.
    pub fn connect(
        topology: &Topology,
        replicas: &[String],
        prefix: &str,
        longest_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let replicas = replicas
            .iter()
            .map(|url| {
                Ok((
                    crate::config::redact_url(url),
                    crate::redis_topology::single(url, TIMEOUTS)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let backend = Self(Arc::new(Shared {
            primary: connection(topology)?,
            invalidations: connection(topology)?,
            required_acks: match topology {
                Topology::Sentinel { .. } => 1,
                Topology::Single(_) | Topology::Cluster(_) => 0,
            },
            replicas: Replicas::new(replicas, prefix),
            primary_up: AtomicBool::new(true),
            check_in_read: AtomicBool::new(false),
            prefix: prefix.to_owned(),
            tag_seq_ttl: longest_ttl + Duration::from_secs(60),
            check_script: Script::new(CHECK_SCRIPT),
            set_script: Script::new(SET_SCRIPT),
            invalidate_script: Script::new(INVALIDATE_SCRIPT),
        }));
        if !backend.0.replicas.is_empty() {
            Replicas::spawn_validation(
                &backend.0,
                |shared| &shared.replicas,
                backend.0.primary.clone(),
            );
        }
        Ok(backend)
    }

    pub fn state(&self) -> BackendState {
        if self.0.primary_up.load(Ordering::Relaxed) {
            BackendState::Ok
        } else {
            BackendState::Degraded
        }
    }

    fn observe<T>(&self, result: redis::RedisResult<T>) -> Result<T, Unavailable> {
        match result {
            Ok(value) => {
                if !self.0.primary_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis cache reachable again");
                }
                Ok(value)
            }
            Err(err) => {
                if self.0.primary_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "redis cache unreachable; serving from the database");
                }
                Err(Unavailable)
            }
        }
    }

    /// Every key of `tenant` starts so (one cluster slot per tenant).
    fn tenant(&self, tenant: &TenantId) -> String {
        tenant_prefix(&self.0.prefix, tenant.as_str())
    }

    fn seq_key(&self, tenant: &TenantId) -> String {
        format!("{}:seq", self.tenant(tenant))
    }

    fn tag_count_key(&self, tenant: &TenantId, tag: &str) -> String {
        format!("{}:tagcount:{}", self.tenant(tenant), tag)
    }

    fn tag_seq_key(&self, tenant: &TenantId, tag: &str) -> String {
        format!("{}:tagseq:{}", self.tenant(tenant), tag)
    }

    /// Reads an entry and tells whether it is still valid. An entry remembers the tenant
    /// sequence its value was read at (`fill`), and a tag invalidated later than that
    /// (`tagseq:{tag}` > fill) makes it stale: invalidating is O(1) in the number of
    /// entries (one key per tag), and a stale entry simply waits for its TTL.
    ///
    /// While nothing was invalidated since an entry's fill, one `MGET` of the entry and
    /// the tenant's sequence answers. Otherwise its tags are checked: in a second
    /// `MGET` of their stamps, or, while invalidations are frequent (`check_in_read`),
    /// in the same round trip by a script that reads only the entry's header (`fill|tags`,
    /// with `GETRANGE`) and answers it when valid; the value is then served only when
    /// that header is its own, so an entry replaced between the two commands is a miss.
    /// A script that returned the whole entry cost Redis about four times the CPU of a
    /// plain read for a products page, because every value was copied through Lua
    /// (BENCHMARKS.md, session 13).
    pub async fn get(&self, tenant: &TenantId, key: &str) -> Result<Found, Unavailable> {
        if let Some(replica) = self.0.replicas.pick() {
            let mut conn = replica.conn.clone();
            match self.read_valid(&mut conn, tenant, key).await {
                Ok(found) => return Ok(found),
                Err(err) => self.0.replicas.failed(replica, &err),
            }
        }
        let mut conn = self.0.primary.clone();
        let found = self.read_valid(&mut conn, tenant, key).await;
        self.observe(found)
    }

    async fn read_valid<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &TenantId,
        key: &str,
    ) -> redis::RedisResult<Found> {
        if self.0.check_in_read.load(Ordering::Relaxed) {
            return self.read_checked(conn, tenant, key).await;
        }
        let (payload, seq): (Option<Vec<u8>>, Option<u64>) = redis::cmd("MGET")
            .arg(key)
            .arg(self.seq_key(tenant))
            .query_async(conn)
            .await?;
        let seq = seq.unwrap_or(0);
        let Some(stored) = payload.as_deref().and_then(decode) else {
            return Ok(Found::miss(seq));
        };
        if seq > stored.fill && !stored.tags.is_empty() {
            self.0.check_in_read.store(true, Ordering::Relaxed);
            // Stamps only grow: all at or below the fill after the entry was read, it
            // was valid then.
            if self.invalidated_since_fill(conn, tenant, &stored).await? {
                return Ok(Found::miss(seq));
            }
        }
        Ok(Found {
            entry: Some(stored.value.to_vec()),
            tags: stored.tags,
            seq,
        })
    }

    /// The read and the check of the tags in one pipelined round trip.
    async fn read_checked<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &TenantId,
        key: &str,
    ) -> redis::RedisResult<Found> {
        let seq_key = self.seq_key(tenant);
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(key).arg(&seq_key);
        pipe.cmd("EVALSHA")
            .arg(self.0.check_script.get_hash())
            .arg(2)
            .arg(key)
            .arg(&seq_key)
            .arg(self.tag_seq_key(tenant, ""));
        type Read = ((Option<Vec<u8>>, Option<u64>), Option<Vec<u8>>);
        let read: redis::RedisResult<Read> = pipe.query_async(conn).await;
        let ((payload, seq), valid_header) = match read {
            // A server that restarted or was promoted has no scripts: load it there.
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.0
                    .check_script
                    .prepare_invoke()
                    .load_async(conn)
                    .await?;
                pipe.query_async(conn).await?
            }
            read => read?,
        };
        let seq = seq.unwrap_or(0);
        let own_header = match (payload.as_deref(), valid_header.as_deref()) {
            (Some(payload), Some(header)) => payload
                .strip_prefix(header)
                .is_some_and(|rest| rest.first() == Some(&b'\n')),
            _ => false,
        };
        match payload.as_deref().and_then(decode) {
            Some(stored) if own_header => {
                if seq <= stored.fill {
                    // Nothing was invalidated since: the plain read would have done.
                    self.0.check_in_read.store(false, Ordering::Relaxed);
                }
                Ok(Found {
                    entry: Some(stored.value.to_vec()),
                    tags: stored.tags,
                    seq,
                })
            }
            _ => Ok(Found::miss(seq)),
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
        let mut invocation = self.0.set_script.key(key);
        for tag in tags {
            invocation.key(self.tag_seq_key(tenant, tag));
        }
        for tag in tags {
            invocation.key(self.tag_count_key(tenant, tag));
        }
        let payload = encode(seq, tags, &value);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        invocation.arg(payload).arg(ttl_ms).arg(seq);
        let mut conn = self.0.primary.clone();
        let stored: i64 = self.observe(invocation.invoke_async(&mut conn).await)?;
        Ok(stored == 1)
    }

    pub async fn invalidate(&self, tenant: &TenantId, tags: &[String]) -> Result<u64, Unavailable> {
        let mut invocation = self.0.invalidate_script.key(self.seq_key(tenant));
        for tag in tags {
            invocation.key(self.tag_seq_key(tenant, tag));
        }
        for tag in tags {
            invocation.key(self.tag_count_key(tenant, tag));
        }
        invocation.arg(self.0.tag_seq_ttl.as_secs());
        // WAIT counts the writes of its own connection: it must follow the script there.
        let mut conn = self.0.invalidations.clone();
        let dropped: u64 = self.observe(invocation.invoke_async(&mut conn).await)?;
        if self.0.required_acks > 0 {
            self.require_replica_acks(&mut conn).await?;
        } else {
            self.0.replicas.settle(&mut conn).await;
        }
        Ok(dropped)
    }

    /// Behind Sentinels: an invalidation no replica acknowledged could be lost by a
    /// failover, so it is reported refused (and kept in the outbox, replayed later).
    async fn require_replica_acks(&self, conn: &mut RedisConn) -> Result<(), Unavailable> {
        let expected = self.0.required_acks;
        let acked: redis::RedisResult<usize> = redis::cmd("WAIT")
            .arg(expected)
            .arg(REPLICA_ACK_TIMEOUT_MS)
            .query_async(conn)
            .await;
        match acked {
            Ok(n) if n >= expected => Ok(()),
            Ok(n) => {
                tracing::warn!(
                    acked = n,
                    expected,
                    "no redis replica acknowledged an invalidation; kept for replay"
                );
                Err(Unavailable)
            }
            Err(err) => self.observe(Err(err)),
        }
    }

    pub async fn entries(
        &self,
        tenant: &TenantId,
        module: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntryInfo>, Unavailable> {
        let pattern = match module {
            Some(module) => format!("{}:{}:*", self.tenant(tenant), module),
            None => format!("{}:*", self.tenant(tenant)),
        };
        let mut conn = self.0.primary.clone();
        // A tenant's keys are on one slot: in a cluster, one node holds them all.
        let is_entry = |key: &str| {
            let kind = key.split(':').nth(3).unwrap_or_default();
            !matches!(kind, "seq" | "tag" | "tagseq" | "tagcount")
        };
        let keys = self.observe(
            conn.scan_slot(&self.seq_key(tenant), &pattern, limit, is_entry)
                .await,
        )?;
        let mut conn = self.0.primary.clone();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut pipe = redis::pipe();
            pipe.get(&key).pttl(&key);
            let (payload, pttl): (Option<Vec<u8>>, i64) =
                self.observe(pipe.query_async(&mut conn).await)?;
            let Some(stored) = payload.as_deref().and_then(decode) else {
                continue;
            };
            let stale = self
                .invalidated_since_fill(&mut conn, tenant, &stored)
                .await;
            if self.observe(stale)? {
                continue;
            }
            let ttl = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
            out.extend(describe(&key, &stored.tags, stored.value.len(), ttl));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Whether a tag of `stored` was invalidated after its value was read: what makes
    /// a read miss, and what keeps admins from being shown entries no read would serve.
    async fn invalidated_since_fill<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        tenant: &TenantId,
        stored: &Stored<'_>,
    ) -> redis::RedisResult<bool> {
        if stored.tags.is_empty() {
            return Ok(false);
        }
        // MGET by hand: redis-rs sends a one-key `mget` as GET.
        let mut stamps = redis::cmd("MGET");
        for tag in &stored.tags {
            stamps.arg(self.tag_seq_key(tenant, tag));
        }
        let stamps: Vec<Option<u64>> = stamps.query_async(conn).await?;
        Ok(stamps
            .into_iter()
            .flatten()
            .any(|stamp| stamp > stored.fill))
    }
}

/// A stored entry: the sequence its value was read at, its tags, the JSON value.
struct Stored<'a> {
    fill: u64,
    tags: Vec<String>,
    value: &'a [u8],
}

/// An entry is stored as `fill|tag,tag,…\n` followed by the JSON value: a read
/// checks the tags against `fill`, and `cacheEntries` shows them, without a
/// second key.
fn encode(fill: u64, tags: &[String], value: &[u8]) -> Vec<u8> {
    let mut payload = format!("{fill}|{}", tags.join(",")).into_bytes();
    payload.push(b'\n');
    payload.extend_from_slice(value);
    payload
}

fn decode(payload: &[u8]) -> Option<Stored<'_>> {
    let split = payload.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&payload[..split]).ok()?;
    let (fill, tags) = header.split_once('|')?;
    Some(Stored {
        fill: fill.parse().ok()?,
        tags: tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        value: &payload[split + 1..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend on `TEST_REDIS_URL` under a key prefix of its own; `None` without it.
    fn test_backend() -> Option<RedisBackend> {
        let url = std::env::var("TEST_REDIS_URL").ok()?;
        let prefix = format!("test-reads-{}", rand::random::<u64>());
        let backend = RedisBackend::connect(
            &Topology::Single(url),
            &[],
            &prefix,
            Duration::from_secs(60),
        );
        Some(backend.unwrap_or_else(|e| panic!("TEST_REDIS_URL: {e}")))
    }

    /// Each read path, forced in turn: an entry none of whose tags was invalidated is
    /// served although the tenant's sequence moved past its fill, and one whose tag was
    /// invalidated is a miss.
    #[tokio::test]
    async fn both_read_paths_serve_valid_entries_and_miss_stale_ones() {
        let Some(backend) = test_backend() else {
            return;
        };
        let tenant = TenantId::parse("default").unwrap_or_else(|e| panic!("{e:?}"));
        let tags = |id: u32| vec![format!("product:{id}"), "products".to_owned()];
        for check_in_read in [false, true] {
            let (kept, dropped) = (
                format!("kept-{check_in_read}"),
                format!("dropped-{check_in_read}"),
            );
            let ttl = Duration::from_secs(60);
            let seq = backend
                .get(&tenant, &kept)
                .await
                .map(|f| f.seq)
                .unwrap_or_else(|_| panic!("redis"));
            for (key, id) in [(&kept, 1), (&dropped, 2)] {
                let stored = backend
                    .set(&tenant, key, b"{}".to_vec(), ttl, &tags(id), seq)
                    .await;
                assert_eq!(stored.ok(), Some(true), "{key} was not stored");
            }
            // Another tag moves the tenant's sequence past both fills; then one entry's own.
            let _ = backend.invalidate(&tenant, &["product:3".to_owned()]).await;
            let _ = backend.invalidate(&tenant, &["product:2".to_owned()]).await;

            let read = |key: String| {
                backend
                    .0
                    .check_in_read
                    .store(check_in_read, Ordering::Relaxed);
                let (backend, tenant) = (&backend, &tenant);
                async move {
                    backend
                        .get(tenant, &key)
                        .await
                        .unwrap_or_else(|_| panic!("redis"))
                }
            };
            let found = read(kept.clone()).await;
            assert_eq!(
                found.entry.as_deref(),
                Some(&b"{}"[..]),
                "valid entry missed (check_in_read: {check_in_read})"
            );
            assert_eq!(found.tags, tags(1));
            let found = read(dropped.clone()).await;
            assert!(
                found.entry.is_none(),
                "stale entry served (check_in_read: {check_in_read})"
            );
            // Either path leaves reads checking tags in the round trip, since it met an
            // entry filled before the last invalidation.
            assert!(backend.0.check_in_read.load(Ordering::Relaxed));
        }
        // A read that finds nothing invalidated since its entry's fill goes back to the
        // plain read.
        let seq = backend
            .get(&tenant, "fresh")
            .await
            .map(|f| f.seq)
            .unwrap_or_else(|_| panic!("redis"));
        let stored = backend
            .set(
                &tenant,
                "fresh",
                b"{}".to_vec(),
                Duration::from_secs(60),
                &tags(4),
                seq,
            )
            .await;
        assert_eq!(stored.ok(), Some(true));
        let found = backend
            .get(&tenant, "fresh")
            .await
            .unwrap_or_else(|_| panic!("redis"));
        assert!(found.entry.is_some());
        assert!(!backend.0.check_in_read.load(Ordering::Relaxed));
    }

    #[test]
    fn payload_round_trips_fill_tags_and_value() {
        let payload = encode(42, &["product:1".into(), "all".into()], br#"{"a":"1\n2"}"#);
        let stored = decode(&payload).unwrap_or_else(|| panic!("undecodable"));
        assert_eq!(stored.fill, 42);
        assert_eq!(stored.tags, vec!["product:1".to_owned(), "all".to_owned()]);
        assert_eq!(stored.value, br#"{"a":"1\n2"}"#);
        assert!(decode(b"no header").is_none());
    }
}
