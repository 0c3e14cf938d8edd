//! `/metrics`: Prometheus text exposition (never rate limited).
use super::AppState;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    // The queue is a table shared by every instance: its depth is read at scrape time.
    if let Ok(depth) = crate::checkout::queue::depth(&state.db).await {
        crate::telemetry::set_queue_depth(depth);
    }
    let mut response = crate::telemetry::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
