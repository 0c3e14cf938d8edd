//! `/graphql/ws`: GraphQL over WebSocket (both subprotocols), held to the HTTP rules. A
//! message is no larger than an HTTP body; each operation draws from the rate-limit
//! bucket of the request that opened the socket, and at most `WS_MAX_SUBSCRIPTIONS` run
//! at once (`graphql::SocketBudget`). The socket is closed
//! - with 4408 when it sends nothing within `WS_INIT_TIMEOUT_MS`,
//! - with 4403 when the token it was opened with expires,
//! - with 1001 when its peer answers none of the pings sent every `WS_KEEPALIVE_MS`
//!   for two intervals, so dead connections do not hold subscriptions,
//! - with 1012 (service restart) when the server is stopping, so the client reconnects
//!   (to another instance behind the balancer) and subscribes again.
//!
//! async-graphql speaks the protocol; it writes into a channel, and one writer task
//! owns the socket's sending half, so pings and closes interleave with its messages.
use super::AppState;
use super::graphql::actor_from;
use super::rate_limit::{ClientAddr, Limiter};
use crate::graphql::socket_budget::Admit;
use crate::graphql::{RequestContext, SocketBudget, loaders::Loaders};
use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub const PATH: &str = "/graphql/ws";

/// The reason sent with 1012 when the server stops.
const RESTART: &str = "Service restart: reconnect";

/// The rate-limit bucket of the request that opened a socket; `reject::guard` puts it
/// on upgrade requests when rate limiting is on.
#[derive(Clone)]
pub struct SocketClient {
    pub limiter: Arc<Limiter>,
    pub client: IpAddr,
}

/// Subscriptions (and queries) over WebSocket; the JWT comes in `connection_init`'s
/// payload under an `Authorization` key of any case.
pub async fn ws_handler(
    State(state): State<AppState>,
    client: Option<Extension<SocketClient>>,
    address: Option<Extension<ClientAddr>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A message may be no larger than an HTTP body: the same document limits apply.
    let limit = state.http.max_body_bytes;
    let client = client.map(|Extension(client)| client);
    let address = address.map(|Extension(ClientAddr(ip))| ip);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_socket(state, socket, protocol, (client, address)))
}

async fn serve_socket(
    state: AppState,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    client: (Option<SocketClient>, Option<IpAddr>),
) {
    let _open = state.drain.socket_opened();
    let (mut sink, mut stream) = socket.split();
    let first = tokio::select! {
        first = tokio::time::timeout(state.http.ws_init_timeout, stream.next()) => first,
        () = state.drain.begun() => {
            close(&mut sink, 1012, RESTART).await;
            return;
        }
    };
    let first = match first {
        Ok(Some(Ok(first))) => first,
        Ok(_) => return,
        Err(_) => {
            close(&mut sink, 4408, "Connection initialisation timeout").await;
            return;
        }
    };
    let heard = Arc::new(Heard::new());
    let inbound = {
        let heard = heard.clone();
        futures_util::stream::once(async move { Ok(first) })
            .chain(stream)
            .inspect(move |_| heard.now())
    };
    let (outbound, queued) = futures_channel::mpsc::channel(16);
    let (expiry, expires) = oneshot::channel();
    let keepalive = state.http.ws_keepalive;
    let drain = state.drain.clone();
    let schema = state.schema.clone();
    let graphql = GraphQLWebSocket::new_with_pair(outbound, inbound, schema, protocol)
        .on_connection_init(move |params| async move {
            let (data, expires_at) = connection_data(&state, &params, client)?;
            let _ = expiry.send(expires_at);
            Ok(data)
        })
        .serve();
    // When async-graphql is done (the client closed) it drops its sender and the
    // writer ends after sending what is queued; when the writer ends first (expiry,
    // dead peer), dropping the protocol future ends the socket's subscriptions.
    let protocol_done = async {
        crate::graphql::passes::counting_passes(graphql).await;
        std::future::pending::<()>().await;
    };
    let writer = write(sink, queued, expires, heard, keepalive, drain);
    tokio::select! {
        () = writer => {}
        () = protocol_done => {}
    }
}

/// When the peer last sent anything (a pong included), in milliseconds since `opened`.
struct Heard {
    opened: Instant,
    at_ms: AtomicU64,
}

impl Heard {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let at = Duration::from_millis(self.at_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(at)
    }
}

async fn write(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut queued: futures_channel::mpsc::Receiver<WsMessage>,
    expires: oneshot::Receiver<Option<i64>>,
    heard: Arc<Heard>,
    keepalive: Duration,
    drain: super::Drain,
) {
    let expiry = async {
        match expires.await {
            Ok(Some(at)) => tokio::time::sleep(until(at)).await,
            // Anonymous, or never initialised: nothing expires.
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let stopping = drain.begun();
    tokio::pin!(stopping);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = queued.next() => {
                let Some(message) = message else { return };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            () = &mut expiry => {
                close(&mut sink, 4403, "Forbidden: the token expired").await;
                return linger(queued).await;
            }
            () = &mut stopping => {
                close(&mut sink, 1012, RESTART).await;
                return linger(queued).await;
            }
            _ = ping.tick() => {
                if heard.silent_for() > keepalive * 2 {
                    close(&mut sink, 1001, "keep-alive timeout").await;
                    return linger(queued).await;
                }
                if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// After closing, waits (bounded) for the peer's close frame, which ends the protocol
/// and so the queue: tearing the socket down with the peer's reply unread would reset
/// the connection, and the peer could lose the close frame and its code.
async fn linger(mut queued: futures_channel::mpsc::Receiver<WsMessage>) {
    let drained = async { while queued.next().await.is_some() {} };
    let _ = tokio::time::timeout(LINGER, drained).await;
}

const LINGER: Duration = Duration::from_secs(2);

/// How long until the Unix time `at` (zero when it has passed).
fn until(at: i64) -> Duration {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

async fn close(sink: &mut SplitSink<WebSocket, WsMessage>, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(WsMessage::Close(Some(frame))).await;
}

/// The connection's data (its caller and budget) and when its token expires.
fn connection_data(
    state: &AppState,
    params: &serde_json::Value,
    (client, address): (Option<SocketClient>, Option<IpAddr>),
) -> async_graphql::Result<(Data, Option<i64>)> {
    let find = |name: &str| {
        params.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
        })
    };
    let actor =
        actor_from(state, find("authorization"), find("x-tenant")).map_err(|e| e.to_graphql())?;
    let expires_at = actor.principal.as_ref().map(|p| p.expires_at);
    let admit = client.map(|SocketClient { limiter, client }| -> Admit {
        Box::new(move || {
            limiter
                .admit_client(&client)
                .map(|_| ())
                .map_err(|refused| refused.retry_secs())
        })
    });
    let mut data = Data::default();
    data.insert(SocketBudget::new(admit, state.http.ws_max_subscriptions));
    data.insert(RequestContext {
        loaders: Loaders::new(&state.db, actor.tenant.as_str()),
        actor,
        client: address,
    });
    Ok((data, expires_at))
}
