//! Refusals made outside the GraphQL handler (rate limit, body size) still answer with a
//! GraphQL-shaped body, so a client reads them like any other error.
use super::rate_limit::{ClientAddr, ClientIp, Limiter, Refused};
use super::socket;
use crate::telemetry;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// `{"errors":[{"message":…,"extensions":{"code":…}}]}` with `status`.
pub fn graphql_error(status: StatusCode, code: &'static str, message: &str) -> Response {
    telemetry::error(Some(code));
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Turns the bare 413 of the body limit (refused by `Content-Length`, or while reading
/// a body without one) into a GraphQL error with code `BAD_USER_INPUT`: the request
/// is malformed input, not a document to measure.
async fn oversize_body(limit: usize, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return graphql_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BAD_USER_INPUT",
            &format!("the request body exceeds {limit} bytes (MAX_BODY_BYTES)"),
        );
    }
    response
}

/// The API routes' one middleware, outermost on them: the rate limit first, so a
/// refused request costs no body read, then the body-size refusal in GraphQL shape.
/// One middleware rather than a layer each, because every layer costs a boxed service
/// clone per request.
/// The client's address goes into the request's extensions (`ClientAddr`) either way.
pub async fn guard(
    limiter: Option<Arc<Limiter>>,
    clients: ClientIp,
    max_body_bytes: usize,
    mut request: Request,
    next: Next,
) -> Response {
    let client = clients.of(&request);
    if let Some(client) = client {
        request.extensions_mut().insert(ClientAddr(client));
    }
    let Some(limiter) = limiter else {
        return oversize_body(max_body_bytes, request, next).await;
    };
    let admitted = match client.ok_or(Refused::Unidentified) {
        Ok(client) => limiter.admit_client(&client),
        Err(refused) => Err(refused),
    };
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_response(),
    };
    // A WebSocket's operations draw from the bucket of the request that opened it.
    if request.uri().path() == socket::PATH
        && let Some(client) = client
    {
        let limiter = limiter.clone();
        request
            .extensions_mut()
            .insert(socket::SocketClient { limiter, client });
    }
    let mut response = oversize_body(max_body_bytes, request, next).await;
    limiter.annotate(admitted, response.headers_mut());
    response
}
