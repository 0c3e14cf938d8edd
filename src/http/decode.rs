//! Turning the bytes of an HTTP request into GraphQL requests, before anything runs:
//! the response format from `Accept`, a POST body (single or batch) and GET parameters.
//! Pure functions of their input, so that the fuzz targets (`fuzz/`) reach exactly
//! what `/graphql` runs, without a server.
use crate::error::AppError;
use async_graphql::{BatchRequest, Request};
use axum::http::StatusCode;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The media type of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GraphqlResponseJson,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// A request refused before it is executed, with the status it is answered with.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: AppError,
}

impl Refusal {
    fn bad_input(status: StatusCode, message: String) -> Self {
        Self {
            status,
            error: AppError::BadInput(message),
        }
    }
}

/// Picks the response media type from `Accept` (absent, or not visible ASCII, reads as
/// anything); `None` means 406.
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept else {
        return Some(Format::Json);
    };
    let mut json = false;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let refused = parts.any(|p| p.replace(' ', "") == "q=0");
        if refused {
            continue;
        }
        match media.as_str() {
            GRAPHQL_RESPONSE_JSON => return Some(Format::GraphqlResponseJson),
            "application/json" | "*/*" | "application/*" => json = true,
            _ => {}
        }
    }
    json.then_some(Format::Json)
}

/// A POST body: JSON only (415 otherwise), one request or a batch of 1 to `max_batch`.
pub fn post_body(
    content_type: Option<&str>,
    body: &[u8],
    max_batch: usize,
) -> Result<BatchRequest, Refusal> {
    let is_json =
        content_type.is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return Err(Refusal::bad_input(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as application/json".into(),
        ));
    }
    let batch = serde_json::from_slice::<BatchRequest>(body).map_err(|err| {
        Refusal::bad_input(
            StatusCode::BAD_REQUEST,
            format!("the body is not a GraphQL request: {err}"),
        )
    })?;
    // Refused before any operation is parsed: an empty batch has nothing to answer, and
    // a long one would multiply the per-document limits.
    if let BatchRequest::Batch(requests) = &batch
        && (requests.is_empty() || requests.len() > max_batch)
    {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            error: AppError::TooComplex(format!(
                "a batch holds 1 to {max_batch} operations (QUERY_MAX_BATCH)"
            )),
        });
    }
    Ok(batch)
}

/// GET parameters (`query`, `variables`, `extensions`, ...) as one request.
pub fn get_params(query: &str) -> Result<Request, Refusal> {
    async_graphql::http::parse_query_string(query)
        .map_err(|err| Refusal::bad_input(StatusCode::BAD_REQUEST, err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_bodies_must_be_json() {
        let json = Some("application/json; charset=utf-8");
        assert!(post_body(json, br#"{"query":"{ a }"}"#, 1).is_ok());
        let two = br#"[{"query":"{ a }"},{"query":"{ b }"}]"#;
        assert!(post_body(json, two, 2).is_ok());
        let refused = post_body(json, two, 1).err();
        assert!(refused.is_some_and(|r| r.error.code() == "QUERY_TOO_COMPLEX"));
        assert!(post_body(json, b"[1]", 5).is_err());
        let not_json = post_body(Some("text/plain"), br#"{"query":"{ a }"}"#, 1).err();
        assert!(not_json.is_some_and(|r| r.status == StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert!(post_body(None, b"{}", 1).is_err());
    }

    #[test]
    fn numbers_in_variables_keep_their_value_to_an_ulp() {
        // Found by fuzzing (http_post_body): serde_json's default float parsing is not
        // correctly rounded beyond 17 digits; the `float_roundtrip` feature makes it so.
        let digits = "214748777777777777777777777777777777773648";
        let body = format!(r#"{{"query":"{{ a }}","variables":{{"n":{digits}}}}}"#);
        let json = Some("application/json");
        let Ok(BatchRequest::Single(request)) = post_body(json, body.as_bytes(), 1) else {
            panic!("not decoded: {body}");
        };
        let decoded = serde_json::to_value(&request.variables)
            .ok()
            .and_then(|v| v["n"].as_f64())
            .unwrap_or_default();
        let exact = digits.parse::<f64>().unwrap_or_default();
        assert!(
            decoded.to_bits().abs_diff(exact.to_bits()) <= 1,
            "{decoded} {exact}"
        );
    }

    #[test]
    fn accept_picks_the_format() {
        assert_eq!(negotiate(None), Some(Format::Json));
        assert_eq!(
            negotiate(Some("application/json, application/graphql-response+json")),
            Some(Format::GraphqlResponseJson)
        );
        assert_eq!(
            negotiate(Some("application/graphql-response+json;q=0, */*")),
            Some(Format::Json)
        );
        assert_eq!(negotiate(Some("text/html")), None);
    }
}
