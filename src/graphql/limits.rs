//! Query limits: abusive documents are refused with `QUERY_TOO_COMPLEX` before any
//! resolver runs.
//!
//! Measured here, in `prepare_request` (after APQ has turned a hash into a document,
//! before async-graphql's own checks, some of which walk every fragment spread and so
//! take exponential time on a "fragment bomb"): fragment cycles, nesting, field depth,
//! fields with fragments expanded (a cheap lower bound of complexity), aliases per
//! document and root fields per operation. Every fragment is measured once (memoized),
//! so a document costs time linear in its size whatever its spreads.
//!
//! async-graphql then computes the real complexity (lists weighted by `first`/`limit`,
//! see the `complexity` attributes on list fields) and depth during validation; its
//! errors for those carry no code, so the `validation` hook adds `QUERY_TOO_COMPLEX`.
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, Request, ServerError, ServerResult, ValidationResult};
use async_graphql::{Variables, parser};
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

/// Limits that reject abusive documents before any resolver runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub aliases: usize,
    pub root_fields: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 12,
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

/// The complexity of a list field: its items' complexity times how many it may return
/// (`first`/`limit`, or the default when omitted), plus one for the field itself.
pub fn weighted(count: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let count = usize::try_from(count.unwrap_or(default)).unwrap_or(0);
    count.saturating_mul(child_complexity).saturating_add(1)
}

fn coded(message: impl Into<String>, code: &'static str) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    err.extensions = Some(extensions);
    err
}

fn too_complex(message: impl Into<String>) -> ServerError {
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

/// Adds the code to async-graphql's own limit errors (depth, complexity, recursion).
fn tag_limit_error(mut err: ServerError) -> ServerError {
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

pub struct QueryLimits(pub Limits);

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestLimits(self.0))
    }
}

struct RequestLimits(Limits);

#[async_trait::async_trait]
impl Extension for RequestLimits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let operation_name = request.operation_name.clone();
        // A persisted query arrives parsed (and with an empty `query`); any other is
        // parsed here, once: async-graphql reuses the document.
        if !request.query.is_empty() {
            let doc = parser::parse_query(&request.query).map_err(parse_error)?;
            request.set_parsed_query(doc);
        }
        let kind = {
            let doc = request.parsed_query()?;
            check(doc, &self.0)?;
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
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(tag_limit_error)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| errors.into_iter().map(tag_limit_error).collect())
    }
}

/// The measure of a selection set, fragments expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    /// Fields, every spread counted in full.
    fields: usize,
    aliases: usize,
    /// Fields at this level (a spread or inline fragment adds its own).
    top: usize,
    /// Deepest chain of fields.
    depth: usize,
    /// Deepest chain of selection sets and fragments.
    nest: usize,
}

impl Size {
    fn add(&mut self, other: Self) {
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.top = self.top.saturating_add(other.top);
        self.depth = self.depth.max(other.depth);
        self.nest = self.nest.max(other.nest);
    }
}

enum Memo {
    Measuring,
    Done(Size),
}

struct Walker<'a> {
    doc: &'a ExecutableDocument,
    fragments: HashMap<&'a str, Memo>,
    max_nest: usize,
}

impl<'a> Walker<'a> {
    fn too_deep() -> ServerError {
        too_complex("the document is nested too deeply")
    }

    fn selection_set(&mut self, set: &'a SelectionSet, level: usize) -> ServerResult<Size> {
        if level > self.max_nest {
            return Err(Self::too_deep());
        }
        let mut total = Size::default();
        for selection in &set.items {
            let size = match &selection.node {
                Selection::Field(field) => {
                    let children = &field.node.selection_set.node;
                    let child = if children.items.is_empty() {
                        Size::default()
                    } else {
                        let child = self.selection_set(children, level + 1)?;
                        Size {
                            nest: child.nest + 1,
                            ..child
                        }
                    };
                    Size {
                        fields: child.fields.saturating_add(1),
                        aliases: child.aliases + usize::from(field.node.alias.is_some()),
                        top: 1,
                        depth: child.depth + 1,
                        nest: child.nest,
                    }
                }
                Selection::InlineFragment(inline) => {
                    let inner = self.selection_set(&inline.node.selection_set.node, level + 1)?;
                    Size {
                        nest: inner.nest + 1,
                        ..inner
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let inner = self.fragment(spread.node.fragment_name.node.as_str(), level)?;
                    Size {
                        nest: inner.nest + 1,
                        ..inner
                    }
                }
            };
            if level + size.nest > self.max_nest {
                return Err(Self::too_deep());
            }
            total.add(size);
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, level: usize) -> ServerResult<Size> {
        match self.fragments.get(name) {
            Some(Memo::Done(size)) => return Ok(*size),
            Some(Memo::Measuring) => {
                return Err(too_complex(format!(
                    "fragment `{name}` spreads itself (directly or through other fragments)"
                )));
            }
            None => {}
        }
        // An unknown fragment measures nothing here; validation reports it.
        let Some(definition) = self.doc.fragments.get(name) else {
            return Ok(Size::default());
        };
        self.fragments.insert(name, Memo::Measuring);
        let size = self.selection_set(&definition.node.selection_set.node, level + 1)?;
        self.fragments.insert(name, Memo::Done(size));
        Ok(size)
    }
}

/// Refuses a document over any of the limits measured before validation.
pub fn check(doc: &ExecutableDocument, limits: &Limits) -> ServerResult<()> {
    let mut walker = Walker {
        doc,
        fragments: HashMap::new(),
        max_nest: limits.nesting(),
    };
    // Every fragment, used or not, so that no cycle escapes.
    for name in doc.fragments.keys() {
        walker.fragment(name.as_str(), 0)?;
    }
    let mut aliases = 0usize;
    for (_, operation) in doc.operations.iter() {
        let size = walker.selection_set(&operation.node.selection_set.node, 0)?;
        if size.depth > limits.depth {
            return Err(too_complex(format!(
                "the query is nested {} levels deep; the limit is {}",
                size.depth, limits.depth
            )));
        }
        if size.fields > limits.complexity {
            return Err(too_complex(format!(
                "the document selects {} fields once its fragments are expanded; the limit is {}",
                size.fields, limits.complexity
            )));
        }
        if size.top > limits.root_fields {
            return Err(too_complex(format!(
                "an operation selects {} root fields; the limit is {}",
                size.top, limits.root_fields
            )));
        }
        aliases = aliases.saturating_add(size.aliases);
    }
    if aliases > limits.aliases {
        return Err(too_complex(format!(
            "the document uses {aliases} aliases; the limit is {}",
            limits.aliases
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(query: &str) -> ServerResult<()> {
        let doc = parser::parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        check(&doc, &Limits::default())
    }

    fn refused(query: &str) -> String {
        match measure(query) {
            Ok(()) => panic!("accepted: {query}"),
            Err(err) => {
                let code = err
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .map(ToString::to_string);
                assert_eq!(code.as_deref(), Some("\"QUERY_TOO_COMPLEX\""));
                err.message
            }
        }
    }

    #[test]
    fn ordinary_documents_pass() {
        assert!(measure("{ products(first: 5) { edges { node { id name } } } }").is_ok());
        assert!(
            measure("query { a: product(id: 1) { ...P } b: product(id: 2) { ...P } } fragment P on Product { id name }")
                .is_ok()
        );
    }

    #[test]
    fn cycles_are_refused_even_in_unused_fragments() {
        assert!(
            refused("{ __typename } fragment A on Query { ...B } fragment B on Query { ...A }")
                .contains("spreads itself")
        );
        assert!(refused("{ ...A } fragment A on Query { ...A }").contains("spreads itself"));
    }

    #[test]
    fn aliases_are_counted_through_fragments() {
        let fragment: String = (0..10).map(|i| format!("a{i}: __typename ")).collect();
        let query = format!(
            "{{ x: __typename a {{ ...F }} b {{ ...F }} c {{ ...F }} }} fragment F on Query {{ {fragment} }}"
        );
        // 3 spreads of 10 aliases + 1.
        assert!(refused(&query).contains("31 aliases"));
    }

    #[test]
    fn a_fragment_bomb_is_measured_in_linear_time_and_refused() {
        let mut query = String::from("{ ...F25 } fragment F0 on Query { __typename }");
        for i in 1..=25 {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i - 1,
                i - 1
            ));
        }
        assert!(refused(&query).contains("fields once its fragments are expanded"));
    }

    #[test]
    fn depth_and_root_fields_are_bounded() {
        let deep = format!("{}{}", "{ a ".repeat(13), "}".repeat(13));
        assert!(refused(&deep).contains("13 levels deep"));
        let wide: String = (0..21).map(|i| format!("f{i} ")).collect();
        assert!(refused(&format!("{{ {wide} }}")).contains("21 root fields"));
    }

    #[test]
    fn limit_errors_from_async_graphql_get_the_code() {
        let tagged = tag_limit_error(ServerError::new("Query is too complex.", None));
        assert!(tagged.extensions.is_some());
        let other = tag_limit_error(ServerError::new("Unknown field \"x\"", None));
        assert!(other.extensions.is_none());
    }
}
