//! `/playground` (GraphiQL) and `/playground/shop` (storefront demo), built from
//! `playground/` and embedded in the binary so they work with no network access.
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

static DIST: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/playground/dist");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/playground",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/playground/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/playground/shop",
            get(|h: HeaderMap| async move { serve("shop/index.html", &h) }),
        )
        .route(
            "/playground/shop/",
            get(|h: HeaderMap| async move { serve("shop/index.html", &h) }),
        )
        .route(
            "/playground/assets/{file}",
            get(|Path(file): Path<String>, h: HeaderMap| async move {
                serve(&format!("assets/{file}"), &h)
            }),
        )
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = DIST.get_file(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let body = file.contents();
    // Names carry no content hash, so clients revalidate; the ETag makes that cheap.
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(body)[..12]));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}
