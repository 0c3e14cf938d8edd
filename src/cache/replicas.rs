//! Read replicas with read-your-writes across every instance.
//!
//! An invalidation is written to the primary and then waits (bounded) for the replicas
//! to acknowledge it (`WAIT`). When one does not, the invalidating instance raises a
//! *fence* on the primary: the primary's replication offset just after the
//! invalidation. Every instance re-validates each replica every
//! `VALIDATE_EVERY`: it reads the fence from the primary, then the replica's own
//! offset, and reads from the replica only while that offset covers the fence and the
//! validation is younger than `LEASE`. The invalidating instance answers only after one
//! `LEASE` has passed since it raised the fence, so by then no instance still trusts a
//! validation made before the fence: none reads the lagging replica until it has
//! caught up, and a client that saw the mutation return cannot read older data from
//! any instance.
//!
//! A replica that does not answer this instance is taken to be unreachable for every
//! instance (they share a network), so it is not waited for; the fence still covers it
//! should it come back.
use crate::redis_topology::RedisConn;
use redis::Script;
use redis::aio::{ConnectionLike, ConnectionManager};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a replica's validation is trusted.
const LEASE: Duration = Duration::from_millis(300);
/// How often replicas are validated: several chances within one lease.
const VALIDATE_EVERY: Duration = Duration::from_millis(100);
/// How long an invalidation waits for the replicas to acknowledge it.
const ACK_TIMEOUT_MS: u64 = 250;

/// Raises the fence, never lowers it. KEYS: fence. ARGV: offset.
const RAISE_FENCE: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";

pub struct Replica {
    pub url: String,
    pub conn: ConnectionManager,
    /// When the last validation that passed started, in ms since `Replicas::epoch`
    /// (0: not valid).
    valid_since_ms: AtomicU64,
    /// Whether it answered the last validation.
    answers: AtomicBool,
}

pub struct Replicas {
    list: Vec<Replica>,
    next: AtomicUsize,
    epoch: Instant,
    fence_key: String,
    raise_fence: Script,
}

impl Replicas {
    pub fn new(replicas: Vec<(String, ConnectionManager)>, prefix: &str) -> Self {
        Self {
            list: replicas
                .into_iter()
                .map(|(url, conn)| Replica {
                    url,
                    conn,
                    valid_since_ms: AtomicU64::new(0),
                    answers: AtomicBool::new(false),
                })
                .collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            fence_key: format!("{prefix}:replica_fence"),
            raise_fence: Script::new(RAISE_FENCE),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn now_ms(&self) -> u64 {
        // Starts at 1 so that 0 can mean "not valid".
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    fn is_valid(&self, replica: &Replica) -> bool {
        let since = replica.valid_since_ms.load(Ordering::Relaxed);
        since != 0 && self.now_ms().saturating_sub(since) < lease_ms()
    }

    /// A replica to read from, round-robin, among those whose validation holds.
    pub fn pick(&self) -> Option<&Replica> {
        if self.list.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.list.len())
            .map(|i| &self.list[(start + i) % self.list.len()])
            .find(|r| self.is_valid(r))
    }

    /// A read from `replica` failed: not used again until it validates.
    pub fn failed(&self, replica: &Replica, error: &redis::RedisError) {
        if replica.valid_since_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::warn!(replica = %replica.url, %error, "redis replica unreachable; reading from the primary");
        }
        replica.answers.store(false, Ordering::Relaxed);
    }

    /// After an invalidation on `conn` (WAIT counts the writes of its own connection):
    /// returns once every replica that may serve reads on any instance has applied it.
    pub async fn settle(&self, conn: &mut (impl ConnectionLike + Send)) {
        if self.list.is_empty() {
            return;
        }
        let answering = self
            .list
            .iter()
            .filter(|r| r.answers.load(Ordering::Relaxed))
            .count();
        let acked: usize = if answering == 0 {
            0
        } else {
            redis::cmd("WAIT")
                .arg(answering)
                .arg(ACK_TIMEOUT_MS)
                .query_async(conn)
                .await
                .unwrap_or(0)
        };
        if acked >= self.list.len() {
            return;
        }
        if let Err(error) = self.raise(conn).await {
            // The primary is failing too: reads go to the database until it is back,
            // and replicas stop validating without a readable fence.
            tracing::warn!(%error, "could not fence a lagging redis replica");
        }
        if acked < answering {
            tracing::warn!(
                acked,
                answering,
                "a redis replica did not acknowledge an invalidation; fenced off until it catches up"
            );
            tokio::time::sleep(LEASE).await;
        }
    }

    async fn raise(&self, conn: &mut (impl ConnectionLike + Send)) -> redis::RedisResult<()> {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(conn)
            .await?;
        // A fence is never lowered: an offset that cannot be read raises none, rather
        // than one no replica could ever cover.
        let offset = field(&info, "master_repl_offset").ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "INFO gave no master_repl_offset"))
        })?;
        self.raise_fence
            .key(&self.fence_key)
            .arg(offset)
            .invoke_async::<i64>(conn)
            .await?;
        Ok(())
    }

    /// Validates every replica against the fence every `VALIDATE_EVERY`, for as long as
    /// `owner` lives.
    pub fn spawn_validation<T: Send + Sync + 'static>(
        owner: &Arc<T>,
        replicas: impl Fn(&T) -> &Replicas + Send + 'static,
        primary: RedisConn,
    ) {
        let weak = Arc::downgrade(owner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(VALIDATE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(owner) = weak.upgrade() else { return };
                replicas(&owner).validate(primary.clone()).await;
            }
        });
    }

    async fn validate(&self, mut primary: RedisConn) {
        if self.list.is_empty() {
            return;
        }
        let started = self.now_ms();
        let fence: redis::RedisResult<Option<u64>> = redis::cmd("GET")
            .arg(&self.fence_key)
            .query_async(&mut primary)
            .await;
        for replica in &self.list {
            let mut conn = replica.conn.clone();
            let info: redis::RedisResult<String> = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await;
            replica.answers.store(info.is_ok(), Ordering::Relaxed);
            let covers = match (&fence, &info) {
                (Ok(fence), Ok(info)) => {
                    info.contains("master_link_status:up")
                        && field(info, "slave_repl_offset")
                            .is_some_and(|offset| offset >= fence.unwrap_or(0))
                }
                _ => false,
            };
            let was_valid = self.is_valid(replica);
            if covers {
                replica.valid_since_ms.store(started, Ordering::Relaxed);
                if !was_valid {
                    tracing::info!(replica = %replica.url, "redis replica caught up; reading from it");
                }
            }
        }
    }
}

fn lease_ms() -> u64 {
    u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX)
}

/// A numeric `name:value` line of `INFO`.
fn field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn offsets_are_read_from_info_lines() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:1234\r\nslave_read_repl_offset:1240\r\n";
        assert_eq!(field(info, "slave_repl_offset"), Some(1234));
        assert_eq!(field(info, "master_repl_offset"), None);
    }
}
