//! Saga transition events. Within a process they go through a broadcast channel; with
//! Redis they go through a pub/sub channel that every instance listens to (and
//! resubscribes to after a Redis restart, since redis-rs pub/sub does not reconnect).
//! Events only say "saga N changed": subscribers read the state from the database, so a
//! lost event delays an update (subscribers also poll) but never shows a wrong one.
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Events {
    local: broadcast::Sender<i64>,
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
        if let Some((conn, channel)) = &self.redis {
            let mut conn = conn.clone();
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(saga)
                .query_async(&mut conn)
                .await;
            if sent.is_ok() {
                return;
            }
        }
        // No Redis (or it is down): local subscribers still hear it.
        let _ = self.local.send(saga);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.local.subscribe()
    }
}

async fn listen(client: redis::Client, channel: String, local: broadcast::Sender<i64>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backoff = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if let Ok(saga) = message.get_payload::<i64>() {
                    let _ = local.send(saga);
                }
            }
            tracing::warn!("saga event subscription lost; resubscribing");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
