//! Helpers for checkout tests: waiting for sagas, reading stock and payments, and a
//! minimal GraphQL-over-WebSocket client for both subprotocols.
#![allow(dead_code)]
use crate::helpers::TestApp;
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use shopgraph::db::entities::{orders, payments, products};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const SAGA: &str = "query($id: ID!) { saga(id: $id) { id status error steps { name status attempts } order { id status total } } }";
pub const PLACE: &str =
    "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }";

pub fn is_terminal(status: &Value) -> bool {
    matches!(
        status.as_str(),
        Some("COMPLETED" | "COMPENSATED" | "FAILED")
    )
}

/// Polls a saga (as `token`) until it is terminal; panics after 30 s.
pub async fn wait_terminal(app: &TestApp, token: &str, saga: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = app.data(Some(token), SAGA, json!({"id": saga})).await;
        if is_terminal(&data["saga"]["status"]) {
            return data["saga"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "saga {saga} never finished: {data}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the queue until nothing is queued or running; panics after `secs`.
pub async fn wait_queue_empty(app: &TestApp, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let data = app
            .data(
                Some(&app.admin()),
                "{ queueStats { queued running } }",
                json!({}),
            )
            .await;
        if data["queueStats"]["queued"] == 0 && data["queueStats"]["running"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the queue never drained: {data}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn stock(app: &TestApp, product: &str) -> i32 {
    let id: i64 = product.parse().unwrap_or_default();
    products::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .ok()
        .flatten()
        .map_or(-1, |p| p.stock)
}

pub async fn payments_of(app: &TestApp, saga: i64) -> Vec<payments::Model> {
    payments::Entity::find()
        .filter(payments::Column::SagaId.eq(saga))
        .all(&app.db)
        .await
        .unwrap_or_default()
}

pub async fn all_orders(app: &TestApp) -> Vec<orders::Model> {
    orders::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_default()
}

/// Places an order of `quantity` × `product` paid by card and waits for its saga to end.
pub async fn place_and_finish(app: &TestApp, token: &str, product: &str, quantity: i32) -> Value {
    let accepted = app
        .data(
            Some(token),
            PLACE,
            place_input(product, quantity, "tok_visa"),
        )
        .await;
    wait_terminal(
        app,
        token,
        accepted["placeOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await
}

pub fn place_input(product: &str, quantity: i32, token: &str) -> Value {
    json!({"input": {"items": [{"productId": product, "quantity": quantity}], "paymentMethod": "CARD", "paymentToken": token}})
}

/// Subscribes over `/graphql/ws` with `protocol` and returns every `data` payload until
/// the server completes the subscription (30 s deadline).
pub async fn subscribe(
    app: &TestApp,
    protocol: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Vec<Value> {
    let mut request = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        protocol.parse().unwrap_or_else(|_| unreachable!()),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("ws connect: {e}"));
    let send = |value: Value| Message::Text(value.to_string().into());
    socket
        .send(send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let start = if protocol == "graphql-ws" {
        "start"
    } else {
        "subscribe"
    };
    let next = if protocol == "graphql-ws" {
        "data"
    } else {
        "next"
    };
    let mut payloads = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut started = false;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("subscription did not complete; got {payloads:?}"));
        let Some(Ok(message)) = message else {
            panic!("socket closed; got {payloads:?}")
        };
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        match value["type"].as_str() {
            Some("connection_ack") if !started => {
                started = true;
                socket
                    .send(send(json!({"id": "1", "type": start, "payload": {"query": query, "variables": variables}})))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            Some(t) if t == next => payloads.push(value["payload"].clone()),
            Some("complete") => return payloads,
            Some("error") | Some("connection_error") => panic!("subscription error: {value}"),
            _ => {}
        }
    }
}

/// A customer's token and the id of their checkout, accepted and still `PENDING` (the
/// app runs no worker).
pub async fn pending_saga(app: &TestApp) -> (String, Value) {
    let product = app.create_product("MUG", "Mug", "7.50", 10).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    app.data(
        Some(&token),
        "mutation($p: ID!) { addToCart(productId: $p, quantity: 1) { id } }",
        json!({"p": product}),
    )
    .await;
    let accepted = app
        .data(
            Some(&token),
            "mutation { checkout(input: {paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id status } }",
            json!({}),
        )
        .await;
    assert_eq!(accepted["checkout"]["status"], "PENDING");
    (token, accepted["checkout"]["id"].clone())
}
