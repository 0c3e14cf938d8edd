//! Where Redis runs and how every part (cache, saga events, persisted queries) reaches
//! it: one server (`REDIS_URL`), a primary watched by Sentinels (`REDIS_SENTINELS`),
//! or a Redis Cluster (`REDIS_CLUSTER_URLS`).
//!
//! Each topology gives a [`RedisConn`], which every caller uses as a plain connection:
//! it connects lazily (Redis down at start means errors, which callers treat as a
//! degraded cache, never a failed start), bounds every call by the caller's timeouts,
//! and follows the topology by itself: behind Sentinels it asks them where the primary
//! is, again as soon as a call fails, so a failover is followed without a restart; in a
//! cluster redis-rs routes each command by its key's slot.
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::sentinel::Sentinel;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Where Redis runs (see `Settings::redis_topology`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server; static read replicas, if any, are the cache's business.
    Single(String),
    /// A primary (and its replicas) that the named Sentinel `master` watches.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster, reached through any of these nodes.
    Cluster(Vec<String>),
}

/// Bounds on one connection's calls.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub response: Duration,
    pub connect: Duration,
    /// Reconnection attempts per call (redis-rs' default when `None`).
    pub retries: Option<usize>,
}

/// How often the Sentinels are asked where the primary is while nothing fails.
const SENTINEL_POLL: Duration = Duration::from_secs(1);
/// The least time between two questions to the Sentinels, however many calls fail.
const SENTINEL_MIN_GAP: Duration = Duration::from_millis(100);
/// A Sentinel that does not answer within this is skipped for this round.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(2);

impl Topology {
    /// A connection that connects on first use.
    pub fn connect(&self, timeouts: Timeouts) -> anyhow::Result<RedisConn> {
        Ok(match self {
            Self::Single(url) => RedisConn::Single(single(url, timeouts)?),
            Self::Sentinel { sentinels, master } => {
                // Checked here so that a bad address fails the start, not every lookup.
                Sentinel::build(sentinels.clone())?;
                RedisConn::Sentinel(SentinelConn::start(sentinels, master, timeouts))
            }
            Self::Cluster(urls) => {
                let client = ClusterClientBuilder::new(urls.clone())
                    .connection_timeout(timeouts.connect)
                    .response_timeout(timeouts.response)
                    .retries(u32::try_from(timeouts.retries.unwrap_or(2)).unwrap_or(2))
                    .build()?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeouts.connect)
                    .set_response_timeout(timeouts.response);
                RedisConn::Cluster(client.get_pending_async_connection_with_config(config))
            }
        })
    }

    /// A subscriber connection that hears every PUBLISH of the deployment: the server
    /// itself, the current primary (replicas would hear it too), or any cluster node
    /// (the cluster bus carries each PUBLISH to every node).
    pub async fn subscriber(&self) -> RedisResult<PubSub> {
        match self {
            Self::Single(url) => redis::Client::open(url.as_str())?.get_async_pubsub().await,
            Self::Sentinel { sentinels, master } => {
                let mut sentinel = Sentinel::build(sentinels.clone())?;
                let client =
                    tokio::time::timeout(SENTINEL_TIMEOUT, sentinel.async_master_for(master, None))
                        .await
                        .map_err(|_| timeout_error("no Sentinel answered"))??;
                client.get_async_pubsub().await
            }
            Self::Cluster(urls) => {
                let mut last = timeout_error("no cluster node configured");
                for url in urls {
                    match redis::Client::open(url.as_str())?.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(err) => last = err,
                    }
                }
                Err(last)
            }
        }
    }

    /// For logs: the addresses without passwords.
    pub fn describe(&self) -> String {
        let redact = |urls: &[String]| {
            urls.iter()
                .map(|u| crate::config::redact_url(u))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Single(url) => crate::config::redact_url(url),
            Self::Sentinel { sentinels, master } => {
                format!("sentinel master '{master}' via {}", redact(sentinels))
            }
            Self::Cluster(urls) => format!("cluster via {}", redact(urls)),
        }
    }
}

/// A lazily connecting manager with these timeouts.
pub fn single(url: &str, timeouts: Timeouts) -> anyhow::Result<ConnectionManager> {
    Ok(single_from(redis::Client::open(url)?, timeouts)?)
}

fn timeout_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Io, what))
}

/// One connection to Redis, whatever the topology; cheap to clone (clones share it).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Sentinel(SentinelConn),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Up to `limit` keys matching `pattern` that `keep` accepts; they must all hash to
    /// the slot of `slot_key` (in a cluster, only the node serving it is scanned).
    pub async fn scan_slot(
        &mut self,
        slot_key: &str,
        pattern: &str,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = match self {
                Self::Cluster(cluster) => {
                    let route = Route::with_slot(Slot::for_key(slot_key), SlotAddr::Master);
                    let value = cluster
                        .route_command(
                            scan,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                        )
                        .await?;
                    redis::from_redis_value(value)?
                }
                _ => scan.query_async(self).await?,
            };
            keys.extend(batch.into_iter().filter(|key| keep(key)));
            cursor = next;
            if cursor == 0 || keys.len() >= limit {
                keys.truncate(limit);
                return Ok(keys);
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Sentinel(_) => 0,
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The primary a set of Sentinels points at, followed across failovers: a task asks
/// the Sentinels every second, and at once (but at most every `SENTINEL_MIN_GAP`) when
/// a call fails, and moves this connection to the new primary when it changed.
#[derive(Clone)]
pub struct SentinelConn(Arc<Followed>);

struct Followed {
    /// The primary's address and a connection to it; `None` until first located.
    current: RwLock<Option<(String, ConnectionManager)>>,
    /// Held by the following task too, which must not keep `Followed` alive.
    relocate: Arc<Notify>,
}

impl SentinelConn {
    fn start(sentinels: &[String], master: &str, timeouts: Timeouts) -> Self {
        let relocate = Arc::new(Notify::new());
        let followed = Arc::new(Followed {
            current: RwLock::new(None),
            relocate: relocate.clone(),
        });
        tokio::spawn(follow(
            Arc::downgrade(&followed),
            relocate,
            sentinels.to_vec(),
            master.to_owned(),
            timeouts,
        ));
        Self(followed)
    }

    fn current(&self) -> RedisResult<ConnectionManager> {
        let current = self.0.current.read().ok().and_then(|c| c.clone());
        match current {
            Some((_, conn)) => Ok(conn),
            None => {
                self.0.relocate.notify_one();
                Err(timeout_error("the Sentinels have not named a primary yet"))
            }
        }
    }

    /// Any failure may mean the primary moved (refused, reset, timed out, READONLY
    /// from a demoted primary): ask the Sentinels.
    fn observe<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(err) = &result
            && err.kind() != ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            self.0.relocate.notify_one();
        }
        result
    }

    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.current()?;
            let result = conn.req_packed_command(cmd).await;
            self.observe(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.current()?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.observe(result)
        })
    }
}

/// Keeps `followed` on the primary the Sentinels name; ends with the last connection.
async fn follow(
    followed: Weak<Followed>,
    relocate: Arc<Notify>,
    sentinels: Vec<String>,
    master: String,
    t: Timeouts,
) {
    let mut sentinel = match Sentinel::build(sentinels) {
        Ok(sentinel) => sentinel,
        Err(err) => {
            tracing::error!(error = %err, "REDIS_SENTINELS unusable");
            return;
        }
    };
    // Lookups fail for as long as a failover takes: said once, not every round.
    let mut complained = false;
    loop {
        let Some(strong) = followed.upgrade() else {
            return;
        };
        let located =
            tokio::time::timeout(SENTINEL_TIMEOUT, sentinel.async_master_for(&master, None)).await;
        match located {
            Ok(Ok(client)) => {
                complained = false;
                let address = client.get_connection_info().addr().to_string();
                let known = strong
                    .current
                    .read()
                    .ok()
                    .and_then(|c| c.as_ref().map(|(a, _)| a.clone()));
                if known.as_deref() != Some(address.as_str()) {
                    match single_from(client, t) {
                        Ok(conn) => {
                            tracing::info!(primary = %address, master = %master, "redis primary located through the Sentinels");
                            if let Ok(mut current) = strong.current.write() {
                                *current = Some((address, conn));
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "redis primary unusable"),
                    }
                }
            }
            failed if !complained => {
                complained = true;
                let error = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "no Sentinel answered in time".to_owned(),
                };
                tracing::warn!(%error, master = %master, "the Sentinels name no reachable primary (yet)");
            }
            _ => {}
        }
        drop(strong);
        tokio::time::sleep(SENTINEL_MIN_GAP).await;
        // Woken early by a failed call; otherwise a routine check.
        let _ = tokio::time::timeout(SENTINEL_POLL, relocate.notified()).await;
    }
}

fn single_from(client: redis::Client, timeouts: Timeouts) -> RedisResult<ConnectionManager> {
    let mut config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeouts.response))
        .set_connection_timeout(Some(timeouts.connect));
    if let Some(retries) = timeouts.retries {
        config = config
            .set_number_of_retries(retries)
            .set_max_delay(Duration::from_secs(2));
    }
    ConnectionManager::new_lazy_with_config(client, config)
}
