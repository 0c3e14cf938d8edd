//! Health endpoints (never rate limited) and `/whoami`.
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/health/cache", get(cache))
        .route("/whoami", get(whoami))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let database = crate::db::ping(&state.db).await;
    let cache = state.cache.backend_state();
    let status = if database { "ok" } else { "degraded" };
    let code = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "status": status,
            "database": if database { "ok" } else { "down" },
            "cache": cache.as_str(),
            "cacheBackend": state.cache.backend_name(),
            "version": env!("CARGO_PKG_VERSION"),
            "instance": state.instance_id,
        })),
    )
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.drain.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
    } else if crate::db::is_ready(&state.db).await {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready" })),
        )
    }
}

/// Always 200: the cache is optional, so its state is information, not failure.
async fn cache(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": state.cache.backend_state().as_str(),
        "backend": state.cache.backend_name(),
    }))
}

async fn whoami(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "instance": state.instance_id }))
}
