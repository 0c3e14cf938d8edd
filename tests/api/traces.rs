//! OpenTelemetry traces of one checkout, exported over OTLP/HTTP (JSON) to a collector
//! the test serves on loopback: the request continues the caller's `traceparent`, the
//! resolvers are its children, and the saga's steps, run later by a worker, join the
//! same trace under the request.
use crate::books::serve_provider;
use crate::helpers::{SECRET, tenant};
use crate::recovery::{database_with_customers, start_server_with, unfinished};
use crate::redis_process::free_port;
use crate::saga_helpers::place_input;
use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use shopgraph::auth::{JwtKeys, Role};
use shopgraph::checkout::gateway::SimulatorConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A span the collector received: name, parent span id, trace id, string attributes.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    parent: String,
    trace: String,
    attributes: HashMap<String, String>,
}

/// Every span the collector received, by span id.
type Spans = Arc<Mutex<HashMap<String, Received>>>;

async fn serve_collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let export: Value = serde_json::from_slice(&body).unwrap_or_default();
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let text =
                                |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                            let attributes = span["attributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|a| {
                                    Some((
                                        a["key"].as_str()?.to_owned(),
                                        a["value"]["stringValue"].as_str()?.to_owned(),
                                    ))
                                })
                                .collect();
                            kept.insert(
                                text("spanId"),
                                Received {
                                    name: text("name"),
                                    parent: text("parentSpanId"),
                                    trace: text("traceId"),
                                    attributes,
                                },
                            );
                        }
                    }
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the collector: {e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// The tree under `root`, one span per line, indented by depth, children by name.
fn tree(spans: &HashMap<String, Received>, root: &str, depth: usize) -> String {
    let mut children: Vec<(&String, &String)> = spans
        .iter()
        .filter(|(_, span)| span.parent == root)
        .map(|(id, span)| (&span.name, id))
        .collect();
    children.sort();
    children
        .into_iter()
        .map(|(name, id)| {
            format!(
                "{}{name}\n{}",
                "  ".repeat(depth),
                tree(spans, id, depth + 1)
            )
        })
        .collect()
}

#[tokio::test]
async fn a_checkout_is_one_trace_from_the_request_to_its_saga_steps() {
    let (database_url, db) = database_with_customers(1).await;
    let (collector, spans) = serve_collector().await;
    let provider = serve_provider(SimulatorConfig {
        latency: Duration::from_millis(10),
        ambiguous_rate: 0.0,
    })
    .await;
    let port = free_port();
    let prefix = format!("traces{}", rand::random::<u32>());
    let mut server = start_server_with(
        &database_url,
        port,
        &prefix,
        &provider.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("SAGA_FAIL_RATE_CREATE_ORDER", "0"),
        ],
    )
    .await;
    let jwt = JwtKeys::new(SECRET.as_bytes());
    let token = |role: Role, sub: &str| {
        jwt.issue(&tenant("default"), sub, role, chrono::Duration::hours(1))
            .unwrap_or_default()
    };
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/graphql", server.url))
        .bearer_auth(token(Role::Staff, "staff"))
        .json(&json!({"query": "mutation { createProduct(input: {sku: \"T\", name: \"T\", price: \"3.00\", stock: 10}) { id } }"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let product = created["data"]["createProduct"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let trace_id = format!("{:032x}", rand::random::<u128>());
    let caller_span = format!("{:016x}", rand::random::<u64>());
    let placed: Value = client
        .post(format!("{}/graphql", server.url))
        .bearer_auth(token(Role::Customer, "1"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({
            "query": "mutation PlaceOrder($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }",
            "operationName": "PlaceOrder",
            "variables": place_input(&product, 2, "tok_visa"),
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert!(placed.get("errors").is_none(), "{placed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while unfinished(&db).await > 0 {
        assert!(Instant::now() < deadline, "the saga did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A graceful stop flushes the spans still buffered.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -TERM: {e}"));
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .child
        .try_wait()
        .unwrap_or_else(|e| panic!("{e}"))
        .is_none()
    {
        assert!(Instant::now() < deadline, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let spans: HashMap<String, Received> = spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, span)| span.trace == trace_id)
        .map(|(id, span)| (id.clone(), span.clone()))
        .collect();
    let shown = tree(&spans, &caller_span, 0);
    println!("the trace of one checkout, under the caller's span:\n{shown}");
    let roots: Vec<&Received> = spans.values().filter(|s| s.parent == caller_span).collect();
    assert_eq!(roots.len(), 1, "{shown}");
    let request = roots[0];
    assert_eq!(request.name, "POST /graphql", "{request:?}");
    let attribute = |key: &str| request.attributes.get(key).map(String::as_str);
    assert_eq!(
        attribute("graphql.operation.type"),
        Some("mutation"),
        "{request:?}"
    );
    assert_eq!(
        attribute("graphql.operation.name"),
        Some("PlaceOrder"),
        "{request:?}"
    );
    // Every span of the trace hangs from the request: the tree shows them all.
    assert_eq!(
        shown.lines().count(),
        spans.len(),
        "spans outside the tree:\n{shown}"
    );
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    for span in spans.values() {
        *named.entry(span.name.as_str()).or_default() += 1;
    }
    for expected in [
        "parse",
        "validation",
        "execute",
        "field",
        "place_order",
        "SELECT",
        "saga run RESERVE_STOCK",
        "saga run CHARGE_PAYMENT",
        "saga run CREATE_ORDER",
        "saga finish COMPLETED",
    ] {
        assert!(
            named.contains_key(expected),
            "no '{expected}' span:\n{shown}"
        );
    }
}
