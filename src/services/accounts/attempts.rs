//! Sign-in attempt limits, apart from the general rate limit: per client IP (every
//! attempt counts) and per account (tenant and e-mail, whether or not a customer has
//! it, so that the limit tells nothing about which e-mails exist). An account's
//! counter counts attempts that have not succeeded yet: it is taken before the
//! password is checked (parallel guesses cannot slip past it) and cleared by a success.
//!
//! Counters are fixed windows. With Redis they live there (`{prefix}:signin:{tenant}:…`),
//! so every instance shares them; without Redis, or while Redis fails, in this process.
use crate::domain::{Email, TenantId};
use crate::error::{AppError, AppResult};
use crate::redis_topology::RedisConn;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often expired in-process counters are dropped.
const PURGE_EVERY: Duration = Duration::from_secs(30);
const IP_WINDOW: Duration = Duration::from_secs(60);
const GUEST_CART_WINDOW: Duration = Duration::from_secs(3600);

/// Counts a hit and gives the key the window's expiry when it starts one.
const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub account_failures: u32,
    pub account_window: Duration,
    pub ip_per_minute: u32,
    /// Guest carts one client IP may create per hour (per tenant).
    pub guest_carts_per_ip_hour: u32,
}

#[derive(Clone)]
pub struct Attempts {
    limits: Limits,
    redis: Option<(RedisConn, Arc<str>)>,
    memory: Arc<Mutex<HashMap<String, Window>>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    ends: Instant,
}

impl Attempts {
    /// `redis`: the connection and key prefix, when Redis is configured. Starts the
    /// task that drops expired in-process counters; it ends with the last clone.
    pub fn new(limits: Limits, redis: Option<(RedisConn, &str)>) -> Self {
        let memory = Arc::new(Mutex::new(HashMap::new()));
        let weak = Arc::downgrade(&memory);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                let Some(memory) = weak.upgrade() else { return };
                if let Ok(mut windows) = memory.lock() {
                    let now = Instant::now();
                    windows.retain(|_, w: &mut Window| w.ends > now);
                }
            }
        });
        Self {
            limits,
            redis: redis.map(|(conn, prefix)| (conn, Arc::from(prefix))),
            memory,
        }
    }

    /// Counts one attempt for the client and for the account; `RATE_LIMITED` (with the
    /// seconds until the window ends) when either is over its limit. An unknown client
    /// address shares one counter.
    pub async fn admit(
        &self,
        tenant: &TenantId,
        client: Option<IpAddr>,
        account: &Email,
    ) -> AppResult<()> {
        self.admit_client(tenant, client).await?;
        let key = account_key(tenant, account);
        let (count, left) = self.count(&key, self.limits.account_window).await;
        if count > self.limits.account_failures {
            return Err(refusal(left));
        }
        Ok(())
    }

    /// Counts one attempt for the client only (a sign-up: it costs a hash too).
    pub async fn admit_client(&self, tenant: &TenantId, client: Option<IpAddr>) -> AppResult<()> {
        let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let key = format!("signin:{tenant}:ip:{client}");
        let (count, left) = self.count(&key, IP_WINDOW).await;
        if count > self.limits.ip_per_minute {
            return Err(refusal(left));
        }
        Ok(())
    }

    /// Counts one new guest cart for the client: anonymous carts cost rows, so a
    /// client gets `guest_carts_per_ip_hour` of them, whatever the general rate limit.
    pub async fn admit_guest_cart(
        &self,
        tenant: &TenantId,
        client: Option<IpAddr>,
    ) -> AppResult<()> {
        let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let key = format!("guestcart:{tenant}:ip:{client}");
        let (count, left) = self.count(&key, GUEST_CART_WINDOW).await;
        if count > self.limits.guest_carts_per_ip_hour {
            return Err(refusal(left));
        }
        Ok(())
    }

    /// The account signed in: its failures are forgiven.
    pub async fn succeeded(&self, tenant: &TenantId, account: &Email) {
        let key = account_key(tenant, account);
        if let Ok(mut windows) = self.memory.lock() {
            windows.remove(&key);
        }
        if let Some((conn, prefix)) = &self.redis {
            let mut conn = conn.clone();
            let cleared: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(format!("{prefix}:{key}"))
                .query_async(&mut conn)
                .await;
            if let Err(err) = cleared {
                tracing::debug!(error = %err, "sign-in counter not cleared in Redis");
            }
        }
    }

    /// Adds one to `key`'s window; the count and the time left in the window.
    async fn count(&self, key: &str, window: Duration) -> (u32, Duration) {
        if let Some((conn, prefix)) = &self.redis {
            let mut conn = conn.clone();
            let counted: redis::RedisResult<(u32, u64)> = redis::Script::new(COUNT)
                .key(format!("{prefix}:{key}"))
                .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
                .invoke_async(&mut conn)
                .await;
            match counted {
                Ok((count, left_ms)) => return (count, Duration::from_millis(left_ms)),
                Err(err) => {
                    tracing::debug!(error = %err, "sign-in counter kept in process: Redis failed");
                }
            }
        }
        self.count_here(key, window)
    }

    fn count_here(&self, key: &str, window: Duration) -> (u32, Duration) {
        let now = Instant::now();
        let Ok(mut windows) = self.memory.lock() else {
            // A poisoned lock: refuse rather than let attempts through uncounted.
            return (u32::MAX, window);
        };
        let entry = windows.entry(key.to_owned()).or_insert(Window {
            count: 0,
            ends: now + window,
        });
        if entry.ends <= now {
            *entry = Window {
                count: 0,
                ends: now + window,
            };
        }
        entry.count = entry.count.saturating_add(1);
        (entry.count, entry.ends - now)
    }
}

/// The e-mail is hashed: keys should not spell out customers' addresses.
fn account_key(tenant: &TenantId, account: &Email) -> String {
    let digest = hex::encode(&Sha256::digest(account.as_str().as_bytes())[..16]);
    format!("signin:{tenant}:account:{digest}")
}

fn refusal(left: Duration) -> AppError {
    AppError::RateLimited {
        retry_secs: (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> Email {
        Email::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tenant() -> TenantId {
        TenantId::parse("default").unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn an_account_is_refused_after_its_failures_until_a_success_clears_them() {
        let attempts = Attempts::new(
            Limits {
                account_failures: 2,
                account_window: Duration::from_secs(900),
                ip_per_minute: 100,
                guest_carts_per_ip_hour: 10,
            },
            None,
        );
        let ana = email("ana@example.com");
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert!(attempts.admit(&tenant(), ip, &ana).await.is_ok());
        attempts.succeeded(&tenant(), &ana).await;
        assert!(attempts.admit(&tenant(), ip, &ana).await.is_ok());
        assert!(attempts.admit(&tenant(), ip, &ana).await.is_ok());
        let refused = attempts.admit(&tenant(), ip, &ana).await;
        assert!(
            matches!(refused, Err(AppError::RateLimited { retry_secs }) if (899..=900).contains(&retry_secs)),
            "{refused:?}"
        );
        let other = email("bo@example.com");
        assert!(attempts.admit(&tenant(), ip, &other).await.is_ok());
    }
}
