//! A graceful stop (SIGTERM) of a server process in the middle of a request, a
//! subscription and a stream of checkouts: readiness turns 503 at once, the request in
//! flight is answered, the WebSocket is closed with 1012, the workers put back what
//! they hold (no lease left to expire), waiting cache invalidations are sent, and the
//! process exits 0.
use crate::books::{check_books, serve_provider};
use crate::helpers::{SECRET, tenant};
use crate::recovery::{database_with_customers, gql, start_server_with, unfinished};
use crate::redis_process::free_port;
use crate::saga_helpers::{PLACE, place_input};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use shopgraph::auth::{JwtKeys, Role};
use shopgraph::checkout::gateway::SimulatorConfig;
use shopgraph::db::entities::{cache_outbox, products, sagas};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn poll_until<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A subscription to a saga's progress, open on `url`.
async fn open_subscription(
    url: &str,
    token: &str,
    saga: &Value,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("{}/graphql/ws", url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("ws connect: {e}"));
    let messages = [
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
        json!({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { sagaUpdates(id: $id) { status } }",
            "variables": {"id": saga}}}),
    ];
    for message in messages {
        socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    match socket.next().await {
        Some(Ok(Message::Text(ack))) => assert!(ack.contains("connection_ack"), "{ack}"),
        other => panic!("no connection_ack: {other:?}"),
    }
    socket
}

async fn price_cents(db: &DatabaseConnection, id: i64) -> i64 {
    products::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map_or(0, |p| p.price_cents)
}

/// Unfinished sagas under a lease that has not expired.
async fn leased(db: &DatabaseConnection) -> usize {
    let now = chrono::Utc::now().timestamp_millis();
    sagas::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|s| s.lease_until.is_some_and(|until| until > now))
        .filter(|s| !matches!(s.status.as_str(), "COMPLETED" | "COMPENSATED" | "FAILED"))
        .count()
}

#[tokio::test]
async fn a_sigterm_answers_what_is_in_flight_closes_sockets_and_puts_checkouts_back() {
    let (database_url, db) = database_with_customers(10).await;
    let port = free_port();
    let prefix = format!("drain{}", rand::random::<u32>());
    let provider = serve_provider(SimulatorConfig {
        latency: Duration::from_millis(100),
        ambiguous_rate: 0.0,
    })
    .await;
    // Every invalidation waits 3 s after its commit, which holds a mutation in flight
    // past the moment the server stops listening (2 s after the SIGTERM). Leases of
    // 30 s: one left behind would still be held when the test looks.
    let settings = [
        ("SAGA_LEASE_SECS", "30"),
        ("SAGA_FAIL_RATE_CREATE_ORDER", "0"),
    ];
    let stopping = [
        settings.as_slice(),
        &[
            ("FAULT_INVALIDATION_DELAY_MS", "3000"),
            ("SHUTDOWN_DELAY_SECS", "2"),
            ("SHUTDOWN_GRACE_SECS", "20"),
        ],
    ]
    .concat();
    let mut server =
        start_server_with(&database_url, port, &prefix, &provider.url, &stopping).await;
    let jwt = JwtKeys::new(SECRET.as_bytes());
    let token = |role: Role, sub: &str| {
        jwt.issue(&tenant("default"), sub, role, chrono::Duration::hours(1))
            .unwrap_or_default()
    };
    let staff = token(Role::Staff, "staff");
    let created = gql(&server.url, &staff, "mutation { createProduct(input: {sku: \"D\", name: \"D\", price: \"3.00\", stock: 1000}) { id } }", json!({})).await;
    let product = created["data"]["createProduct"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let product_id: i64 = product
        .parse()
        .unwrap_or_else(|e| panic!("product id {product}: {e}"));
    let placed = futures_util::future::join_all((0..40).map(|n: usize| {
        let (url, product, token) = (
            server.url.clone(),
            product.clone(),
            token(Role::Customer, &(n % 10 + 1).to_string()),
        );
        async move { gql(&url, &token, PLACE, place_input(&product, 1, "tok_visa")).await }
    }))
    .await;
    for body in &placed {
        assert!(body.get("errors").is_none(), "{body}");
    }
    let mut socket = open_subscription(
        &server.url,
        &token(Role::Customer, "1"),
        &placed[0]["data"]["placeOrder"]["id"],
    )
    .await;

    // A mutation in flight: committed, its invalidation waiting.
    let update = tokio::spawn({
        let (url, staff) = (server.url.clone(), staff.clone());
        let query = format!(
            "mutation {{ updateProduct(id: \"{product}\", input: {{price: \"4.00\"}}) {{ price }} }}"
        );
        async move { gql(&url, &staff, &query, json!({})).await }
    });
    poll_until("the price change to commit", || async {
        price_cents(&db, product_id).await == 400
    })
    .await;
    poll_until("workers to hold sagas", || async { leased(&db).await > 0 }).await;
    assert!(
        unfinished(&db).await > 0,
        "every checkout finished before the stop; the test would prove nothing"
    );
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -TERM: {e}"));
    assert!(status.success());

    let client = reqwest::Client::new();
    poll_until("readiness to turn 503", || async {
        client
            .get(format!("{}/health/ready", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    // Still serving during the delay, on connections it closes after each answer.
    let during = client
        .post(format!("{}/graphql", server.url))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("a request during the drain: {e}"));
    assert_eq!(during.status(), 200);
    assert_eq!(
        during
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "the checks above ran after the delay; they proved nothing"
    );

    let answered = update.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answered["data"]["updateProduct"]["price"], "4.00",
        "the request in flight was not answered: {answered}"
    );
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no close frame within 10 s"));
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Restart));

    let deadline = Instant::now() + Duration::from_secs(25);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "the server exited with {exit}");

    let held = leased(&db).await;
    assert_eq!(held, 0, "sagas left under a lease");
    let waiting = cache_outbox::Entity::find()
        .count(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(waiting, 0, "cache invalidations left waiting in the outbox");
    let interrupted = unfinished(&db).await;

    // Another instance goes on with what was put back, at once (no lease to expire).
    let _next = start_server_with(&database_url, port, &prefix, &provider.url, &settings).await;
    poll_until("every saga to finish after the restart", || async {
        unfinished(&db).await == 0
    })
    .await;
    let books = check_books(
        &db,
        provider.sim.ledger(),
        &HashMap::from([(product_id, 1000)]),
    )
    .await;
    println!(
        "graceful stop: {interrupted} of 40 sagas unfinished at the stop; then {:?}",
        books.sagas_by_status
    );
    assert_eq!(
        books.sagas_by_status.get("COMPLETED"),
        Some(&40),
        "{books:?}"
    );
}
