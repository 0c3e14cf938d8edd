//! A POST to `/graphql`: the first byte picks the `Content-Type` and the batch limit,
//! the rest is the body.
#![no_main]

mod common;

use async_graphql::BatchRequest;
use libfuzzer_sys::fuzz_target;
use shopgraph::http::decode::post_body;

const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("Application/JSON;charset=UTF-8"),
    Some("application/graphql-response+json"),
    Some("text/plain"),
    Some("multipart/form-data; boundary=x"),
    Some(""),
    None,
];

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"))
}

fn len(batch: &BatchRequest) -> Option<usize> {
    match batch {
        BatchRequest::Single(_) => None,
        BatchRequest::Batch(requests) => Some(requests.len()),
    }
}

fn to_json(batch: &BatchRequest) -> serde_json::Value {
    let value = match batch {
        BatchRequest::Single(request) => serde_json::to_value(request),
        BatchRequest::Batch(requests) => serde_json::to_value(requests),
    };
    value.expect("a decoded request encodes")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector & 7)];
    let max_batch = usize::from(selector >> 3) + 1;
    match post_body(content_type, body, max_batch) {
        Ok(batch) => {
            assert!(is_json(content_type), "accepted {content_type:?}");
            if let Some(n) = len(&batch) {
                assert!((1..=max_batch).contains(&n), "a batch of {n} > {max_batch}");
            }
            // What was decoded is what the server runs: encoding it again and decoding
            // that gives the same requests.
            let json = to_json(&batch);
            let encoded = json.to_string();
            let again = post_body(content_type, encoded.as_bytes(), max_batch);
            let again = again.ok().as_ref().map(to_json);
            assert!(
                again.is_some_and(|again| common::same(&json, &again)),
                "{encoded}"
            );
        }
        Err(refusal) => {
            let status = refusal.status.as_u16();
            let code = refusal.error.code();
            if !is_json(content_type) {
                assert_eq!((status, code), (415, "BAD_USER_INPUT"));
            } else if code == "QUERY_TOO_COMPLEX" {
                assert_eq!(status, 400);
                let n = serde_json::from_slice::<BatchRequest>(body)
                    .ok()
                    .as_ref()
                    .and_then(len);
                assert!(n.is_some_and(|n| n == 0 || n > max_batch), "{n:?}");
            } else {
                assert_eq!((status, code), (400, "BAD_USER_INPUT"));
            }
        }
    }
});
