//! Prometheus metrics: one process-wide recorder (installed once, however many apps a
//! process builds: the tests build dozens), the metric names, and small helpers that
//! record them so call sites stay one line.
//!
//! Metrics (all prefixed `shopgraph_`):
//! - `graphql_requests_total{operation,status}` and
//!   `graphql_request_duration_seconds{operation}`: one per HTTP request to `/graphql`;
//!   `operation` is `query`, `mutation`, `subscription`, `batch` or `invalid`.
//! - `graphql_errors_total{code}`: errors sent to clients, by `extensions.code`
//!   (`NONE` for errors without one, such as validation errors).
//! - `cache_operations_total{module,outcome}` (`hit`, `miss`, `set`, `error`) and
//!   `cache_invalidations_total{tag}` (by tag family: `product`, `products`, `cart`, …).
//! - `rate_limited_total`: requests refused with 429.
//! - `jwks_fetches_total{outcome}` (`ok`, `error`): fetches of the identity provider's
//!   keys (`JWT_JWKS_URL`).
//!
//! The checkout work adds its own (queue depth, sagas by status) in
//! [`describe_checkout`] and the helpers beside it.
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const REQUESTS: &str = "shopgraph_graphql_requests_total";
pub const REQUEST_DURATION: &str = "shopgraph_graphql_request_duration_seconds";
pub const ERRORS: &str = "shopgraph_graphql_errors_total";
pub const CACHE_OPERATIONS: &str = "shopgraph_cache_operations_total";
pub const CACHE_INVALIDATIONS: &str = "shopgraph_cache_invalidations_total";
pub const RATE_LIMITED: &str = "shopgraph_rate_limited_total";
pub const JWKS_FETCHES: &str = "shopgraph_jwks_fetches_total";
/// Reserved for the checkout queue: entries waiting for a worker.
pub const QUEUE_DEPTH: &str = "shopgraph_checkout_queue_depth";
/// Reserved for the checkout saga: transitions by resulting status.
pub const SAGAS: &str = "shopgraph_sagas_total";
/// Sagas that gave up (attempts exhausted or a permanent error) and ended FAILED.
pub const DEAD_LETTERS: &str = "shopgraph_saga_dead_letters_total";
/// Saga steps put back with a backoff after a transient fault.
pub const SAGA_RETRIES: &str = "shopgraph_saga_retries_total";
/// Payment provider calls by operation and outcome.
pub const GATEWAY_CALLS: &str = "shopgraph_gateway_calls_total";
/// The in-process simulated provider's ledger.
pub const GATEWAY_CAPTURED: &str = "shopgraph_gateway_captured_cents";
pub const GATEWAY_REFUNDED: &str = "shopgraph_gateway_refunded_cents";

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first use and returns its handle; later calls
/// return the same handle. If another recorder was installed first (an embedding
/// program), `/metrics` renders an empty registry rather than failing.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        spawn_upkeep(handle.clone());
        handle
    })
}

/// Histograms buffer samples until upkeep folds them in: without a scrape, that buffer
/// would grow with traffic. A plain thread, so it does not depend on any one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "metrics upkeep thread not started");
    }
}

/// The Prometheus text of every metric recorded so far.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "GraphQL HTTP requests by operation type and status"
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "GraphQL HTTP request latency by operation type"
    );
    describe_counter!(ERRORS, "GraphQL errors sent to clients, by extensions.code");
    describe_counter!(
        CACHE_OPERATIONS,
        "Cache lookups and stores by module and outcome (hit, miss, set, error)"
    );
    describe_counter!(CACHE_INVALIDATIONS, "Cache invalidations by tag family");
    describe_counter!(RATE_LIMITED, "Requests refused by the rate limiter");
    describe_counter!(
        JWKS_FETCHES,
        "Fetches of the identity provider's signing keys by outcome"
    );
    describe_checkout();
}

/// Descriptions of the checkout metrics. The queue and saga code records them through
/// [`set_queue_depth`] and [`saga_transition`]; nothing records them before that exists.
pub fn describe_checkout() {
    describe_gauge!(
        QUEUE_DEPTH,
        "Checkouts queued and not yet taken by a worker"
    );
    describe_counter!(SAGAS, "Saga transitions by resulting status");
    describe_counter!(
        DEAD_LETTERS,
        "Sagas that gave up, were compensated and ended FAILED"
    );
    describe_counter!(
        SAGA_RETRIES,
        "Saga steps retried later after a transient fault"
    );
    describe_counter!(
        GATEWAY_CALLS,
        "Payment provider calls by operation and outcome"
    );
    describe_gauge!(GATEWAY_CAPTURED, "Cents the simulated provider captured");
    describe_gauge!(GATEWAY_REFUNDED, "Cents the simulated provider refunded");
}

/// One payment provider call (`op`: charge or refund) and how it ended.
pub fn gateway_call(op: &'static str, outcome: &'static str) {
    counter!(GATEWAY_CALLS, "op" => op, "outcome" => outcome).increment(1);
}

/// The in-process simulator's ledger totals.
#[allow(clippy::cast_precision_loss)]
pub fn gateway_ledger(captured_cents: i64, refunded_cents: i64) {
    metrics::gauge!(GATEWAY_CAPTURED).set(captured_cents as f64);
    metrics::gauge!(GATEWAY_REFUNDED).set(refunded_cents as f64);
}

pub fn dead_letter() {
    counter!(DEAD_LETTERS).increment(1);
}

pub fn saga_retry() {
    counter!(SAGA_RETRIES).increment(1);
}

/// For the checkout queue: how many entries wait for a worker.
pub fn set_queue_depth(depth: u64) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
}

/// For the checkout saga: one transition into `status` (`COMPLETED`, `COMPENSATED`, …).
pub fn saga_transition(status: &'static str) {
    counter!(SAGAS, "status" => status).increment(1);
}

/// One `/graphql` HTTP request.
pub fn request(operation: &'static str, status: u16, elapsed: Duration) {
    counter!(REQUESTS, "operation" => operation, "status" => status_label(status)).increment(1);
    histogram!(REQUEST_DURATION, "operation" => operation).record(elapsed.as_secs_f64());
}

/// One error sent to a client.
pub fn error(code: Option<&str>) {
    counter!(ERRORS, "code" => code_label(code)).increment(1);
}

pub fn cache(module: &'static str, outcome: &'static str) {
    counter!(CACHE_OPERATIONS, "module" => module, "outcome" => outcome).increment(1);
}

pub fn cache_invalidation(tag_family: &'static str) {
    counter!(CACHE_INVALIDATIONS, "tag" => tag_family).increment(1);
}

pub fn rate_limited() {
    counter!(RATE_LIMITED).increment(1);
}

/// One fetch of the identity provider's key set (`ok` or `error`).
pub fn jwks_fetch(outcome: &'static str) {
    counter!(JWKS_FETCHES, "outcome" => outcome).increment(1);
}

/// The codes clients see; anything else is counted as `OTHER`, so a label never takes
/// an unbounded set of values.
const CODES: [&str; 12] = [
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "OUT_OF_STOCK",
    "CONFLICT",
    "RATE_LIMITED",
    "QUERY_TOO_COMPLEX",
    "GRAPHQL_VALIDATION_FAILED",
    "UNAVAILABLE",
    "INTERNAL",
    "NONE",
];

fn code_label(code: Option<&str>) -> &'static str {
    let code = code.unwrap_or("NONE");
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("OTHER")
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        405 => "405",
        406 => "406",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(code_label(Some("NOT_FOUND")), "NOT_FOUND");
        assert_eq!(code_label(Some("whatever a client sent")), "OTHER");
        assert_eq!(code_label(None), "NONE");
        assert_eq!(status_label(418), "other");
    }

    #[test]
    fn install_is_idempotent() {
        let first: *const PrometheusHandle = install();
        let second: *const PrometheusHandle = install();
        assert_eq!(first, second);
    }
}
