//! Cache keys: `{prefix}:t:{tenant}:{module}:{field}:{digest}` (the tenant written in
//! braces, see `tenant_prefix`), where the digest covers the field's arguments
//! (variables resolved), its whole selection set (fragments expanded) and, for private
//! fields, who asked. Equal keys mean equal results.
use super::backend::EntryInfo;
use async_graphql::parser::types::Directive;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, FragmentDefinition, OperationDefinition,
    Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value, Variables};

/// A value as written in a document: literal or variable.
type DocValue = async_graphql_value::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

/// What a request's document contributes to keys: its fragments and its variables with
/// the selected operation's defaults filled in.
#[derive(Default, Clone)]
pub struct DocumentContext {
    fragments: HashMap<Name, Positioned<FragmentDefinition>>,
    variables: Variables,
}

impl DocumentContext {
    pub fn new(
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Self {
        let mut variables = variables.clone();
        if let Some(operation) = selected_operation(doc, operation_name) {
            for definition in &operation.node.variable_definitions {
                let name = definition.node.name.node.clone();
                if let (false, Some(default)) = (
                    variables.contains_key(&name),
                    &definition.node.default_value,
                ) {
                    variables.insert(name, default.node.clone());
                }
            }
        }
        Self {
            fragments: doc.fragments.clone(),
            variables,
        }
    }

    fn resolve(&self, value: &Directive) -> String {
        let mut out = format!("@{}", value.name.node);
        self.write_arguments(&mut out, &value.arguments);
        out
    }

    fn write_arguments(
        &self,
        out: &mut String,
        arguments: &[(Positioned<Name>, Positioned<DocValue>)],
    ) {
        if arguments.is_empty() {
            return;
        }
        let mut args: Vec<(String, String)> = arguments
            .iter()
            .map(|(name, value)| {
                (
                    name.node.to_string(),
                    self.constant(&value.node).to_string(),
                )
            })
            .collect();
        args.sort();
        out.push('(');
        for (name, value) in args {
            let _ = write!(out, "{name}:{value},");
        }
        out.push(')');
    }

    /// A literal or variable argument as the constant the resolver will see.
    pub fn constant(&self, value: &DocValue) -> Value {
        value
            .clone()
            .into_const_with(|name| {
                Ok::<_, ()>(self.variables.get(&name).cloned().unwrap_or(Value::Null))
            })
            .unwrap_or(Value::Null)
    }

    fn write_selection(&self, out: &mut String, set: &SelectionSet, depth: usize) {
        if set.items.is_empty() || depth > 64 {
            return;
        }
        out.push('{');
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => self.write_field(out, &field.node, depth),
                Selection::FragmentSpread(spread) => {
                    for directive in &spread.node.directives {
                        out.push_str(&self.resolve(&directive.node));
                    }
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        let _ = write!(out, "...on {}", fragment.node.type_condition.node.on.node);
                        self.write_selection(out, &fragment.node.selection_set.node, depth + 1);
                    }
                }
                Selection::InlineFragment(inline) => {
                    out.push_str("...");
                    if let Some(condition) = &inline.node.type_condition {
                        let _ = write!(out, "on {}", condition.node.on.node);
                    }
                    for directive in &inline.node.directives {
                        out.push_str(&self.resolve(&directive.node));
                    }
                    self.write_selection(out, &inline.node.selection_set.node, depth + 1);
                }
            }
            out.push(' ');
        }
        out.push('}');
    }

    fn write_field(&self, out: &mut String, field: &Field, depth: usize) {
        if let Some(alias) = &field.alias {
            let _ = write!(out, "{}:", alias.node);
        }
        out.push_str(&field.name.node);
        self.write_arguments(out, &field.arguments);
        for directive in &field.directives {
            out.push_str(&self.resolve(&directive.node));
        }
        self.write_selection(out, &field.selection_set.node, depth + 1);
    }

    /// Whether the selected operation is a query whose root selections are all fields
    /// accepted by `cacheable` (fragments at the root count as not cacheable).
    pub fn only_fields(
        &self,
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        cacheable: impl Fn(&str) -> bool,
    ) -> bool {
        selected_operation(doc, operation_name).is_some_and(|op| {
            op.node.ty == async_graphql::parser::types::OperationType::Query
                && op
                    .node
                    .selection_set
                    .node
                    .items
                    .iter()
                    .all(|item| match &item.node {
                        Selection::Field(field) => cacheable(&field.node.name.node),
                        _ => false,
                    })
        })
    }

    /// The canonical text of a field: arguments resolved, fragments expanded.
    pub fn canonical_field(&self, field: &Field) -> String {
        let mut out = String::new();
        // The alias names the response key only; the cached value does not depend on it.
        out.push_str(&field.name.node);
        self.write_arguments(&mut out, &field.arguments);
        for directive in &field.directives {
            out.push_str(&self.resolve(&directive.node));
        }
        self.write_selection(&mut out, &field.selection_set.node, 1);
        out
    }
}

/// The operation a request runs: the named one, or the only one.
pub fn selected_operation<'a>(
    doc: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The start of every key of a tenant, `{prefix}:t:{{tenant}}`: the braces make the
/// tenant a Redis Cluster hash tag, so a tenant's entries, sequence and tag stamps share
/// one slot and each cache script (which derives tag keys from an entry) touches one.
pub fn tenant_prefix(prefix: &str, tenant: &str) -> String {
    format!("{prefix}:t:{{{tenant}}}")
}

pub fn entry_key(
    prefix: &str,
    tenant: &str,
    module: &str,
    field: &str,
    canonical: &str,
    identity: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    hasher.update([0]);
    hasher.update(identity.as_bytes());
    let digest = hex::encode(&hasher.finalize()[..16]);
    format!(
        "{}:{module}:{field}:{digest}",
        tenant_prefix(prefix, tenant)
    )
}

/// Describes an entry for `cacheEntries` from its key.
pub fn describe(key: &str, tags: &[String], bytes: usize, ttl_left: Duration) -> Option<EntryInfo> {
    let mut parts = key.split(':');
    let (_prefix, _t, _tenant, module) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(EntryInfo {
        key: key.to_owned(),
        module: module.to_owned(),
        tags: tags.to_vec(),
        ttl_seconds: i64::try_from(ttl_left.as_secs()).unwrap_or(i64::MAX),
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn canonical(query: &str, vars: serde_json::Value) -> String {
        let doc = parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        let ctx = DocumentContext::new(&doc, None, &Variables::from_json(vars));
        let DocumentOperations::Single(op) = &doc.operations else {
            panic!("one operation")
        };
        let Some(Selection::Field(field)) =
            op.node.selection_set.node.items.first().map(|s| &s.node)
        else {
            panic!("a field")
        };
        ctx.canonical_field(&field.node)
    }

    #[test]
    fn a_tenants_keys_share_one_cluster_slot() {
        let entry = entry_key("shop", "acme", "products", "products", "{ id }", "");
        assert!(
            entry.starts_with("shop:t:{acme}:products:products:"),
            "{entry}"
        );
        let slot = |key: &str| redis::cluster_routing::Slot::for_key(key);
        let seq = format!("{}:seq", tenant_prefix("shop", "acme"));
        let tag = format!("{}:tagseq:product:7", tenant_prefix("shop", "acme"));
        assert_eq!(slot(&entry), slot(&seq));
        assert_eq!(slot(&entry), slot(&tag));
        let other = format!("{}:seq", tenant_prefix("shop", "other"));
        assert_ne!(slot(&seq), slot(&other), "tenants spread over slots");
    }

    #[test]
    fn variables_and_literals_give_the_same_text() {
        let literal = canonical(
            "{ products(first: 5) { edges { node { id } } } }",
            serde_json::json!({}),
        );
        let variable = canonical(
            "query($n: Int) { products(first: $n) { edges { node { id } } } }",
            serde_json::json!({"n": 5}),
        );
        let defaulted = canonical(
            "query($n: Int = 5) { products(first: $n) { edges { node { id } } } }",
            serde_json::json!({}),
        );
        assert_eq!(literal, variable);
        assert_eq!(literal, defaulted);
    }

    #[test]
    fn fragments_expand_and_selections_differ() {
        let spread = canonical(
            "{ product(id: 1) { ...F } } fragment F on Product { id name }",
            serde_json::json!({}),
        );
        let other = canonical(
            "{ product(id: 1) { ...F } } fragment F on Product { id price }",
            serde_json::json!({}),
        );
        assert_ne!(spread, other);
        assert!(spread.contains("name"));
    }
}
