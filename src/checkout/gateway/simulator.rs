//! A simulated payment provider with its own ledger: what it captured and refunded, by
//! key, and every call it answered. It keeps the contract real providers keep (the same
//! key gets the first outcome; a refund is at most the capture; refunding an unknown
//! charge cancels it) and can misbehave on purpose: latency, and an *ambiguous* mode in
//! which it captures and then times out, so the caller never hears the answer.
use super::{Charge, ChargeRequest, PaymentGateway, Refund, RefundRequest, Unknown};
use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct SimulatorConfig {
    pub latency: Duration,
    /// Probability that a call takes effect and then answers with a timeout.
    pub ambiguous_rate: f64,
}

#[derive(Debug, Clone)]
enum ChargeState {
    Captured {
        amount_cents: i64,
        refunded: bool,
    },
    Declined(String),
    /// Refunded before any capture: a later charge with this key is declined.
    Cancelled,
}

/// What the provider did, as a test or `/metrics` reads it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub captured_cents: i64,
    pub refunded_cents: i64,
    /// Amount captured (and not refunded) per charge key.
    pub held_by_key: BTreeMap<String, i64>,
    /// Captures per charge key: more than one would be a double charge.
    pub captures_by_key: BTreeMap<String, u32>,
    /// Calls answered (or timed out on purpose), by "op:outcome".
    pub calls: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Books {
    charges: HashMap<String, ChargeState>,
    refunds: HashMap<String, Refund>,
    ledger: Ledger,
}

#[derive(Clone, Default)]
pub struct Simulator {
    config: SimulatorConfig,
    books: Arc<Mutex<Books>>,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            config,
            books: Arc::default(),
        }
    }

    pub fn ledger(&self) -> Ledger {
        self.books().ledger.clone()
    }

    /// The books stay usable even if a thread panicked while holding them: every
    /// update below leaves them consistent before it can panic.
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn wait(&self) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
    }

    fn ambiguous(&self) -> bool {
        self.config.ambiguous_rate > 0.0 && rand::random::<f64>() < self.config.ambiguous_rate
    }

    fn answer<T>(
        &self,
        books: &mut Books,
        op: &str,
        outcome: &str,
        value: T,
    ) -> Result<T, Unknown> {
        let (outcome, answer) = if self.ambiguous() {
            ("timeout", Err(Unknown("the provider timed out".into())))
        } else {
            (outcome, Ok(value))
        };
        *books
            .ledger
            .calls
            .entry(format!("{op}:{outcome}"))
            .or_default() += 1;
        crate::telemetry::gateway_ledger(books.ledger.captured_cents, books.ledger.refunded_cents);
        answer
    }

    fn charge_now(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        let mut books = self.books();
        let books = &mut *books;
        let state = match books.charges.get(&request.key) {
            Some(state) => state.clone(),
            None => {
                let state = match request.token.as_deref() {
                    Some("tok_declined") => {
                        ChargeState::Declined("payment declined by the card issuer".into())
                    }
                    _ if request.amount_cents <= 0 => {
                        ChargeState::Declined("nothing to charge".into())
                    }
                    _ => {
                        let ledger = &mut books.ledger;
                        ledger.captured_cents += request.amount_cents;
                        *ledger
                            .captures_by_key
                            .entry(request.key.clone())
                            .or_default() += 1;
                        ledger
                            .held_by_key
                            .insert(request.key.clone(), request.amount_cents);
                        ChargeState::Captured {
                            amount_cents: request.amount_cents,
                            refunded: false,
                        }
                    }
                };
                books.charges.insert(request.key.clone(), state.clone());
                state
            }
        };
        let (outcome, charge) = match state {
            ChargeState::Captured { .. } => ("captured", Charge::Captured),
            ChargeState::Declined(reason) => ("declined", Charge::Declined { reason }),
            ChargeState::Cancelled => (
                "declined",
                Charge::Declined {
                    reason: "the payment was cancelled".into(),
                },
            ),
        };
        self.answer(books, "charge", outcome, charge)
    }

    fn refund_now(&self, request: &RefundRequest) -> Result<Refund, Unknown> {
        let mut books = self.books();
        let books = &mut *books;
        let refund = match books.refunds.get(&request.key) {
            Some(first) => first.clone(),
            None => {
                let refund = match books.charges.get_mut(&request.charge_key) {
                    Some(ChargeState::Captured {
                        amount_cents,
                        refunded,
                    }) if !*refunded => {
                        *refunded = true;
                        books.ledger.refunded_cents += *amount_cents;
                        books.ledger.held_by_key.remove(&request.charge_key);
                        Refund::Refunded {
                            amount_cents: *amount_cents,
                        }
                    }
                    Some(_) => Refund::NothingCaptured,
                    None => {
                        books
                            .charges
                            .insert(request.charge_key.clone(), ChargeState::Cancelled);
                        Refund::NothingCaptured
                    }
                };
                books.refunds.insert(request.key.clone(), refund.clone());
                refund
            }
        };
        let outcome = match refund {
            Refund::Refunded { .. } => "refunded",
            Refund::NothingCaptured => "nothing_captured",
        };
        self.answer(books, "refund", outcome, refund)
    }

    /// The provider's HTTP API: `POST /v1/charges`, `POST /v1/refunds`, `GET /v1/ledger`.
    /// A timed-out call answers 504, as a proxy in front of a slow provider would.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/charges", post(http_charge))
            .route("/v1/refunds", post(http_refund))
            .route("/v1/ledger", get(http_ledger))
            .with_state(self)
    }
}

#[async_trait]
impl PaymentGateway for Simulator {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, Unknown> {
        self.wait().await;
        self.charge_now(request)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, Unknown> {
        self.wait().await;
        self.refund_now(request)
    }
}

fn http_answer<T: Serialize>(answer: Result<T, Unknown>) -> Response {
    match answer {
        Ok(value) => Json(value).into_response(),
        Err(err) => (StatusCode::GATEWAY_TIMEOUT, err.to_string()).into_response(),
    }
}

async fn http_charge(State(sim): State<Simulator>, Json(request): Json<ChargeRequest>) -> Response {
    http_answer(sim.charge(&request).await)
}

async fn http_refund(State(sim): State<Simulator>, Json(request): Json<RefundRequest>) -> Response {
    http_answer(sim.refund(&request).await)
}

async fn http_ledger(State(sim): State<Simulator>) -> Json<Ledger> {
    Json(sim.ledger())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, amount_cents: i64) -> ChargeRequest {
        ChargeRequest {
            key: key.into(),
            amount_cents,
            token: None,
        }
    }

    fn refund(charge_key: &str) -> RefundRequest {
        RefundRequest {
            key: format!("{charge_key}-refund"),
            charge_key: charge_key.into(),
        }
    }

    #[tokio::test]
    async fn the_same_key_gets_the_first_outcome_and_moves_money_once() {
        let sim = Simulator::default();
        for _ in 0..3 {
            assert_eq!(sim.charge(&charge("a", 500)).await, Ok(Charge::Captured));
        }
        for _ in 0..2 {
            assert_eq!(
                sim.refund(&refund("a")).await,
                Ok(Refund::Refunded { amount_cents: 500 })
            );
        }
        let ledger = sim.ledger();
        assert_eq!((ledger.captured_cents, ledger.refunded_cents), (500, 500));
        assert_eq!(ledger.captures_by_key.get("a"), Some(&1));
        assert_eq!(ledger.calls.get("charge:captured"), Some(&3));
    }

    #[tokio::test]
    async fn refunding_an_unknown_charge_cancels_it() {
        let sim = Simulator::default();
        assert_eq!(sim.refund(&refund("b")).await, Ok(Refund::NothingCaptured));
        assert!(matches!(
            sim.charge(&charge("b", 500)).await,
            Ok(Charge::Declined { .. })
        ));
        assert_eq!(sim.ledger().captured_cents, 0);
    }

    #[tokio::test]
    async fn an_ambiguous_call_takes_effect_and_a_retry_hears_it() {
        let sim = Simulator::new(SimulatorConfig {
            ambiguous_rate: 1.0,
            ..Default::default()
        });
        assert!(sim.charge(&charge("c", 700)).await.is_err());
        assert_eq!(sim.ledger().captured_cents, 700);
        let calm = Simulator {
            config: SimulatorConfig::default(),
            books: sim.books.clone(),
        };
        assert_eq!(calm.charge(&charge("c", 700)).await, Ok(Charge::Captured));
        assert_eq!(calm.ledger().captured_cents, 700);
    }
}
