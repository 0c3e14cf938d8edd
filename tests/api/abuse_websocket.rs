//! Issue #13, bullet 3: a WebSocket is held to the HTTP rules (message size, the rate
//! limit, the token's lifetime), closes idle and dead connections, and caps its
//! subscriptions.
use crate::helpers::{SECRET, error_code, spawn_app, spawn_with, test_settings};
use crate::saga_helpers::pending_saga;
use crate::ws::{Heard, Socket};
use serde_json::{Value, json};
use shopgraph::auth::{JwtKeys, Role};
use std::time::Duration;

#[tokio::test]
async fn a_websocket_message_larger_than_an_http_body_closes_the_socket() {
    let app = spawn_app().await;
    let mut socket = Socket::ready(&app, None).await;
    let huge = format!(
        "{{ __typename {} }}",
        " ".repeat(app.settings.max_body_bytes)
    );
    socket.subscribe("1", &huge, json!({})).await;
    loop {
        match socket.next().await {
            Heard::Close(_) | Heard::Gone => break,
            Heard::Message(message) => {
                assert_ne!(message["type"], "next", "the huge operation ran: {message}");
            }
            Heard::Ping => {}
        }
    }
}

#[tokio::test]
async fn a_websocket_that_never_initialises_is_closed_with_4408() {
    let mut settings = test_settings().await;
    settings.ws_init_timeout_ms = 300;
    let app = spawn_with(settings).await;
    let mut socket = Socket::open(&app).await;
    assert_eq!(socket.close_code().await, Some(4408));
}

#[tokio::test]
async fn operations_on_a_websocket_draw_from_the_http_rate_limit() {
    let mut settings = test_settings().await;
    settings.rate_limit_burst = 5;
    settings.rate_limit_per_minute = 1;
    let app = spawn_with(settings).await;
    // The upgrade request takes the first token; four operations take the rest.
    let mut socket = Socket::ready(&app, None).await;
    let mut codes = Vec::new();
    for id in 1..=6 {
        socket
            .subscribe(&id.to_string(), "{ __typename }", json!({}))
            .await;
        let next = socket.next_message().await;
        assert_eq!(next["type"], "next", "{next}");
        let code = next["payload"]["errors"][0]["extensions"]["code"].as_str();
        codes.push(code.unwrap_or_default().to_owned());
        let complete = socket.next_message().await;
        assert_eq!(complete["type"], "complete", "{complete}");
    }
    assert_eq!(codes, ["", "", "", "", "RATE_LIMITED", "RATE_LIMITED"]);
    // The socket emptied the bucket HTTP draws from.
    let http = app
        .post(None, &[], &json!({"query": "{ __typename }"}))
        .await;
    assert_eq!(http.status(), 429);
}

#[tokio::test]
async fn a_websocket_runs_at_most_ws_max_subscriptions_at_once() {
    let mut settings = test_settings().await;
    settings.ws_max_subscriptions = 2;
    // No worker: the saga stays PENDING and its subscriptions stay open.
    settings.worker_concurrency = 0;
    let app = spawn_with(settings).await;
    let (token, saga) = pending_saga(&app).await;
    let mut socket = Socket::ready(&app, Some(&token)).await;
    let updates = "subscription($id: ID!) { sagaUpdates(id: $id) { status } }";
    for id in ["a", "b"] {
        socket.subscribe(id, updates, json!({"id": saga})).await;
        let first = socket.next_message().await;
        assert_eq!(first["id"], id);
        assert_eq!(
            first["payload"]["data"]["sagaUpdates"]["status"], "PENDING",
            "{first}"
        );
    }
    socket.subscribe("c", updates, json!({"id": saga})).await;
    let refused = socket.next_message().await;
    assert_eq!(refused["id"], "c");
    assert_eq!(error_code(&refused["payload"]), "RATE_LIMITED", "{refused}");
    // Stopping one gives its place back.
    socket.send(json!({"id": "a", "type": "complete"})).await;
    socket.subscribe("d", updates, json!({"id": saga})).await;
    let admitted = next_for(&mut socket, "d").await;
    assert_eq!(
        admitted["payload"]["data"]["sagaUpdates"]["status"], "PENDING",
        "the stopped subscription kept its place: {admitted}"
    );
}

#[tokio::test]
async fn a_websocket_is_closed_with_4403_when_its_token_expires() {
    let app = spawn_app().await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let keys = JwtKeys::new(SECRET.as_bytes());
    let token = keys
        .issue(
            &crate::helpers::tenant("default"),
            &customer.to_string(),
            Role::Customer,
            // Long enough for the first answer on a loaded machine; the close follows.
            chrono::Duration::seconds(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut socket = Socket::ready(&app, Some(&token)).await;
    socket
        .subscribe(
            "1",
            "query($id: ID!) { customer(id: $id) { name } }",
            json!({"id": customer.to_string()}),
        )
        .await;
    let me = socket.next_message().await;
    assert_eq!(me["payload"]["data"]["customer"]["name"], "Ana", "{me}");
    assert_eq!(socket.close_code().await, Some(4403));
}

#[tokio::test]
async fn a_websocket_is_pinged_and_closed_when_its_peer_stops_answering() {
    let mut settings = test_settings().await;
    // Long enough that a loaded CI machine still reads each ping in time (the peer
    // answers only when the test reads), short enough for a quick test.
    settings.ws_keepalive_ms = 300;
    let app = spawn_with(settings).await;
    let mut socket = Socket::ready(&app, None).await;
    // A peer that answers (tungstenite answers each ping as it reads it) stays.
    let mut pings = 0;
    while pings < 4 {
        match socket.next().await {
            Heard::Ping => pings += 1,
            other => panic!("an answering peer was not kept: {other:?}"),
        }
    }
    // A peer that reads nothing answers nothing: the server gives up on it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(socket.close_code().await, Some(1001));
}

/// A customer's token and the id of a checkout saga nobody works on.
/// The next `next` message for operation `id`, skipping others'.
async fn next_for(socket: &mut Socket, id: &str) -> Value {
    loop {
        let message = socket.next_message().await;
        if message["id"] == id && message["type"] == "next" {
            return message;
        }
    }
}
