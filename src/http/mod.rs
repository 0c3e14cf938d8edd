//! The HTTP surface: GraphQL (HTTP + WebSocket), health, playground.
mod graphql;
mod health;
mod idempotency;
mod playground;

use crate::auth::JwtKeys;
use crate::cache::Cache;
use crate::domain::TenantId;
use crate::graphql::AppSchema;
use axum::Router;
use axum::routing::get;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub schema: AppSchema,
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub jwt: JwtKeys,
    pub instance_id: String,
    pub default_tenant: TenantId,
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

/// Largest request body accepted (a GraphQL document with its variables).
const BODY_LIMIT: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/graphql",
            get(graphql::get_handler).post(graphql::post_handler),
        )
        .route("/graphql/ws", get(graphql::ws_handler))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    Router::new()
        .merge(api)
        .merge(health::routes())
        .merge(playground::routes())
        .layer(TraceLayer::new_for_http())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}
