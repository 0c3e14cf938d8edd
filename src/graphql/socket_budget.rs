//! What one WebSocket connection is held to besides the document limits: every
//! operation on it draws from the rate-limit bucket of the request that opened it (a
//! socket is no way around the HTTP limit), and at most `WS_MAX_SUBSCRIPTIONS`
//! subscriptions run on it at once. The budget is the connection's data, set at
//! `connection_init`; the gateway's limits apply it to each operation.
use async_graphql::{ErrorExtensionValues, ServerError, ServerResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Takes a token for one operation, or gives the whole seconds until one is free.
pub type Admit = Box<dyn Fn() -> Result<(), u64> + Send + Sync>;

pub struct SocketBudget {
    admit: Option<Admit>,
    max_subscriptions: usize,
    running: Arc<AtomicUsize>,
}

impl SocketBudget {
    /// `admit` is `None` when rate limiting is off.
    pub fn new(admit: Option<Admit>, max_subscriptions: usize) -> Self {
        Self {
            admit,
            max_subscriptions,
            running: Arc::default(),
        }
    }

    pub(super) fn admit(&self) -> ServerResult<()> {
        match self.admit.as_ref().map(|admit| admit()) {
            Some(Err(retry)) => {
                crate::telemetry::rate_limited();
                Err(rate_limited(crate::http::rate_limit::too_many(retry)))
            }
            _ => Ok(()),
        }
    }

    /// A place for one more subscription, held until the slot is dropped (when the
    /// subscription's stream ends or the client stops it).
    pub(super) fn open_subscription(&self) -> ServerResult<SubscriptionSlot> {
        let max = self.max_subscriptions;
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| {
                rate_limited(format!(
                    "at most {max} subscriptions run on one connection (WS_MAX_SUBSCRIPTIONS); \
                     complete one first"
                ))
            })?;
        Ok(SubscriptionSlot(self.running.clone()))
    }
}

pub struct SubscriptionSlot(Arc<AtomicUsize>);

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn rate_limited(message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "RATE_LIMITED");
    err.extensions = Some(extensions);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_given_back_when_its_subscription_ends() {
        let budget = SocketBudget::new(None, 2);
        let first = budget.open_subscription();
        let second = budget.open_subscription();
        assert!(first.is_ok() && second.is_ok());
        assert!(budget.open_subscription().is_err());
        drop(first);
        assert!(budget.open_subscription().is_ok());
    }

    #[test]
    fn an_empty_bucket_refuses_with_the_wait() {
        let budget = SocketBudget::new(Some(Box::new(|| Err(3))), 1);
        let err = budget.admit().err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("too many requests: retry in 3 s"));
    }
}
