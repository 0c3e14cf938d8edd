//! Checkout as a durable, orchestrated saga with queue-based load leveling.
//!
//! Design rules:
//! - Accepting a checkout writes the saga row (status PENDING) and its steps atomically
//!   (on PostgreSQL, group-committed with the other checkouts arriving at that moment:
//!   `intake`) and returns at once; the row is the queue entry, so an accepted checkout
//!   survives any crash.
//! - A bounded pool of workers (in `serve`, or separate `worker` processes) claims sagas
//!   in batches with a lease; an expired lease hands an unfinished saga to another
//!   worker. A batch of checkouts moves through each step together (`batch`); a saga
//!   that must be compensated, a cancellation, or a saga a batch step could not move
//!   continues alone (`steps`).
//! - Steps run in order (RESERVE_STOCK, CHARGE_PAYMENT, CREATE_ORDER); on a failure the
//!   completed ones are compensated in reverse. Each step and compensation runs in one
//!   transaction with its new status and is idempotent, keyed by saga and step.
//! - The state machine (`machine`) is pure; workers persist each transition before
//!   acting on it, publish it (`events`), and invalidate the cache tags it touched.
pub mod accept;
mod batch;
pub mod events;
pub mod gateway;
pub mod intake;
pub mod machine;
pub mod model;
pub mod queue;
pub mod steps;
pub mod worker;

pub use worker::Engine;
