//! Query limits: abusive documents are refused with `QUERY_TOO_COMPLEX` before any
//! resolver runs.
//!
//! The document is measured (`measure.rs`) when the gateway admits the request: after
//! APQ has turned a hash into a document, and before async-graphql's own checks,
//! some of which walk every fragment spread and so take exponential time on a "fragment
//! bomb". The same step notes the operation's type for the HTTP layer and refuses a
//! mutation sent by GET.
//!
//! An operation's limits also hold its response order (`selection_order`), worked out
//! from the document measured here and applied to the response and to every event of a
//! subscription.
//!
//! async-graphql then computes the real complexity (lists weighted by `first`/`limit`,
//! see the `complexity` attributes on list fields) and depth during validation; its
//! errors for those carry no code, so `tag_limit_error` adds `QUERY_TOO_COMPLEX`.
use super::documents::DocumentCache;
use super::selection_order::ResponseOrder;
use super::socket_budget::{SocketBudget, SubscriptionSlot};
use async_graphql::Response;
use async_graphql::parser;
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::registry::Registry;
use async_graphql::{ErrorExtensionValues, Request, ServerError, ServerResult};
use std::any::TypeId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

/// Limits that reject abusive documents before any resolver runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Off: documents are not measured (the batch and body limits still apply).
    pub enabled: bool,
    pub depth: usize,
    pub complexity: usize,
    pub aliases: usize,
    pub root_fields: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            enabled: true,
            // GraphiQL's introspection query nests 15 levels (TypeRef's `ofType` chain).
            depth: 16,
            complexity: 5_000,
            aliases: 30,
            root_fields: 20,
            introspection: true,
        }
    }
}

impl Limits {
    /// Nesting of selection sets and fragments (what async-graphql calls recursive
    /// depth); also bounds the recursion of the measuring walk.
    pub fn nesting(&self) -> usize {
        self.depth.saturating_mul(2).max(32)
    }
}

/// What the HTTP handler learns about one request: the operation's type (for metrics)
/// and whether it was a mutation refused because it came by GET.
#[derive(Debug, Default)]
pub struct OperationTrace {
    read_only: bool,
    kind: OnceLock<OperationType>,
    refused_mutation: AtomicBool,
}

impl OperationTrace {
    /// `read_only`: the request came by GET, so mutations are refused.
    pub fn new(read_only: bool) -> Self {
        Self {
            read_only,
            ..Self::default()
        }
    }

    pub fn kind(&self) -> Option<OperationType> {
        self.kind.get().copied()
    }

    pub fn refused_mutation(&self) -> bool {
        self.refused_mutation.load(Ordering::Relaxed)
    }
}

/// What a field that runs its own query costs besides its items: a list asked for
/// zero items still runs SQL, so 300 copies of `products(first: 0)` (or aliases of it)
/// cost what they run.
pub const QUERY_COST: usize = 20;

/// The complexity of a list field: its items' complexity times how many it may return
/// (`first`/`limit`, or the default when omitted), plus its own query.
pub fn weighted(count: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let count = usize::try_from(count.unwrap_or(default)).unwrap_or(0);
    count
        .saturating_mul(child_complexity)
        .saturating_add(QUERY_COST)
}

fn coded(message: impl Into<String>, code: &'static str) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    err.extensions = Some(extensions);
    err
}

pub(super) fn too_complex(message: impl Into<String>) -> ServerError {
    coded(message, TOO_COMPLEX)
}

/// A document nested beyond what the parser accepts is refused like any too-deep one,
/// without echoing it back.
fn parse_error(err: parser::Error) -> ServerError {
    match &err {
        parser::Error::RecursionLimitExceeded => too_complex("the document is nested too deeply"),
        parser::Error::Syntax { message, .. } if message.contains("stack limit reached") => {
            too_complex("the document is nested too deeply")
        }
        _ => ServerError::from(err),
    }
}

/// Parses a document and measures it against `limits`, as every request's document is
/// before validation; public so that the fuzz targets measure what the server measures.
pub fn measure_document(query: &str, limits: &Limits) -> ServerResult<ExecutableDocument> {
    let doc = parser::parse_query(query).map_err(parse_error)?;
    super::measure::check(&doc, limits)?;
    Ok(doc)
}

/// Adds the code to async-graphql's own limit errors (depth, complexity, recursion).
pub(super) fn tag_limit_error(mut err: ServerError) -> ServerError {
    let is_limit = err.extensions.is_none()
        && (err.message == "Query is too complex."
            || err.message == "Query is nested too deep."
            || err.message.starts_with("The recursion depth of the query"));
    if is_limit {
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", TOO_COMPLEX);
        err.extensions = Some(extensions);
    }
    err
}

/// The limits of a schema, holding the documents it parsed.
pub struct QueryLimits {
    limits: Limits,
    documents: Arc<DocumentCache>,
}

impl QueryLimits {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            documents: Arc::new(DocumentCache::new(limits)),
        }
    }

    pub(super) fn per_operation(&self) -> OperationLimits {
        OperationLimits {
            limits: self.limits,
            documents: self.documents.clone(),
            subscription: Mutex::default(),
            order: ResponseOrder::default(),
        }
    }
}

/// One operation's limits. They live as long as the operation's response stream, so a
/// subscription's slot on its socket is held here until the stream ends.
pub(super) struct OperationLimits {
    limits: Limits,
    documents: Arc<DocumentCache>,
    subscription: Mutex<Option<SubscriptionSlot>>,
    order: ResponseOrder,
}

impl OperationLimits {
    /// Measures the request's document (parsing it, or copying one parsed before), notes
    /// its operation type, refuses a mutation sent by GET, takes a socket's subscription
    /// slot (`socket`: the operation came on one) and learns the response order.
    pub(super) fn prepare(
        &self,
        socket: Option<&SocketBudget>,
        mut request: Request,
        registry: &Registry,
    ) -> ServerResult<Request> {
        // An operation on a WebSocket is refused by the rate limit before it costs a parse.
        if let Some(budget) = socket {
            budget.admit()?;
        }
        // Name and variables come out of the request while its document is borrowed
        // (`parsed_query` takes it mutably), instead of copies per request.
        let operation_name = request.operation_name.take();
        // A persisted query arrives parsed (and with an empty `query`); any other is
        // parsed here (or copied from the documents parsed before): async-graphql
        // reuses the document.
        if request.query.is_empty() {
            super::measure::check(request.parsed_query()?, &self.limits)?;
        } else {
            let doc = self.documents.parse(&request.query)?;
            request.set_parsed_query(doc);
        }
        let kind = {
            let doc = request.parsed_query()?;
            crate::cache::selected_operation(doc, operation_name.as_deref()).map(|op| op.node.ty)
        };
        let trace = request
            .data
            .get(&TypeId::of::<Arc<OperationTrace>>())
            .and_then(|d| d.downcast_ref::<Arc<OperationTrace>>());
        if let (Some(trace), Some(kind)) = (trace, kind) {
            let _ = trace.kind.set(kind);
            if trace.read_only && kind == OperationType::Mutation {
                trace.refused_mutation.store(true, Ordering::Relaxed);
                return Err(coded("mutations must be sent with POST", "BAD_USER_INPUT"));
            }
        }
        if let Some(budget) = socket
            && kind == Some(OperationType::Subscription)
        {
            let slot = budget.open_subscription()?;
            if let Ok(mut held) = self.subscription.lock() {
                *held = Some(slot);
            }
        }
        let variables = std::mem::take(&mut request.variables);
        self.order.learn(
            request.parsed_query()?,
            operation_name.as_deref(),
            &variables,
            registry,
            self.limits.nesting(),
        );
        request.operation_name = operation_name;
        request.variables = variables;
        Ok(request)
    }

    /// Puts a response's fields (or a subscription event's) in the order of the
    /// selection set.
    pub(super) fn order(&self, response: &mut Response) {
        self.order.apply(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_errors_from_async_graphql_get_the_code() {
        let tagged = tag_limit_error(ServerError::new("Query is too complex.", None));
        assert!(tagged.extensions.is_some());
        let other = tag_limit_error(ServerError::new("Unknown field \"x\"", None));
        assert!(other.extensions.is_none());
    }
}
