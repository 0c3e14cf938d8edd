//! The payment provider contract, shaped like real PSPs': every `charge` and `refund`
//! carries an idempotency key derived from the saga and step, and the same key always
//! gets the first outcome, from any worker, any number of times. Workers call the
//! gateway outside any database transaction: record the intent (the step is RUNNING),
//! call, record the result; when the answer is lost (a timeout), they ask again later
//! with the same key.
//!
//! Two providers: the [`Simulator`] (in process by default, with its own ledger) and
//! [`HttpGateway`], which speaks the simulator's HTTP API (`shopgraph gateway` serves it)
//! and is where a real provider's client plugs in.
mod http;
mod simulator;

pub use http::HttpGateway;
pub use simulator::{Ledger, Simulator, SimulatorConfig};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The key of a checkout saga's charge. Its refund's key derives from it, so a charge
/// is refunded at most once, whether by a compensation or by a cancellation.
pub fn charge_key(saga: i64) -> String {
    format!("saga-{saga}-charge")
}

pub fn refund_key(saga: i64) -> String {
    format!("saga-{saga}-refund")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    pub key: String,
    pub amount_cents: i64,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    pub key: String,
    /// The charge to refund (in full).
    pub charge_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Charge {
    Captured,
    Declined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Refund {
    Refunded {
        amount_cents: i64,
    },
    /// Nothing was captured under the charge key. The provider also cancels the
    /// charge, so a late charge with that key (a stale worker) is declined.
    NothingCaptured,
}

/// The outcome is unknown (timeout, connection lost, provider error): the charge may or
/// may not have happened. Ask again with the same key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment provider outcome unknown: {0}")]
pub struct Unknown(pub String);

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown>;
    async fn refund(&self, request: &RefundRequest) -> Result<Refund, Unknown>;
}

/// Counts every call by operation and outcome (`shopgraph_gateway_calls_total`).
pub struct Metered(pub Arc<dyn PaymentGateway>);

#[async_trait]
impl PaymentGateway for Metered {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let answer = self.0.charge(request).await;
        let outcome = match &answer {
            Ok(Charge::Captured) => "captured",
            Ok(Charge::Declined { .. }) => "declined",
            Err(_) => "unknown",
        };
        crate::telemetry::gateway_call("charge", outcome);
        answer
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, Unknown> {
        let answer = self.0.refund(request).await;
        let outcome = match &answer {
            Ok(Refund::Refunded { .. }) => "refunded",
            Ok(Refund::NothingCaptured) => "nothing_captured",
            Err(_) => "unknown",
        };
        crate::telemetry::gateway_call("refund", outcome);
        answer
    }
}
