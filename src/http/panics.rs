//! A panic anywhere in a request (a resolver, a layer) answers that request with an
//! `INTERNAL` GraphQL error and is logged; the connection and the process go on.
use axum::http::{HeaderValue, Response, StatusCode, header};
use std::any::Any;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

#[derive(Clone, Copy)]
pub struct InternalError;

impl ResponseForPanic for InternalError {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(
        &mut self,
        panic: Box<dyn Any + Send + 'static>,
    ) -> Response<Self::ResponseBody> {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(panic = message, "a request panicked");
        crate::telemetry::error(Some("INTERNAL"));
        let body = r#"{"data":null,"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#;
        let mut response = Response::new(axum::body::Body::from(body));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

pub fn layer() -> CatchPanicLayer<InternalError> {
    CatchPanicLayer::custom(InternalError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_and_the_service_goes_on() {
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .layer(layer());
        let request = |path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap_or_default()
        };
        let response = app.clone().oneshot(request("/boom")).await;
        let response = response.unwrap_or_else(|e| match e {});
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        let ok = app.oneshot(request("/ok")).await;
        assert_eq!(ok.unwrap_or_else(|e| match e {}).status(), StatusCode::OK);
    }
}
