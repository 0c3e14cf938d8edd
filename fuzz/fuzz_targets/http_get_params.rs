//! A GET of `/graphql`: the input is the query string (and, as a second reading of the
//! same bytes, an `Accept` header).
#![no_main]

mod common;

use async_graphql::Request;
use libfuzzer_sys::fuzz_target;
use serde_json::to_value;
use shopgraph::http::decode::{Format, get_params, negotiate};

/// The parameters of a decoded request, encoded as a client would send them.
fn encode(request: &Request) -> String {
    let mut params = form_urlencoded::Serializer::new(String::new());
    params.append_pair("query", &request.query);
    if let Some(name) = &request.operation_name {
        params.append_pair("operation_name", name);
    }
    let variables = serde_json::to_string(&request.variables).expect("variables encode");
    params.append_pair("variables", &variables);
    let extensions = serde_json::to_string(&request.extensions).expect("extensions encode");
    params.append_pair("extensions", &extensions);
    params.finish()
}

fuzz_target!(|data: &[u8]| {
    // The server only ever sees a query string that is UTF-8 (axum's `RawQuery`).
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match get_params(input) {
        Ok(request) => {
            let again = get_params(&encode(&request)).expect("a decoded request re-decodes");
            assert_eq!(request.query, again.query);
            assert_eq!(request.operation_name, again.operation_name);
            let same = |a: serde_json::Result<_>, b: serde_json::Result<_>| match (a, b) {
                (Ok(a), Ok(b)) => common::same(&a, &b),
                _ => false,
            };
            assert!(same(
                to_value(&request.variables),
                to_value(&again.variables)
            ));
            assert!(same(
                to_value(&request.extensions),
                to_value(&again.extensions)
            ));
        }
        Err(refusal) => {
            assert_eq!(refusal.status.as_u16(), 400);
            assert_eq!(refusal.error.code(), "BAD_USER_INPUT");
        }
    }
    let accept = input.to_ascii_lowercase();
    match negotiate(Some(input)) {
        Some(Format::GraphqlResponseJson) => {
            assert!(accept.contains("application/graphql-response+json"))
        }
        Some(Format::Json) => assert!(
            accept.contains("application/json")
                || accept.contains("*/*")
                || accept.contains("application/*")
        ),
        None => {}
    }
});
