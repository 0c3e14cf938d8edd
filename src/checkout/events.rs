//! Saga transition events. Within a process they go through a broadcast channel; with
//! Redis they go through a pub/sub channel that every instance listens to. Events only
//! say "these sagas changed" (a worker moves a batch at once): subscribers read the
//! state from the database, so an event is never wrong, only possibly missed. Nothing
//! polls per subscriber; instead nothing is lost:
//! - a PUBLISH that fails is kept and sent again until Redis takes it (bounded; past the
//!   bound one "everything changed" message replaces the ids);
//! - pub/sub drops messages while a listener is disconnected, so a listener that
//!   resubscribes tells its subscribers that anything may have changed (`RESYNC`);
//! - a subscriber that lagged behind the broadcast channel re-reads too.
//!
//! Behind Sentinels the listener subscribes on the current primary (and again on the
//! new one after a failover); in a cluster on any node, since the cluster bus carries
//! every PUBLISH to every node.
use crate::redis_topology::{RedisConn, Timeouts, Topology};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// The sagas one transition changed; empty means any saga may have changed.
pub type Changed = Arc<[i64]>;

/// Any saga may have changed: every subscriber re-reads.
pub fn is_resync(changed: &Changed) -> bool {
    changed.is_empty()
}

/// The message meaning `RESYNC` on the Redis channel.
const RESYNC: &str = "*";

/// Most ids kept while Redis refuses to publish; past it they become one `RESYNC`.
const MAX_UNSENT: usize = 10_000;

/// How often unsent ids are offered to Redis again.
const RESEND_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Events {
    local: broadcast::Sender<Changed>,
    redis: Option<(RedisConn, String)>,
    unsent: Arc<Mutex<Unsent>>,
}

/// Ids whose PUBLISH failed, waiting for Redis to come back.
#[derive(Default)]
struct Unsent {
    ids: HashSet<i64>,
    overflowed: bool,
}

impl Unsent {
    fn add(&mut self, sagas: &[i64]) {
        if self.overflowed {
            return;
        }
        self.ids.extend(sagas);
        if self.ids.len() > MAX_UNSENT {
            self.ids = HashSet::new();
            self.overflowed = true;
        }
    }

    fn message(&self) -> Option<String> {
        if self.overflowed {
            Some(RESYNC.to_owned())
        } else if self.ids.is_empty() {
            None
        } else {
            Some(encode(&self.ids.iter().copied().collect::<Vec<_>>()))
        }
    }
}

impl Events {
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(4096);
        Self {
            local,
            redis: None,
            unsent: Arc::default(),
        }
    }

    /// Publishes through Redis and forwards Redis messages to local subscribers.
    pub fn with_redis(topology: &Topology, prefix: &str) -> anyhow::Result<Self> {
        let publisher = topology.connect(Timeouts {
            response: Duration::from_millis(300),
            connect: Duration::from_millis(500),
            retries: None,
        })?;
        let channel = format!("{prefix}:saga-events");
        let (local, _) = broadcast::channel(4096);
        tokio::spawn(listen(topology.clone(), channel.clone(), local.clone()));
        let unsent = Arc::default();
        tokio::spawn(resend(
            Arc::downgrade(&unsent),
            publisher.clone(),
            channel.clone(),
        ));
        Ok(Self {
            local,
            redis: Some((publisher, channel)),
            unsent,
        })
    }

    pub async fn publish(&self, saga: i64) {
        self.publish_many(&[saga]).await;
    }

    /// One message for a batch: its ids, comma-separated.
    pub async fn publish_many(&self, sagas: &[i64]) {
        if sagas.is_empty() {
            return;
        }
        if self.redis.is_some() {
            // While earlier events wait for Redis, new ones queue behind them instead of
            // each waiting out a timeout: the resend task is what probes Redis.
            let queued = self.unsent.lock().is_ok_and(|mut unsent| {
                let waiting = unsent.message().is_some();
                if waiting {
                    unsent.add(sagas);
                }
                waiting
            });
            if !queued {
                if self.send(&encode(sagas)).await {
                    return;
                }
                if let Ok(mut unsent) = self.unsent.lock() {
                    unsent.add(sagas);
                }
            }
        }
        // No Redis (or it is down): local subscribers still hear it now, the other
        // instances' when Redis takes it.
        let _ = self.local.send(sagas.into());
    }

    async fn send(&self, message: &str) -> bool {
        let Some((conn, channel)) = &self.redis else {
            return false;
        };
        publish(&mut conn.clone(), channel, message).await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.local.subscribe()
    }
}

fn encode(sagas: &[i64]) -> String {
    sagas
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Ids from a message; `RESYNC`, or a message with nothing readable, is a resync.
fn decode(message: &str) -> Changed {
    message
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

/// Offers unsent ids to Redis until it takes them; ends when the last `Events` is gone.
async fn resend(unsent: Weak<Mutex<Unsent>>, mut conn: RedisConn, channel: String) {
    let mut tick = tokio::time::interval(RESEND_EVERY);
    loop {
        tick.tick().await;
        let Some(unsent) = unsent.upgrade() else {
            return;
        };
        let message = unsent.lock().ok().and_then(|u| u.message());
        let Some(message) = message else { continue };
        if publish(&mut conn, &channel, &message).await
            && let Ok(mut unsent) = unsent.lock()
        {
            // Ids added while this was sent (Redis still refusing them) wait for the next round.
            if unsent.message().as_deref() == Some(message.as_str()) {
                *unsent = Unsent::default();
            }
        }
    }
}

/// Bounded, because the connection manager's reconnection retries can take seconds and
/// a worker publishes after every step.
async fn publish(conn: &mut RedisConn, channel: &str, message: &str) -> bool {
    let mut command = redis::cmd("PUBLISH");
    command.arg(channel).arg(message);
    let publish = command.query_async::<i64>(conn);
    matches!(
        tokio::time::timeout(PUBLISH_TIMEOUT, publish).await,
        Ok(Ok(_))
    )
}

const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

async fn listen(topology: Topology, channel: String, local: broadcast::Sender<Changed>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(mut pubsub) = topology.subscriber().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backoff = Duration::from_millis(100);
            // Whatever was published while this listener was away is gone.
            let _ = local.send(Changed::from([]));
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if let Ok(text) = message.get_payload::<String>() {
                    let _ = local.send(decode(&text));
                }
            }
            tracing::warn!("saga event subscription lost; resubscribing");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_through_its_message() {
        assert_eq!(&*decode(&encode(&[3, 41, 7])), &[3, 41, 7]);
        assert_eq!(&*decode("12"), &[12]);
        assert_eq!(&*decode("5,x,6"), &[5, 6]);
        assert!(is_resync(&decode(RESYNC)));
    }

    #[test]
    fn ids_redis_refused_are_kept_and_bounded() {
        let mut unsent = Unsent::default();
        assert_eq!(unsent.message(), None);
        unsent.add(&[4, 4]);
        assert_eq!(unsent.message().as_deref(), Some("4"));
        let many: Vec<i64> = (0..=i64::try_from(MAX_UNSENT).unwrap_or(0)).collect();
        unsent.add(&many);
        assert_eq!(unsent.message().as_deref(), Some(RESYNC));
    }
}
