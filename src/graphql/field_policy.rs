//! The field-policy test: it walks the built schema, so a Query field without a cache
//! decision, or an entity type a cached field can return without declared tags, fails it
//! instead of becoming a silent stale read.
use super::schema::{builder, cache_declarations};
use super::types::tagged_types;
use crate::cache::FieldCache;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Every type's fields with their named (unwrapped) types, and unions' members.
const INTROSPECTION: &str = r"{
  __schema {
    queryType { name }
    types {
      name kind
      possibleTypes { name }
      fields(includeDeprecated: true) {
        name
        args { name }
        type { name ofType { name ofType { name ofType { name ofType { name } } } } }
      }
    }
  }
}";

struct SchemaType {
    kind: String,
    /// Field name and the name of the type it returns.
    fields: Vec<(String, String)>,
    /// Each field's argument names.
    arguments: BTreeMap<String, Vec<String>>,
    possible: Vec<String>,
}

/// The innermost name of a type reference (`[Product!]!` -> `Product`).
fn named(mut reference: &Json) -> Option<String> {
    loop {
        if let Some(name) = reference["name"].as_str() {
            return Some(name.to_owned());
        }
        reference = reference.get("ofType").filter(|t| !t.is_null())?;
    }
}

async fn schema_types() -> (String, BTreeMap<String, SchemaType>) {
    let schema = builder(super::Limits::default()).finish();
    let response = schema.execute(INTROSPECTION).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response.data.into_json().unwrap_or_else(|e| panic!("{e}"));
    let query = data["__schema"]["queryType"]["name"]
        .as_str()
        .unwrap_or("Query")
        .to_owned();
    let mut types = BTreeMap::new();
    for ty in data["__schema"]["types"].as_array().into_iter().flatten() {
        let list = |key: &str| ty[key].as_array().cloned().unwrap_or_default();
        let fields = list("fields")
            .iter()
            .filter_map(|f| Some((f["name"].as_str()?.to_owned(), named(&f["type"])?)))
            .collect();
        let arguments = list("fields")
            .iter()
            .filter_map(|f| {
                let args = f["args"].as_array()?.iter();
                let names = args.filter_map(|a| Some(a["name"].as_str()?.to_owned()));
                Some((f["name"].as_str()?.to_owned(), names.collect()))
            })
            .collect();
        let possible = list("possibleTypes")
            .iter()
            .filter_map(|t| Some(t["name"].as_str()?.to_owned()))
            .collect();
        if let Some(name) = ty["name"].as_str() {
            types.insert(
                name.to_owned(),
                SchemaType {
                    kind: ty["kind"].as_str().unwrap_or_default().to_owned(),
                    fields,
                    arguments,
                    possible,
                },
            );
        }
    }
    (query, types)
}

/// What is wrong with the declarations against the schema, one line per problem.
async fn problems() -> Vec<String> {
    let (query, types) = schema_types().await;
    let Some(root) = types.get(&query) else {
        return vec![format!("the schema has no {query} type")];
    };
    let mut problems = Vec::new();
    let mut declared: BTreeMap<&str, &FieldCache> = BTreeMap::new();
    for declaration in cache_declarations() {
        if declared.insert(declaration.field(), declaration).is_some() {
            problems.push(format!("Query.{} is declared twice", declaration.field()));
        }
    }
    for field in declared.keys() {
        if !root.fields.iter().any(|(name, _)| name == field) {
            problems.push(format!(
                "a cache declaration names Query.{field}, which the schema does not have"
            ));
        }
    }
    let tagged: BTreeSet<String> = tagged_types().into_iter().collect();
    for (field, returns) in &root.fields {
        if field.starts_with("__") {
            continue;
        }
        match declared.get(field.as_str()) {
            None => problems.push(format!(
                "Query.{field} has no cache declaration (FieldCache::cached or \
                 FieldCache::never beside its resolver)"
            )),
            Some(FieldCache::Never { .. }) => {}
            Some(FieldCache::Cached(cached)) => {
                let arguments = root.arguments.get(field).cloned().unwrap_or_default();
                for tag in cached.argument_tags {
                    if !arguments.iter().any(|a| a == tag.argument) {
                        problems.push(format!(
                            "Query.{field} takes a tag from argument `{}`, which it does not have",
                            tag.argument
                        ));
                    }
                }
                problems.extend(untagged_entities(field, returns, &types, &tagged));
            }
        }
    }
    problems
}

/// Object types with an `id` reachable from the cached `field` that declare no tags.
fn untagged_entities(
    field: &str,
    returns: &str,
    types: &BTreeMap<String, SchemaType>,
    tagged: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(returns.to_owned(), format!("Query.{field}"))]);
    while let Some((name, path)) = queue.pop_front() {
        if name.starts_with("__") || !seen.insert(name.clone()) {
            continue;
        }
        let Some(ty) = types.get(&name) else { continue };
        if ty.kind == "OBJECT"
            && ty.fields.iter().any(|(f, _)| f == "id")
            && !tagged.contains(&name)
        {
            problems.push(format!(
                "{name} (reached by {path}) has an id but declares no cache tags \
                 (impl CacheTags, listed in types::tagged_types)"
            ));
        }
        for (child, child_type) in &ty.fields {
            queue.push_back((child_type.clone(), format!("{path}.{child}")));
        }
        for member in &ty.possible {
            queue.push_back((member.clone(), format!("{path}(... on {member})")));
        }
    }
    problems
}

#[tokio::test]
async fn every_query_field_and_cached_entity_declares_its_cache_policy() {
    let problems = problems().await;
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test]
async fn the_walk_reaches_the_entities_of_cached_fields() {
    // The walk must see through lists, non-nulls, connections and nesting, or the test
    // above passes vacuously: `cart` reaches carts, customers, orders, sagas, products.
    let (query, types) = schema_types().await;
    let reached = |field: &str| -> String {
        let returns = types[&query]
            .fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, returns)| returns.clone())
            .unwrap_or_else(|| panic!("no Query.{field}"));
        untagged_entities(field, &returns, &types, &BTreeSet::new()).join("\n")
    };
    let from_cart = reached("cart");
    for entity in ["Cart", "Customer", "Order", "Saga", "Product", "Category"] {
        assert!(
            from_cart.contains(&format!("{entity} (reached by")),
            "{entity} not reached from cart:\n{from_cart}"
        );
    }
    let from_top = reached("topProducts");
    assert!(
        from_top.contains("Product (reached by Query.topProducts.product)"),
        "{from_top}"
    );
}
