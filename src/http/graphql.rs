//! `/graphql` over HTTP, following GraphQL-over-HTTP: JSON POST and GET (queries only),
//! `application/graphql-response+json` when accepted (400 for documents that fail to
//! parse or validate), 405 for a mutation by GET, 406 when nothing in `Accept` is
//! supported. `/graphql/ws` serves both WebSocket subprotocols.
use super::AppState;
use super::decode::{self, Format};
use super::rate_limit::{self, ClientAddr};
use super::response_cache;
use crate::auth::Actor;
use crate::cache::CacheTrace;
use crate::db::{StatementCounter, count_statements};
use crate::domain::TenantId;
use crate::error::AppError;
use crate::graphql::passes::counting_passes;
use crate::graphql::{OperationTrace, RequestContext, loaders::Loaders};
use crate::services::idempotency;
use crate::telemetry;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, Executor, Request};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Who sent a request: the client address (`reject::guard`) and the headers.
type Sender<'a> = (Option<IpAddr>, &'a HeaderMap);

/// The `operation` label of requests refused before any operation was identified.
const INVALID: &str = "invalid";

/// Picks the response media type from `Accept`; `None` means 406.
fn negotiate(headers: &HeaderMap) -> Option<Format> {
    decode::negotiate(header_str(headers, header::ACCEPT.as_str()))
}

fn refusal_response(format: Format, refused: &decode::Refusal) -> Response {
    error_response(refused.status, format, &refused.error)
}

fn error_response(status: StatusCode, format: Format, err: &AppError) -> Response {
    telemetry::error(Some(err.code()));
    let body =
        json!({ "errors": [{ "message": err.to_string(), "extensions": { "code": err.code() } }] });
    let mut response = (status, body.to_string()).into_response();
    if let Ok(value) = HeaderValue::from_str(format.content_type()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The caller from `Authorization` (a bad token is refused) or `X-Tenant`.
pub(super) async fn actor_from(
    state: &AppState,
    authorization: Option<&str>,
    tenant: Option<&str>,
) -> Result<Actor, AppError> {
    if let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) {
        return state
            .auth
            .from_authorization(value)
            .await
            .map(Actor::authenticated);
    }
    let tenant = match tenant.map(str::trim).filter(|t| !t.is_empty()) {
        Some(raw) => TenantId::parse(raw)?,
        None => state.default_tenant.clone(),
    };
    Ok(Actor::anonymous(tenant))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client address `reject::guard` found, if any.
fn client_of(client: Option<Extension<ClientAddr>>) -> Option<IpAddr> {
    client.map(|Extension(ClientAddr(ip))| ip)
}

pub async fn get_handler(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    let query = query.as_deref().unwrap_or_default();
    let (operation, response) = get(state, client_of(client), &headers, query).await;
    telemetry::request(operation, response.status().as_u16(), started.elapsed());
    response
}

/// A mutation by GET (by its text or a persisted hash) is refused with 405 by the query
/// limits extension, once the document is known.
async fn get(
    state: AppState,
    client: Option<IpAddr>,
    headers: &HeaderMap,
    query: &str,
) -> (&'static str, Response) {
    let Some(format) = negotiate(headers) else {
        return (INVALID, StatusCode::NOT_ACCEPTABLE.into_response());
    };
    let request = match decode::get_params(query) {
        Ok(request) => request,
        Err(refused) => return (INVALID, refusal_response(format, &refused)),
    };
    execute(
        state,
        (client, headers),
        Method::GET,
        BatchRequest::Single(request),
        format,
    )
    .await
}

pub async fn post_handler(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let (operation, response) = post(state, (client_of(client), &headers), &body).await;
    telemetry::request(operation, response.status().as_u16(), started.elapsed());
    response
}

async fn post(state: AppState, from: Sender<'_>, body: &[u8]) -> (&'static str, Response) {
    let (_, headers) = from;
    let Some(format) = negotiate(headers) else {
        return (INVALID, StatusCode::NOT_ACCEPTABLE.into_response());
    };
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str());
    let batch = match decode::post_body(content_type, body, state.http.max_batch) {
        Ok(batch) => batch,
        Err(refused) => return (INVALID, refusal_response(format, &refused)),
    };
    if let Some(key) = header_str(headers, "idempotency-key")
        && may_write(&batch)
    {
        let key = key.trim().to_owned();
        return run_once(state, from, &key, batch, format).await;
    }
    execute(state, from, Method::POST, batch, format).await
}

/// Whether a request may change something: any operation of it is a mutation, or is
/// a persisted query sent by hash alone (its document is not known here).
fn may_write(batch: &BatchRequest) -> bool {
    requests_of(batch).iter().any(|r| {
        is_mutation(r) || (r.query.is_empty() && r.extensions.contains_key("persistedQuery"))
    })
}

fn requests_of(batch: &BatchRequest) -> Vec<&Request> {
    match batch {
        BatchRequest::Single(request) => vec![request],
        BatchRequest::Batch(requests) => requests.iter().collect(),
    }
}

/// Whether a response is final, worth replaying. It is not (the key is given back, so
/// that a retry runs) only when every operation failed inside the server (INTERNAL or
/// UNAVAILABLE, or a 5xx) and none returned data: an operation that returned data may
/// have written, and running it again would write twice.
fn is_final(status: StatusCode, body: &[u8]) -> bool {
    if status.is_server_error() {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return true;
    };
    let responses = match &value {
        serde_json::Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let failed_inside = |r: &serde_json::Value| {
        let no_data = match &r["data"] {
            serde_json::Value::Object(fields) => fields.values().all(serde_json::Value::is_null),
            other => other.is_null(),
        };
        let internal = r["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|e| {
                matches!(
                    e["extensions"]["code"].as_str(),
                    Some("INTERNAL" | "UNAVAILABLE")
                )
            })
        });
        no_data && internal
    };
    !responses.iter().all(|r| failed_inside(r))
}

/// Runs a request that may write at most once per tenant, caller and `Idempotency-Key`:
/// single, batched or persisted. Anonymous callers share one identity, so their
/// requests are not replayable: they simply run.
async fn run_once(
    state: AppState,
    from: Sender<'_>,
    key: &str,
    batch: BatchRequest,
    format: Format,
) -> (&'static str, Response) {
    let (client, headers) = from;
    let actor = match request_actor(&state, headers, format).await {
        Ok(actor) => actor,
        Err(response) => return (INVALID, *response),
    };
    if actor.principal.is_none() {
        return execute(state, from, Method::POST, batch, format).await;
    }
    let hash = idempotency::request_hash(&requests_of(&batch));
    match idempotency::begin(&state.db, &actor, key, &hash).await {
        Ok(idempotency::Begin::Replay(body)) => {
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            ("mutation", response)
        }
        Ok(idempotency::Begin::Fresh(record)) => {
            // In a task of its own: a client that disconnects, or the request timeout,
            // drops this future, and the record must still be settled.
            let (db, headers) = (state.db.clone(), headers.clone());
            let after_panic = state.db.clone();
            let run = tokio::spawn(async move {
                let from = (client, &headers);
                let (label, response) = execute(state, from, Method::POST, batch, format).await;
                let (parts, body) = response.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.ok();
                let kept = match &bytes {
                    Some(bytes) if is_final(parts.status, bytes) => {
                        idempotency::complete(&db, record, bytes).await
                    }
                    _ => idempotency::abandon(&db, record).await,
                };
                if let Err(err) = kept {
                    tracing::warn!(error = %err, "could not settle an idempotency record");
                }
                (label, parts, bytes)
            });
            match run.await {
                Ok((label, parts, Some(bytes))) => (
                    label,
                    Response::from_parts(parts, axum::body::Body::from(bytes)),
                ),
                Ok((label, _, None)) => (label, StatusCode::INTERNAL_SERVER_ERROR.into_response()),
                Err(err) => {
                    // The request panicked: the key is free again, the answer INTERNAL.
                    tracing::error!(error = %err, "an idempotent request failed inside");
                    if let Err(err) = idempotency::abandon(&after_panic, record).await {
                        tracing::warn!(error = %err, "could not settle an idempotency record");
                    }
                    let err = AppError::Internal(anyhow::anyhow!("the request failed inside"));
                    (
                        INVALID,
                        error_response(StatusCode::INTERNAL_SERVER_ERROR, format, &err),
                    )
                }
            }
        }
        Err(err @ AppError::Conflict(_)) => {
            (INVALID, error_response(StatusCode::CONFLICT, format, &err))
        }
        Err(err @ AppError::BadInput(_)) => (
            INVALID,
            error_response(StatusCode::BAD_REQUEST, format, &err),
        ),
        Err(err) => (
            INVALID,
            error_response(StatusCode::INTERNAL_SERVER_ERROR, format, &err),
        ),
    }
}

/// The caller, or the response that refuses the request.
async fn request_actor(
    state: &AppState,
    headers: &HeaderMap,
    format: Format,
) -> Result<Actor, Box<Response>> {
    actor_from(
        state,
        header_str(headers, header::AUTHORIZATION.as_str()),
        header_str(headers, "x-tenant"),
    )
    .await
    .map(|actor| actor.with_cart_token(header_str(headers, "x-cart-token")))
    .map_err(|err| {
        let status = match err {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Box::new(error_response(status, format, &err))
    })
}

fn is_mutation(request: &Request) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    crate::cache::selected_operation(&doc, request.operation_name.as_deref())
        .is_some_and(|op| op.node.ty == OperationType::Mutation)
}

fn operation_label(kind: Option<OperationType>) -> &'static str {
    match kind {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => INVALID,
    }
}

async fn execute(
    state: AppState,
    (client, headers): Sender<'_>,
    method: Method,
    batch: BatchRequest,
    format: Format,
) -> (&'static str, Response) {
    let started = Instant::now();
    let actor = match request_actor(&state, headers, format).await {
        Ok(actor) => actor,
        Err(response) => return (INVALID, *response),
    };
    let debug =
        header_str(headers, "x-debug").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    // `X-Debug` reports per-field cache outcomes, so it always executes. With the cache
    // off nothing is looked up or stored, so the document's id (a digest) is not taken.
    let mut pending = None;
    let mut document = None;
    if let (BatchRequest::Single(request), false, true) = (&batch, debug, state.cache.enabled()) {
        document = Some(response_cache::id_of(request));
    }
    if let (BatchRequest::Single(request), Some(id)) = (&batch, &document)
        && state.known_documents.is_known(id)
    {
        match response_cache::lookup(&state.cache, &actor, request).await {
            response_cache::Cached::Hit {
                body,
                cache_control,
            } => {
                return (
                    "query",
                    cached_response(body, &cache_control, format, &method),
                );
            }
            response_cache::Cached::Miss(miss) => pending = Some(miss),
            response_cache::Cached::Skip => {}
        }
    }
    let counter = StatementCounter::default();
    let (single, requests) = match batch {
        BatchRequest::Single(request) => (true, vec![request]),
        BatchRequest::Batch(requests) => (false, requests),
    };
    let operation_name = requests
        .first()
        .filter(|_| single && crate::traces::enabled())
        .and_then(|r| r.operation_name.clone());
    let mut traces = Vec::new();
    let mut operations = Vec::new();
    let requests: Vec<Request> = requests
        .into_iter()
        .map(|request| {
            let trace = Arc::new(CacheTrace::default());
            traces.push(trace.clone());
            let operation = Arc::new(OperationTrace::new(method == Method::GET));
            operations.push(operation.clone());
            request
                .data(RequestContext {
                    actor: actor.clone(),
                    loaders: Loaders::new(&state.db, actor.tenant.as_str()),
                    client,
                })
                .data(trace)
                .data(operation)
        })
        .collect();
    let batch = if single {
        requests
            .into_iter()
            .next()
            .map_or(BatchRequest::Batch(Vec::new()), BatchRequest::Single)
    } else {
        BatchRequest::Batch(requests)
    };
    let response = count_statements(
        counter.clone(),
        counting_passes(state.schema.execute_batch(batch)),
    )
    .await;
    let label = if single {
        operation_label(operations.first().and_then(|o| o.kind()))
    } else {
        "batch"
    };
    if crate::traces::enabled() {
        crate::traces::name_request(label, operation_name.as_deref());
    }
    let refused_by_get = operations.iter().any(|o| o.refused_mutation());
    let retry_after = rate_limit::retry_after(&response);
    let (mut http, cacheable_body) =
        finish(response, &traces, debug, &counter, started, format, &method);
    if let Some(retry) = retry_after {
        rate_limit::refuse(&mut http, retry);
    }
    if let (Some(body), Some(trace), false) = (cacheable_body, traces.first(), refused_by_get)
        && trace.response_tags().is_some()
    {
        match pending {
            Some(pending) => {
                response_cache::store(&state.cache, &actor, pending, &body, trace).await
            }
            // First sight: no sequence was taken before executing, so nothing is
            // stored; the next request looks it up.
            None => {
                if let Some(document) = document {
                    state.known_documents.learn(document);
                }
            }
        }
    }
    if refused_by_get {
        *http.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        http.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    (label, http)
}

/// Counts the errors of a response by code.
fn count_errors(response: &BatchResponse) {
    let responses = match response {
        BatchResponse::Single(single) => std::slice::from_ref(single),
        BatchResponse::Batch(batch) => batch.as_slice(),
    };
    for error in responses.iter().flat_map(|r| &r.errors) {
        let code = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|code| match code {
                async_graphql::Value::String(code) => Some(code.as_str()),
                async_graphql::Value::Enum(code) => Some(code.as_str()),
                _ => None,
            });
        telemetry::error(code);
    }
}

/// Gives every error a code a client can act on. Our resolvers set theirs; what the
/// GraphQL engine reports itself gets one here: a value that does not coerce to its
/// type (an argument, a variable, a scalar) is `BAD_USER_INPUT`, any other error of
/// the document is `GRAPHQL_VALIDATION_FAILED`.
fn code_errors(response: &mut BatchResponse) {
    let responses = match response {
        BatchResponse::Single(single) => std::slice::from_mut(single),
        BatchResponse::Batch(batch) => batch.as_mut_slice(),
    };
    for error in responses.iter_mut().flat_map(|r| &mut r.errors) {
        let coded = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if coded {
            continue;
        }
        let message = error.message.as_str();
        let coercion = message.starts_with("Failed to parse")
            || message.contains("Invalid value for argument")
            || message.contains("Invalid value for variable")
            || (message.starts_with("Variable") && message.contains("value"));
        let code = if coercion {
            "BAD_USER_INPUT"
        } else if error.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            continue;
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

fn finish(
    response: BatchResponse,
    traces: &[Arc<CacheTrace>],
    debug: bool,
    counter: &StatementCounter,
    started: Instant,
    format: Format,
    method: &Method,
) -> (Response, Option<Vec<u8>>) {
    let mut response = response;
    code_errors(&mut response);
    count_errors(&response);
    let mut status = StatusCode::OK;
    let mut cache_control = "no-store".to_owned();
    if let BatchResponse::Single(single) = &mut response {
        let request_error = single.data == async_graphql::Value::Null
            && !single.errors.is_empty()
            && single.errors.iter().all(|e| e.path.is_empty());
        if request_error && format == Format::GraphqlResponseJson {
            status = StatusCode::BAD_REQUEST;
        }
        if single.errors.is_empty()
            && let Some(trace) = traces.first()
        {
            cache_control = trace.cache_control();
        }
        if debug {
            let cache: Vec<_> = traces.iter().flat_map(|t| t.outcomes()).collect();
            let value = json!({
                "dbStatements": counter.get(),
                "elapsedMs": started.elapsed().as_secs_f64() * 1000.0,
                "cache": cache,
            });
            if let Ok(value) = async_graphql::Value::from_json(value) {
                single.extensions.insert("debug".into(), value);
            }
        }
    }
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(err) => {
            let error = AppError::internal("serialize response", err);
            return (
                error_response(StatusCode::INTERNAL_SERVER_ERROR, format, &error),
                None,
            );
        }
    };
    let cacheable =
        (status == StatusCode::OK && cache_control != "no-store" && !debug).then(|| body.clone());
    let mut http = answer(status, body);
    set_cache_headers(&mut http, &cache_control, format, method);
    (http, cacheable)
}

/// A GraphQL answer whose header map is allocated once, with room for every header it
/// gets on the way out (content type, caching, `vary`, `x-cache`, rate limit, CORS):
/// growing the map when the limiter adds its two costs more than the limiter itself.
fn answer(status: StatusCode, body: Vec<u8>) -> Response {
    let mut http = Response::new(Body::from(body));
    *http.status_mut() = status;
    http.headers_mut().reserve(ANSWER_HEADERS);
    http
}

const ANSWER_HEADERS: usize = 12;

/// A response served from the whole-response cache.
fn cached_response(
    body: Vec<u8>,
    cache_control: &str,
    format: Format,
    method: &Method,
) -> Response {
    let mut http = answer(StatusCode::OK, body);
    set_cache_headers(&mut http, cache_control, format, method);
    http.headers_mut()
        .insert("x-cache", HeaderValue::from_static("hit"));
    http
}

fn set_cache_headers(http: &mut Response, cache_control: &str, format: Format, method: &Method) {
    // Responses to POST are never stored by shared caches.
    let cache_control = if method == Method::POST && cache_control.starts_with("public") {
        cache_control.replacen("public", "private", 1)
    } else {
        cache_control.to_owned()
    };
    let h = http.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        h.insert(header::CACHE_CONTROL, value);
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("authorization, x-tenant, x-cart-token, accept"),
    );
}

#[cfg(test)]
mod idempotency_tests {
    use super::*;

    #[test]
    fn only_final_answers_are_kept() {
        let ok = br#"{"data":{"addToCart":{"itemCount":1}}}"#;
        let refused =
            br#"{"data":null,"errors":[{"message":"x","extensions":{"code":"CONFLICT"}}]}"#;
        let internal = br#"{"data":null,"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#;
        let both_busy = br#"[{"data":null,"errors":[{"message":"busy","extensions":{"code":"UNAVAILABLE"}}]},{"data":{"checkout":null},"errors":[{"message":"busy","extensions":{"code":"UNAVAILABLE"}}]}]"#;
        let half_written = br#"[{"data":{"addToCart":{"itemCount":1}}},{"data":null,"errors":[{"message":"busy","extensions":{"code":"UNAVAILABLE"}}]}]"#;
        assert!(is_final(StatusCode::OK, ok));
        assert!(is_final(StatusCode::OK, refused));
        assert!(!is_final(StatusCode::OK, internal));
        assert!(!is_final(StatusCode::OK, both_busy));
        // The first operation wrote: running the batch again would write it twice.
        assert!(is_final(StatusCode::OK, half_written));
        assert!(!is_final(StatusCode::INTERNAL_SERVER_ERROR, ok));
    }
}
