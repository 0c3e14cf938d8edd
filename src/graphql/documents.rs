//! Parsed documents by their text. Clients send the same few documents over and over
//! (only the variables change), and parsing is the largest single cost of a request
//! the cache does not answer: a copy of an already parsed document costs a fraction of
//! it. Only documents that parsed and passed the query limits are kept, so a refused
//! document is refused again (parsed and measured anew) every time it is sent; and only
//! short ones, so the cache's memory is bounded by `CAPACITY × MAX_QUERY_BYTES` of text.
use super::limits::{Limits, measure_document};
use async_graphql::ServerResult;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Documents kept, least recently used first out.
const CAPACITY: NonZeroUsize = match NonZeroUsize::new(256) {
    Some(capacity) => capacity,
    None => NonZeroUsize::MIN,
};
/// Longer documents are parsed every time.
const MAX_QUERY_BYTES: usize = 4 * 1024;

pub struct DocumentCache {
    limits: Limits,
    parsed: Mutex<LruCache<String, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    /// A cache of documents measured against `limits` (the schema's, fixed for its life).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            parsed: Mutex::new(LruCache::new(CAPACITY)),
        }
    }

    /// The document `query` parses to, measured against the limits.
    pub fn parse(&self, query: &str) -> ServerResult<ExecutableDocument> {
        if let Some(doc) = self.kept(query) {
            return Ok(ExecutableDocument::clone(&doc));
        }
        let doc = measure_document(query, &self.limits)?;
        if query.len() <= MAX_QUERY_BYTES
            && let Ok(mut parsed) = self.parsed.lock()
        {
            parsed.put(query.to_owned(), Arc::new(doc.clone()));
        }
        Ok(doc)
    }

    fn kept(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.parsed.lock().ok()?.get(query).cloned()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.parsed.lock().map(|p| p.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_seen_before_is_the_same_document() {
        let cache = DocumentCache::new(Limits::default());
        let query = "query Q($f: Int) { products(first: $f) { edges { node { id } } } }";
        let first = cache.parse(query).map_err(|e| e.message);
        let again = cache.parse(query).map_err(|e| e.message);
        assert_eq!(cache.len(), 1);
        assert_eq!(
            format!("{first:?}"),
            format!("{:?}", async_graphql::parser::parse_query(query))
        );
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
    }

    #[test]
    fn refused_documents_are_not_kept_and_are_refused_every_time() {
        let cache = DocumentCache::new(Limits::default());
        let wide: String = (0..40).map(|i| format!("f{i}: __typename ")).collect();
        let wide = format!("{{ {wide} }}");
        for query in ["{ products(", wide.as_str()] {
            assert!(cache.parse(query).is_err());
            assert!(cache.parse(query).is_err(), "refused again: {query}");
        }
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn long_documents_are_not_kept_and_the_cache_is_bounded() {
        let cache = DocumentCache::new(Limits::default());
        let long = format!("{{ __typename }} # {}", "x".repeat(MAX_QUERY_BYTES));
        assert!(cache.parse(&long).is_ok());
        assert_eq!(cache.len(), 0);
        for i in 0..CAPACITY.get() + 10 {
            assert!(cache.parse(&format!("{{ a{i}: __typename }}")).is_ok());
        }
        assert_eq!(cache.len(), CAPACITY.get());
    }
}
