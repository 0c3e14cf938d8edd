//! Protection: rate limiting, query limits, persisted queries, CORS and `/metrics`, all
//! observed over HTTP.
use crate::helpers::{TestApp, error_code, spawn_app, spawn_with, test_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const TYPENAME: &str = "{ __typename }";
const PRODUCTS: &str = "{ products(first: 2) { edges { node { id name } } } }";

/// An app that allows ten requests a minute per client, the seed's demo value.
async fn ten_per_minute(trusted_proxies: &[&str]) -> TestApp {
    let mut settings = test_settings().await;
    settings.rate_limit_per_minute = 10;
    settings.rate_limit_burst = 10;
    settings.trusted_proxies = trusted_proxies.iter().map(|p| (*p).to_owned()).collect();
    spawn_with(settings).await
}

async fn post_from(
    app: &TestApp,
    client: &reqwest::Client,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .post(app.url("/graphql"))
        .json(&json!({ "query": TYPENAME }));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /graphql: {e}"))
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
}

/// Sends ten allowed requests and returns the eleventh response.
async fn exhaust(app: &TestApp, client: &reqwest::Client, ip: Option<&str>) -> reqwest::Response {
    for i in 0..10 {
        let ok = post_from(app, client, ip).await;
        assert_eq!(ok.status(), StatusCode::OK, "request {i}");
        assert_eq!(header(&ok, "x-ratelimit-limit"), "10");
        assert_eq!(
            header(&ok, "x-ratelimit-remaining"),
            (9 - i).to_string(),
            "one token a request"
        );
    }
    post_from(app, client, ip).await
}

#[tokio::test]
async fn the_eleventh_request_in_a_minute_gets_429_with_a_graphql_body_and_retry_after() {
    let app = ten_per_minute(&[]).await;
    let before = metric(
        &metrics_text(&app).await,
        "shopgraph_rate_limited_total",
        &[],
    );
    let refused = exhaust(&app, &app.client, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&refused, "retry-after")
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is whole seconds: {e}"));
    assert!((1..=6).contains(&retry), "one token every 6 s: {retry}");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "x-ratelimit-limit"), "10");
    assert!(header(&refused, "content-type").starts_with("application/json"));
    let body: Value = refused.json().await.unwrap_or_default();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    assert!(body["errors"][0]["message"].as_str().is_some());
    let after = metric(
        &metrics_text(&app).await,
        "shopgraph_rate_limited_total",
        &[],
    );
    assert!(after > before, "{before} -> {after}");
    // The WebSocket route shares the budget: the upgrade request is refused too.
    let ws = app
        .client
        .get(app.url("/graphql/ws"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ws.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn another_client_address_is_unaffected() {
    let app = ten_per_minute(&[]).await;
    let refused = exhaust(&app, &app.client, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap_or_else(|e| panic!("{e}"))))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(post_from(&app, &other, None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = ten_per_minute(&["127.0.0.1"]).await;
    // Whatever a client forged on the left, the proxy appended the real address last.
    let alice = Some("6.6.6.6, 203.0.113.1");
    let refused = exhaust(&app, &app.client, alice).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let bob = post_from(&app, &app.client, Some("6.6.6.6, 203.0.113.2")).await;
    assert_eq!(bob.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_escape_the_limit_by_forging_forwarded_for() {
    let app = ten_per_minute(&[]).await;
    for i in 0..10 {
        let forged = format!("198.51.100.{i}");
        assert_eq!(
            post_from(&app, &app.client, Some(&forged)).await.status(),
            StatusCode::OK
        );
    }
    let refused = post_from(&app, &app.client, Some("198.51.100.200")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn health_metrics_and_playground_are_never_limited() {
    let app = ten_per_minute(&[]).await;
    let refused = exhaust(&app, &app.client, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/playground",
    ] {
        for _ in 0..15 {
            let response = app
                .client
                .get(app.url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
}

#[tokio::test]
async fn the_limiter_can_be_switched_off() {
    let mut settings = test_settings().await;
    settings.rate_limit_enabled = false;
    settings.rate_limit_per_minute = 1;
    settings.rate_limit_burst = 1;
    let app = spawn_with(settings).await;
    for _ in 0..5 {
        let response = post_from(&app, &app.client, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
}

/// Sends `body` with `X-Debug: 1`; returns the status and the JSON body.
async fn send(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .header("x-debug", "1")
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

/// Asserts a single request was refused as too complex and ran no SQL.
async fn assert_too_complex(app: &TestApp, query: &str) -> String {
    let (status, body) = send(app, &json!({ "query": query })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert_eq!(body["extensions"]["debug"]["dbStatements"], 0, "{body}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Cache lookups so far: a cacheable resolver (`products`) that ran would have moved it.
async fn lookups(app: &TestApp) -> u64 {
    let data = app
        .data(
            Some(&app.admin()),
            "{ cacheStats { hits misses } }",
            json!({}),
        )
        .await;
    let stats = &data["cacheStats"];
    stats["hits"].as_u64().unwrap_or_default() + stats["misses"].as_u64().unwrap_or_default()
}

async fn seeded() -> TestApp {
    let app = spawn_app().await;
    app.create_product("MUG", "Mug", "7.50", 10).await;
    app
}

#[tokio::test]
async fn a_depth_bomb_is_refused_before_any_resolver_runs() {
    let app = seeded().await;
    let level = "products(first: 1) { edges { node { category { ";
    let bomb = format!("{{ {}id{} }}", level.repeat(5), " } } } }".repeat(5));
    assert!(
        assert_too_complex(&app, &bomb)
            .await
            .contains("levels deep")
    );
    // Far deeper than the parser accepts: still refused with the code, not a crash.
    let abyss = format!("{{ {}id{} }}", "a { ".repeat(5_000), " }".repeat(5_000));
    assert_too_complex(&app, &abyss).await;
    assert_eq!(lookups(&app).await, 0);
}

#[tokio::test]
async fn an_alias_flood_is_refused() {
    let app = seeded().await;
    let aliases: String = (0..200).map(|i| format!("a{i}: name ")).collect();
    let flood = format!("{{ products(first: 1) {{ edges {{ node {{ {aliases} }} }} }} }}");
    assert!(
        assert_too_complex(&app, &flood)
            .await
            .contains("200 aliases")
    );
    let roots: String = (0..21)
        .map(|i| format!("c{i}: categories {{ id }} "))
        .collect();
    assert!(
        assert_too_complex(&app, &format!("{{ {roots} }}"))
            .await
            .contains("21 root fields")
    );
    assert_eq!(lookups(&app).await, 0);
}

#[tokio::test]
async fn query_limits_can_be_switched_off_for_a_gateway_that_enforces_its_own() {
    let mut settings = test_settings().await;
    settings.query_limits_enabled = false;
    let app = spawn_with(settings).await;
    app.create_product("MUG", "Mug", "7.50", 10).await;
    let aliases: String = (0..40).map(|i| format!("a{i}: name ")).collect();
    let wide = format!("{{ products(first: 1) {{ edges {{ node {{ {aliases} }} }} }} }}");
    let (status, body) = send(&app, &json!({ "query": wide })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["products"]["edges"][0]["node"]["a39"], "Mug",
        "{body}"
    );
    // The batch limit is the HTTP layer's and stays.
    let batch: Vec<Value> = (0..100).map(|_| json!({ "query": TYPENAME })).collect();
    let (status, body) = send(&app, &Value::Array(batch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
}

#[tokio::test]
async fn a_batch_of_a_hundred_operations_is_refused() {
    let app = seeded().await;
    let batch: Vec<Value> = (0..100).map(|_| json!({ "query": PRODUCTS })).collect();
    let (status, body) = send(&app, &Value::Array(batch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert_eq!(lookups(&app).await, 0, "no products resolver ran");
    // Within QUERY_MAX_BATCH a batch runs.
    let batch: Vec<Value> = (0..3).map(|_| json!({ "query": TYPENAME })).collect();
    let (status, body) = send(&app, &Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_huge_first_is_refused_by_complexity_before_the_resolver() {
    let app = seeded().await;
    let message = assert_too_complex(
        &app,
        "{ products(first: 1000000) { edges { node { id name } } } }",
    )
    .await;
    assert!(message.contains("complex"), "{message}");
    // Through a variable, too.
    let (status, body) = send(
        &app,
        &json!({
            "query": "query($n: Int) { products(first: $n) { edges { node { id } } } }",
            "variables": { "n": 1_000_000 },
        }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert_eq!(body["extensions"]["debug"]["dbStatements"], 0);
    assert_eq!(lookups(&app).await, 0);
}

#[tokio::test]
async fn circular_fragments_and_fragment_bombs_are_refused() {
    let app = seeded().await;
    let cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { products(first: 1) { edges { node { id } } } ...A }";
    assert!(
        assert_too_complex(&app, cycle)
            .await
            .contains("spreads itself")
    );
    let unused = "{ __typename } fragment A on Query { ...B } fragment B on Query { ...A }";
    assert_too_complex(&app, unused).await;
    // 2^25 fields once expanded: refused at once, not walked.
    let mut bomb = String::from("{ ...F25 } fragment F0 on Query { __typename }");
    for i in 1..=25 {
        bomb.push_str(&format!(
            " fragment F{i} on Query {{ ...F{} ...F{} }}",
            i - 1,
            i - 1
        ));
    }
    assert_too_complex(&app, &bomb).await;
    assert_eq!(lookups(&app).await, 0);
}

#[tokio::test]
async fn a_one_megabyte_body_gets_413_with_a_graphql_body() {
    let app = seeded().await;
    let padding = "x".repeat(1024 * 1024);
    let (status, body) = send(
        &app,
        &json!({ "query": PRODUCTS, "variables": { "padding": padding } }),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(lookups(&app).await, 0);
}

#[tokio::test]
async fn ordinary_queries_pass_the_limits_and_introspection_can_be_switched_off() {
    let app = seeded().await;
    let (status, body) = send(
        &app,
        &json!({ "query": "{ products(first: 100) { totalCount edges { node { id name price category { name } } } } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut settings = test_settings().await;
    settings.introspection = false;
    let closed = spawn_with(settings).await;
    let data = closed
        .data(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(data["__schema"], Value::Null);
}

fn persisted(hash: &str) -> String {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string()
}

fn sha256(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

async fn get_persisted(app: &TestApp, hash: &str) -> reqwest::Response {
    app.client
        .get(app.url("/graphql"))
        .query(&[("extensions", persisted(hash))])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn persisted_queries_register_once_and_then_run_by_hash_with_get() {
    let app = seeded().await;
    let hash = sha256(PRODUCTS);
    let miss = get_persisted(&app, &hash).await;
    let miss: Value = miss.json().await.unwrap_or_default();
    assert_eq!(
        miss["errors"][0]["message"], "PersistedQueryNotFound",
        "{miss}"
    );

    let registered = app
        .post(
            None,
            &[],
            &json!({ "query": PRODUCTS, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } }),
        )
        .await;
    let registered: Value = registered.json().await.unwrap_or_default();
    assert_eq!(
        registered["data"]["products"]["edges"][0]["node"]["name"],
        "Mug"
    );

    let by_hash = get_persisted(&app, &hash).await;
    assert_eq!(by_hash.status(), StatusCode::OK);
    assert_eq!(header(&by_hash, "cache-control"), "public, max-age=60");
    let by_hash: Value = by_hash.json().await.unwrap_or_default();
    assert_eq!(by_hash["data"], registered["data"]);

    // A hash that does not match its query is refused, and registers nothing.
    let wrong = app
        .post(
            None,
            &[],
            &json!({ "query": TYPENAME, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha256("{ other }") } } }),
        )
        .await;
    let wrong: Value = wrong.json().await.unwrap_or_default();
    assert!(wrong["errors"][0]["message"].is_string(), "{wrong}");
}

#[tokio::test]
async fn a_persisted_mutation_is_refused_by_get() {
    let app = seeded().await;
    let mutation =
        "mutation { createCustomer(input: {name: \"Ana\", email: \"ana@example.com\"}) { id } }";
    let hash = sha256(mutation);
    let body = json!({ "query": mutation, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    let registered: Value = app
        .post(None, &[], &body)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert!(
        registered["data"]["createCustomer"]["id"].is_string(),
        "{registered}"
    );
    let by_get = get_persisted(&app, &hash).await;
    assert_eq!(by_get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&by_get, "allow"), "POST");
}

#[tokio::test]
async fn with_redis_every_instance_knows_a_registered_hash() {
    if std::env::var("TEST_REDIS_URL").is_err() {
        return; // the in-process store is per instance by design
    }
    let first = seeded().await;
    let mut settings = test_settings().await;
    settings.cache_key_prefix = first.settings.cache_key_prefix.clone();
    let second = spawn_with(settings).await;
    let hash = sha256(TYPENAME);
    let body = json!({ "query": TYPENAME, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    first.post(None, &[], &body).await;
    let by_hash: Value = get_persisted(&second, &hash)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(by_hash["data"]["__typename"], "Query", "{by_hash}");
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let mut settings = test_settings().await;
    settings.cors_allowed_origins = vec!["https://shop.example".into()];
    let app = spawn_with(settings).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let allowed = preflight("https://shop.example")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        "https://shop.example"
    );
    let other = preflight("https://evil.example")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // The default configuration sends no CORS headers at all.
    let plain = spawn_app().await;
    let response = plain
        .client
        .post(plain.url("/graphql"))
        .header("origin", "https://shop.example")
        .json(&json!({ "query": TYPENAME }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

pub async fn metrics_text(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("text/plain"));
    response.text().await.unwrap_or_default()
}

/// One sample line: `name{label="value",…} number`.
fn parse_sample(line: &str) -> Option<(String, HashMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        return None;
    }
    let mut map = HashMap::new();
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (key, quoted) = pair.split_once('=')?;
        let value = quoted.strip_prefix('"')?.strip_suffix('"')?;
        map.insert(key.to_owned(), value.to_owned());
    }
    Some((name.to_owned(), map, value))
}

/// The sum of the samples of `name` that carry all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .filter(|(n, map, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| map.get(*k).is_some_and(|x| x == v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_traffic() {
    let app = seeded().await;
    let before = metrics_text(&app).await;
    for _ in 0..3 {
        app.data(None, PRODUCTS, json!({})).await;
    }
    assert_too_complex(&app, "{ ...A } fragment A on Query { ...A }").await;
    let after = metrics_text(&app).await;
    for line in after.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with('#') || parse_sample(line).is_some(),
            "not Prometheus text: {line}"
        );
    }
    let moved = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    let query = [("operation", "query"), ("status", "200")];
    assert!(moved("shopgraph_graphql_requests_total", &query) >= 3.0);
    assert!(
        moved(
            "shopgraph_graphql_request_duration_seconds_count",
            &[("operation", "query")]
        ) >= 3.0
    );
    let products = |outcome| [("module", "products"), ("outcome", outcome)];
    assert!(moved("shopgraph_cache_operations_total", &products("miss")) >= 1.0);
    // Later requests are hits of the field cache or, once the document is known, of
    // the whole-response cache.
    let response_hits = moved(
        "shopgraph_cache_operations_total",
        &[("module", "response"), ("outcome", "hit")],
    );
    assert!(moved("shopgraph_cache_operations_total", &products("hit")) + response_hits >= 2.0);
    assert!(
        moved(
            "shopgraph_graphql_errors_total",
            &[("code", "QUERY_TOO_COMPLEX")]
        ) >= 1.0
    );
    assert!(after.contains("# TYPE shopgraph_graphql_request_duration_seconds histogram"));
}
