//! A graphql-transport-ws client that shows everything the server sends, pings and
//! close frames included, for tests of the socket's own rules.
use crate::helpers::TestApp;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the server sent, as a test looks at it.
#[derive(Debug, PartialEq)]
pub enum Heard {
    /// A protocol message (`next`, `complete`, `connection_ack`, …).
    Message(Value),
    Ping,
    /// A close frame and its code.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Gone,
}

pub struct Socket(Stream);

impl Socket {
    /// A graphql-transport-ws socket to `app`, nothing sent yet.
    pub async fn open(app: &TestApp) -> Self {
        Self::open_at(&app.addr.to_string()).await
    }

    /// A graphql-transport-ws socket to the server at `host:port`, nothing sent yet.
    pub async fn open_at(address: &str) -> Self {
        let mut request = format!("ws://{address}/graphql/ws")
            .into_client_request()
            .unwrap_or_else(|e| panic!("{e}"));
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("ws connect: {e}"));
        Self(socket)
    }

    /// Opens a socket and initialises it (with `token`, when given) up to the ack.
    pub async fn ready(app: &TestApp, token: Option<&str>) -> Self {
        Self::ready_at(&app.addr.to_string(), token).await
    }

    /// `ready` for the server at `host:port`.
    pub async fn ready_at(address: &str, token: Option<&str>) -> Self {
        let mut socket = Self::open_at(address).await;
        let payload = token.map_or(
            json!({}),
            |t| json!({"authorization": format!("Bearer {t}")}),
        );
        socket
            .send(json!({"type": "connection_init", "payload": payload}))
            .await;
        let ack = socket.next_message().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        socket
    }

    /// Sends a message; the server may already have closed the socket.
    pub async fn send(&mut self, message: Value) {
        let _ = self.0.send(Message::Text(message.to_string().into())).await;
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The next frame the server sends, within 15 s.
    async fn frame(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        tokio::time::timeout(Duration::from_secs(15), self.0.next())
            .await
            .unwrap_or_else(|_| panic!("the server sent nothing for 15 s"))
    }

    /// The next thing the server sends, within 15 s.
    pub async fn next(&mut self) -> Heard {
        match self.frame().await {
            Some(Ok(Message::Text(text))) => {
                Heard::Message(serde_json::from_str(&text).unwrap_or_default())
            }
            Some(Ok(Message::Ping(_))) => Heard::Ping,
            Some(Ok(Message::Close(frame))) => Heard::Close(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => Box::pin(self.next()).await,
            None | Some(Err(_)) => Heard::Gone,
        }
    }

    /// The next protocol message, skipping pings.
    pub async fn next_message(&mut self) -> Value {
        loop {
            match self.next().await {
                Heard::Message(message) => return message,
                Heard::Ping => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    }

    /// The next protocol message as the server wrote it (key order included), skipping
    /// pings.
    pub async fn next_text(&mut self) -> String {
        loop {
            match self.frame().await {
                Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    }

    /// How the socket ends: its close code, skipping whatever comes before it.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Heard::Close(code) => return code,
                Heard::Gone => return None,
                _ => {}
            }
        }
    }
}
