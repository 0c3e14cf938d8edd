//! Responses in the order of the selection set. async-graphql resolves an object's
//! fields concurrently and writes each into the response as it completes, so keys come
//! back in completion order; the GraphQL spec (CollectFields, "Serialized Map
//! Ordering") asks for the selection set's. `ResponseOrder` works out, once per
//! operation, the order of the response keys at every level (a `Shape`) and puts each
//! object of the finished response in it. The gateway applies it to every response as
//! it leaves the schema: every HTTP answer (single or batched, GET or POST, persisted or
//! not) and what is kept of it (the whole-response cache, idempotency records) is
//! ordered, a field-cache hit, replayed into the response, is ordered with it, and so is
//! every event of a subscription.
//!
//! The schema has no interfaces or unions, so every object's type is the declared type
//! of its field and a type condition is met when it names that type; an abstract type
//! would need the shape chosen per object by its runtime type.
use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, FragmentDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::{InputType, Name, Positioned, Response, Value, Variables};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The response keys of one object in CollectFields order, each with the shape of its
/// value (empty for a leaf).
#[derive(Debug, Default, PartialEq)]
struct Shape(Vec<(Name, Shape)>);

impl Shape {
    /// Moves the keys of `value` (an object, or a list of them at any depth) into this
    /// order. Keys the shape does not name stay after the others, in their order.
    fn apply(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                let mut next = 0;
                for (key, shape) in &self.0 {
                    let Some(index) = map.get_index_of(key) else {
                        continue;
                    };
                    if index != next {
                        map.move_index(index, next);
                    }
                    if !shape.0.is_empty()
                        && let Some((_, value)) = map.get_index_mut(next)
                    {
                        shape.apply(value);
                    }
                    next += 1;
                }
            }
            Value::List(items) => items.iter_mut().for_each(|item| self.apply(item)),
            _ => {}
        }
    }
}

/// Walks a document into shapes, as CollectFields does.
struct Collector<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    registry: &'a Registry,
    /// Deeper than the executor goes (the schema's recursion limit): an invalid,
    /// cyclic document is walked before validation refuses it.
    max_depth: usize,
}

/// Fields gathered under one response key, in document order.
type Grouped<'a> = Vec<(&'a Name, Vec<&'a Field>)>;

impl<'a> Collector<'a> {
    fn shape(&self, type_name: Option<&str>, sets: &[&'a SelectionSet], depth: usize) -> Shape {
        if depth > self.max_depth {
            return Shape::default();
        }
        let mut grouped: Grouped<'a> = Vec::new();
        let mut visited = Vec::new();
        for set in sets {
            self.collect(type_name, set, &mut grouped, &mut visited);
        }
        let keys = grouped
            .into_iter()
            .map(|(key, fields)| {
                let children: Vec<&SelectionSet> = fields
                    .iter()
                    .map(|field| &field.selection_set.node)
                    .filter(|set| !set.items.is_empty())
                    .collect();
                let shape = if children.is_empty() {
                    Shape::default()
                } else {
                    let child_type = type_name.and_then(|t| self.field_type(t, fields[0]));
                    self.shape(child_type, &children, depth + 1)
                };
                (key.clone(), shape)
            })
            .collect();
        Shape(keys)
    }

    fn collect(
        &self,
        type_name: Option<&str>,
        set: &'a SelectionSet,
        grouped: &mut Grouped<'a>,
        visited: &mut Vec<&'a Name>,
    ) {
        for selection in &set.items {
            if self.skipped(selection.node.directives()) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let key = &field.node.response_key().node;
                    match grouped.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(&field.node),
                        None => grouped.push((key, vec![&field.node])),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if visited.contains(&name) {
                        continue;
                    }
                    visited.push(name);
                    if let Some(fragment) = self.fragments.get(name)
                        && applies(type_name, Some(&fragment.node.type_condition.node.on.node))
                    {
                        self.collect(
                            type_name,
                            &fragment.node.selection_set.node,
                            grouped,
                            visited,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    let condition = inline.node.type_condition.as_ref();
                    if applies(type_name, condition.map(|c| &c.node.on.node)) {
                        self.collect(type_name, &inline.node.selection_set.node, grouped, visited);
                    }
                }
            }
        }
    }

    /// As the executor decides it (`remove_skipped_selection` in async-graphql), so that
    /// the keys ordered here are the keys it wrote: `if` from the request's variables,
    /// false when it does not read as a boolean.
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|directive| {
            let include = match directive.node.name.node.as_str() {
                "skip" => false,
                "include" => true,
                _ => return false,
            };
            let Some(condition) = directive.node.get_argument("if") else {
                return false;
            };
            let value = condition
                .node
                .clone()
                .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()))
                .unwrap_or_default();
            let value: bool = InputType::parse(Some(value)).unwrap_or_default();
            include != value
        })
    }

    /// The named type a field of `type_name` returns (`None` for introspection fields,
    /// which the registry does not list: their fragments are then taken as they come).
    fn field_type(&self, type_name: &str, field: &Field) -> Option<&'a str> {
        let field = self
            .registry
            .types
            .get(type_name)?
            .field_by_name(&field.name.node)?;
        Some(MetaTypeName::concrete_typename(&field.ty))
    }
}

/// Whether a type condition holds for an object of `type_name` (concrete types only:
/// see the module header). An unknown type takes every fragment, as validation let it.
fn applies(type_name: Option<&str>, condition: Option<&Name>) -> bool {
    match (type_name, condition) {
        (Some(type_name), Some(condition)) => condition.as_str() == type_name,
        _ => true,
    }
}

fn plan(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    registry: &Registry,
    max_depth: usize,
) -> Option<Shape> {
    let operation = crate::cache::selected_operation(doc, operation_name)?;
    let root = match operation.node.ty {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let collector = Collector {
        fragments: &doc.fragments,
        variables,
        registry,
        max_depth,
    };
    Some(collector.shape(root, &[&operation.node.selection_set.node], 0))
}

/// One operation's response order: worked out from its document before it runs, then
/// applied to what it answers, by the operation's limits (`limits::OperationLimits`).
#[derive(Default)]
pub struct ResponseOrder(OnceLock<Shape>);

impl ResponseOrder {
    /// `max_depth`: the schema's recursion limit.
    pub fn learn(
        &self,
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
        registry: &Registry,
        max_depth: usize,
    ) {
        if let Some(shape) = plan(doc, operation_name, variables, registry, max_depth) {
            let _ = self.0.set(shape);
        }
    }

    /// Orders a response: a query's or mutation's, or one event of a subscription.
    pub fn apply(&self, response: &mut Response) {
        if let Some(shape) = self.0.get() {
            shape.apply(&mut response.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(query: &str, variables: Variables) -> Shape {
        let doc = async_graphql::parser::parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry {
            query_type: "Query".into(),
            ..Registry::default()
        };
        plan(&doc, None, &variables, &registry, 32).unwrap_or_default()
    }

    fn keys(shape: &Shape) -> String {
        let inner: Vec<String> = shape
            .0
            .iter()
            .map(|(key, child)| {
                if child.0.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}{}", keys(child))
                }
            })
            .collect();
        format!("{{{}}}", inner.join(" "))
    }

    #[test]
    fn fragments_expand_in_place_and_duplicates_merge_at_their_first_occurrence() {
        let shape = shape_of(
            "query($no: Boolean!) { b: x { p } ...F a @skip(if: $no) c @include(if: $no) b: x { q } ...F }
             fragment F on Query { d ... { b: x { r } e } }",
            Variables::from_json(serde_json::json!({"no": false})),
        );
        assert_eq!(keys(&shape), "{b{p r q} d e a}");
    }

    #[test]
    fn a_cyclic_document_is_walked_no_deeper_than_the_limit() {
        let shape = shape_of(
            "{ ...A } fragment A on Query { x { ...B } } fragment B on Query { y { ...A } }",
            Variables::default(),
        );
        assert!(!shape.0.is_empty());
    }

    #[test]
    fn objects_and_lists_of_them_take_the_shape() {
        let shape = shape_of("{ a { y x } b }", Variables::default());
        let mut value = Value::from_json(serde_json::json!({
            "b": 1, "extra": 2, "a": [{"x": 1, "y": 2}, [{"x": 3, "y": 4}]]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        // `from_json` sorts the keys: put them in a known wrong order first.
        if let Value::Object(map) = &mut value {
            map.sort_keys();
            map.reverse();
        }
        shape.apply(&mut value);
        let written = serde_json::to_string(&value).unwrap_or_default();
        assert_eq!(
            written,
            r#"{"a":[{"y":2,"x":1},[{"y":4,"x":3}]],"b":1,"extra":2}"#
        );
    }
}
