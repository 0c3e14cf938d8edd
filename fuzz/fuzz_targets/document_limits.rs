//! A GraphQL document, parsed and measured as every request's is before validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shopgraph::graphql::limits::{Limits, TOO_COMPLEX, measure_document};

fn code(err: &async_graphql::ServerError) -> Option<String> {
    err.extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .map(|c| c.to_string().trim_matches('"').to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let defaults = Limits::default();
    let tight = Limits {
        depth: 3,
        complexity: 20,
        aliases: 2,
        root_fields: 3,
        ..defaults
    };
    let measured = measure_document(query, &defaults);
    let tightly = measure_document(query, &tight);
    match (&measured, &tightly) {
        // Lower limits never accept what higher ones refuse.
        (Err(err), Ok(_)) => panic!("refused, but accepted under lower limits: {err:?}"),
        // A document that does not parse is refused the same way whatever the limits;
        // one that parses is refused only as too complex.
        (Err(a), Err(b)) if code(a).as_deref() != Some(TOO_COMPLEX) => {
            assert_eq!(code(a), None, "{a:?}");
            assert_eq!(a.message, b.message);
        }
        (Ok(_), Err(b)) => assert_eq!(code(b).as_deref(), Some(TOO_COMPLEX), "{b:?}"),
        _ => {}
    }
});
