//! The HTTP surface: GraphQL (HTTP + WebSocket), health, metrics, playground, and the
//! layers in front of them (CORS, rate limit, body limit).
/// Request decoding (Accept, POST bodies, GET parameters) as pure functions, for fuzzing.
pub mod decode;
mod drain;
mod graphql;
mod health;
mod metrics;
mod panics;
mod playground;
pub mod rate_limit;
mod reject;
mod response_cache;
mod socket;

use crate::auth::Authenticator;
use crate::cache::Cache;
use crate::config::Settings;
use crate::domain::TenantId;
use crate::graphql::Gateway;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
pub use drain::Drain;
use rate_limit::{ClientIp, Limiter, RateLimit};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub schema: Gateway,
    pub db: DatabaseConnection,
    pub cache: Cache,
    /// Verifies bearer tokens: ours (HS256) and an identity provider's.
    pub auth: Authenticator,
    pub instance_id: String,
    pub default_tenant: TenantId,
    /// Documents whose responses are cached whole (see `response_cache`).
    pub known_documents: response_cache::KnownDocuments,
    pub http: HttpConfig,
    /// Set when the server is stopping (`drain`).
    pub drain: Drain,
}

/// What the HTTP layers and the GraphQL handler enforce.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `None` when `RATE_LIMIT_ENABLED=false`.
    pub rate_limit: Option<RateLimit>,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    pub max_body_bytes: usize,
    /// How long a WebSocket may wait before its first message.
    pub ws_init_timeout: Duration,
    /// How long a request may run before it is answered 408 and dropped.
    pub request_timeout: Duration,
    /// How often an open WebSocket is pinged.
    pub ws_keepalive: Duration,
    pub ws_max_subscriptions: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
    /// `*`, a list of origins, or empty for no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

impl HttpConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            rate_limit: settings.rate_limit_enabled.then_some(RateLimit {
                per_minute: settings.rate_limit_per_minute,
                burst: settings.rate_limit_burst,
            }),
            trusted_proxies: settings.trusted_proxies().into(),
            max_body_bytes: settings.max_body_bytes,
            ws_init_timeout: Duration::from_millis(settings.ws_init_timeout_ms),
            ws_keepalive: Duration::from_millis(settings.ws_keepalive_ms),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            ws_max_subscriptions: settings.ws_max_subscriptions,
            max_batch: settings.query_max_batch,
            cors_allowed_origins: settings.cors_origins(),
        }
    }
}

impl AppState {
    pub fn new(inner: StateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.0
    }
}

/// SHA-256 over parts separated by a NUL byte, so ("ab", "c") and ("a", "bc") differ.
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0]);
    }
    hasher.finalize().into()
}

pub fn router(state: AppState) -> Router {
    let limit = state.http.max_body_bytes;
    let clients = ClientIp::new(state.http.trusted_proxies.clone());
    let limiter = state
        .http
        .rate_limit
        .as_ref()
        .and_then(|limit| Limiter::new(limit, clients.clone()));
    let api = Router::new()
        .route(
            "/graphql",
            get(graphql::get_handler).post(graphql::post_handler),
        )
        .route(socket::PATH, get(socket::ws_handler))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            reject::guard(limiter.clone(), clients.clone(), limit, request, next)
        }));
    let mut app = Router::new()
        .merge(api)
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(playground::routes())
        .layer(panics::layer())
        .layer(axum::middleware::from_fn_with_state(
            state.drain.clone(),
            drain::close_connections,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            state.http.request_timeout,
        ));
    // Outermost: preflights are answered before the rate limiter, and refusals (429,
    // 413) carry the CORS headers a browser needs to read them.
    if let Some(cors) = cors_layer(&state.http.cors_allowed_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// The span of one request: with traces on, a server span that continues the caller's
/// `traceparent` and carries its GraphQL operation (`graphql::execute`);
/// otherwise tower-http's debug span, as cheap as before.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    use tower_http::trace::MakeSpan;
    if !crate::traces::enabled() {
        return tower_http::trace::DefaultMakeSpan::new().make_span(request);
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        graphql.operation.type = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
    );
    crate::traces::continue_from_headers(&span, request.headers());
    span
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::ACCEPT,
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-tenant"),
                HeaderName::from_static("x-cart-token"),
                HeaderName::from_static("x-debug"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderName::from_static("x-ratelimit-after"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
