//! `/graphql/ws`: GraphQL over WebSocket (both subprotocols), held to the HTTP rules.
use super::AppState;
use super::graphql::actor_from;
use crate::graphql::{RequestContext, loaders::Loaders};
use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;

/// Subscriptions (and queries) over WebSocket; the JWT comes in `connection_init`'s
/// payload under an `Authorization` key of any case.
pub async fn ws_handler(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A message may be no larger than an HTTP body: the same document limits apply.
    let limit = state.http.max_body_bytes;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_socket(state, socket, protocol))
}

/// A socket that sends nothing (no `connection_init`) within `WS_INIT_TIMEOUT_MS` is
/// closed with 4408, so idle sockets cannot pile up.
async fn serve_socket(state: AppState, socket: WebSocket, protocol: GraphQLProtocol) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let first = match tokio::time::timeout(state.http.ws_init_timeout, stream.next()).await {
        Ok(Some(Ok(first))) => first,
        Ok(_) => return,
        Err(_) => {
            let close = CloseFrame {
                code: 4408,
                reason: "Connection initialisation timeout".into(),
            };
            let _ = sink.send(WsMessage::Close(Some(close))).await;
            return;
        }
    };
    let stream = futures_util::stream::once(async move { Ok(first) }).chain(stream);
    let schema = state.schema.clone();
    GraphQLWebSocket::new_with_pair(sink, stream, schema, protocol)
        .on_connection_init(move |params| async move { connection_data(&state, &params) })
        .serve()
        .await;
}

fn connection_data(state: &AppState, params: &serde_json::Value) -> async_graphql::Result<Data> {
    let find = |name: &str| {
        params.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
        })
    };
    let actor =
        actor_from(state, find("authorization"), find("x-tenant")).map_err(|e| e.to_graphql())?;
    let mut data = Data::default();
    data.insert(RequestContext {
        loaders: Loaders::new(&state.db, actor.tenant.as_str(), None),
        actor,
    });
    Ok(data)
}
