//! Saga transition events. Within a process they go through a broadcast channel; with
//! Redis they go through a pub/sub channel that every instance listens to (and
//! resubscribes to after a Redis restart, since redis-rs pub/sub does not reconnect).
//! Events only say "these sagas changed" (a worker moves a batch at once): subscribers
//! read the state from the database, so a lost event delays an update (subscribers
//! also poll) but never shows a wrong one.
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The sagas one transition changed.
pub type Changed = Arc<[i64]>;

#[derive(Clone)]
pub struct Events {
    local: broadcast::Sender<Changed>,
    redis: Option<(redis::aio::ConnectionManager, String)>,
}

impl Events {
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(4096);
        Self { local, redis: None }
    }

    /// Publishes through Redis and forwards Redis messages to local subscribers.
    pub fn with_redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_millis(300)))
            .set_connection_timeout(Some(Duration::from_millis(500)));
        let publisher =
            redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let channel = format!("{prefix}:saga-events");
        let (local, _) = broadcast::channel(4096);
        tokio::spawn(listen(client, channel.clone(), local.clone()));
        Ok(Self {
            local,
            redis: Some((publisher, channel)),
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
        if let Some((conn, channel)) = &self.redis {
            let mut conn = conn.clone();
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(encode(sagas))
                .query_async(&mut conn)
                .await;
            if sent.is_ok() {
                return;
            }
        }
        // No Redis (or it is down): local subscribers still hear it.
        let _ = self.local.send(sagas.into());
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

/// Ids from a message; anything unreadable is skipped (subscribers poll anyway).
fn decode(message: &str) -> Changed {
    message
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

async fn listen(client: redis::Client, channel: String, local: broadcast::Sender<Changed>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backoff = Duration::from_millis(100);
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
    }
}
