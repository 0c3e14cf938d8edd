//! Checkout as a durable, orchestrated saga with queue-based load leveling.
//!
//! Design rules:
//! - Accepting a checkout writes the saga row (status PENDING) and its steps atomically
//!   (on PostgreSQL, group-committed with the other checkouts arriving at that moment:
//!   `intake`, exactly once even when a commit's answer is lost) and returns at once;
//!   the row is the queue entry, so an accepted checkout survives any crash.
//! - A bounded pool of workers (in `serve`, or separate `worker` processes) claims sagas
//!   in batches with a lease and a fence token (`lease`); an expired lease hands an
//!   unfinished saga to another worker, and the stale worker's writes are refused.
//! - Steps run in order (RESERVE_STOCK, CHARGE_PAYMENT, CREATE_ORDER); on a failure the
//!   completed ones are compensated in reverse. Each step and compensation is written
//!   once, for a batch (`steps`); its effect commits with its status in one fenced
//!   transaction. The payment provider is called outside any transaction, with an
//!   idempotency key derived from the saga (`gateway`).
//! - Transient faults put a saga back with a backoff; a checkout step gets
//!   `SAGA_MAX_ATTEMPTS`, and a saga that gives up (or meets a permanent error) is
//!   compensated and ends FAILED: a dead letter.
//! - The state machine (`machine`) is pure; workers persist each transition before
//!   acting on it, publish it (`events`), and invalidate the cache tags it touched.
pub mod accept;
pub mod events;
pub mod failures;
pub mod gateway;
pub mod intake;
mod invalidation;
pub mod lease;
pub mod machine;
pub mod model;
pub mod queue;
pub mod steps;
pub mod worker;

pub use worker::{Engine, Workers};
