//! Issue #12, item 3: every object of every response has its keys in the order of the
//! selection set (CollectFields: aliases as written, fragments expanded in place,
//! duplicates merged at their first occurrence, skipped fields absent), whether its
//! values were resolved, replayed from the field cache, replayed whole from the response
//! cache, reached by hash (APQ) or pushed over a WebSocket.
//!
//! The bodies are read as the server wrote them: `serde_json::Value` sorts keys, so the
//! tests compare key skeletons taken from the raw text.
use crate::helpers::{TestApp, cache_outcome, spawn_app, spawn_with, test_settings};
use crate::saga_helpers::pending_saga;
use crate::ws::Socket;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt;

/// The keys of a JSON value in the order they were written, values left out:
/// `{"a":1,"b":[{"c":2,"d":null}]}` reads `{a b[{c d}]}`.
struct Keys(String);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeysVisitor)
    }
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Keys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Keys, E> {
        Ok(Keys(String::new()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Keys, E> {
        Ok(Keys(String::new()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Keys, E> {
        Ok(Keys(String::new()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Keys, E> {
        Ok(Keys(String::new()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Keys, E> {
        Ok(Keys(String::new()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Keys, E> {
        Ok(Keys(String::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Keys, A::Error> {
        let mut out = String::from("[");
        while let Some(Keys(item)) = items.next_element()? {
            out.push_str(&item);
        }
        out.push(']');
        Ok(Keys(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Keys, A::Error> {
        let mut out = String::from("{");
        while let Some(key) = entries.next_key::<String>()? {
            if out.len() > 1 {
                out.push(' ');
            }
            out.push_str(&key);
            let Keys(value) = entries.next_value()?;
            out.push_str(&value);
        }
        out.push('}');
        Ok(Keys(out))
    }
}

/// A GraphQL response, its `data` read as keys.
#[derive(Deserialize)]
struct Body {
    data: Keys,
}

/// The keys of the `data` of a response body.
fn data_keys(body: &str) -> String {
    match serde_json::from_str::<Body>(body) {
        Ok(Body { data: Keys(keys) }) => keys,
        Err(err) => panic!("not a response with data ({err}): {body}"),
    }
}

/// Root fields: `products` runs SQL (and `totalCount` a count) while `__typename` is
/// answered at once, so completion order differs from this one at the root and in the
/// connection; `edges` is selected twice (the second adds `id` at the end of `node`),
/// `name` twice, `hidden` is skipped, `shown` included.
const ORDERED: &str = r"
query Ordered($id: ID!, $yes: Boolean!) {
  products(first: 5, sort: NAME) { ...Page }
  __typename
  one: product(id: $id) {
    shown: stock @include(if: $yes)
    sku
    ... on Product { name price }
    id
    hidden: stock @skip(if: $yes)
    sku
    category { slug name ...CategoryName }
  }
  categories { ...CategoryName slug id }
}
fragment Page on ProductConnection {
  totalCount
  edges { node { ...Item } cursor }
  pageInfo { hasNextPage endCursor }
  edges { cursor node { id } }
}
fragment Item on Product { name category { name id } ... on Product { sku name } price }
fragment CategoryName on Category { name }
";

const NODE: &str = "{node{name category{name id} sku price id} cursor}";
const ONE: &str = "one{shown sku name price id category{slug name}}";
const CATEGORY: &str = "{name slug id}";

/// The keys `ORDERED` must come back with, for two products and one category.
fn ordered_keys() -> String {
    format!(
        "{{products{{totalCount edges[{NODE}{NODE}] pageInfo{{hasNextPage endCursor}}}} __typename {ONE} categories[{CATEGORY}]}}"
    )
}

/// The same without `__typename`: every root field is cacheable, so the response as a
/// whole is.
fn whole_query() -> String {
    ORDERED.replacen("  __typename\n", "", 1)
}

fn whole_keys() -> String {
    ordered_keys().replacen(" __typename", "", 1)
}

/// A shop of two products in one category; returns the app and a product id.
async fn shop() -> (TestApp, String) {
    let app = spawn_app().await;
    let category = app.create_category("Kitchen").await;
    let mut first = String::new();
    for (sku, name) in [("MUG", "Mug"), ("BOWL", "Bowl")] {
        let data = app
            .data(
                Some(&app.staff()),
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
                json!({"input": {"sku": sku, "name": name, "price": "7.50", "stock": 3, "categoryId": category}}),
            )
            .await;
        if first.is_empty() {
            first = crate::helpers::id_of(&data["createProduct"]);
        }
    }
    (app, first)
}

/// POSTs `body`; returns the raw body and whether the whole-response cache answered.
async fn post_raw(app: &TestApp, extra: &[(&str, &str)], body: &Value) -> (String, bool) {
    let response = app.post(None, extra, body).await;
    assert_eq!(response.status(), 200);
    let hit = response
        .headers()
        .get("x-cache")
        .is_some_and(|v| v == "hit");
    let text = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    (text, hit)
}

#[tokio::test]
async fn responses_keep_the_selection_set_order_on_a_miss_and_on_field_cache_hits() {
    let (app, id) = shop().await;
    let request = json!({"query": ORDERED, "variables": {"id": id, "yes": true}});
    for expected in ["miss", "hit"] {
        let (body, _) = post_raw(&app, &[("x-debug", "1")], &request).await;
        let parsed: Value = serde_json::from_str(&body).unwrap_or_default();
        for field in ["products", "one", "categories"] {
            assert_eq!(cache_outcome(&parsed, field), expected, "{field}: {body}");
        }
        assert_eq!(data_keys(&body), ordered_keys(), "{expected}: {body}");
    }
}

#[tokio::test]
async fn a_response_served_whole_from_the_cache_keeps_the_selection_set_order() {
    let (app, id) = shop().await;
    let request = json!({"query": whole_query(), "variables": {"id": id, "yes": true}});
    let mut hits = 0;
    // The first sight of a document teaches it, the second stores it, the third hits.
    for _ in 0..3 {
        let (body, hit) = post_raw(&app, &[], &request).await;
        hits += usize::from(hit);
        assert_eq!(data_keys(&body), whole_keys(), "{body}");
    }
    assert_eq!(
        hits, 1,
        "the third request was not a whole-response cache hit"
    );
}

#[tokio::test]
async fn get_batched_and_persisted_requests_keep_the_selection_set_order() {
    let (app, id) = shop().await;
    let variables = json!({"id": id, "yes": true}).to_string();
    let get = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", ORDERED), ("variables", &variables)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let get = get.text().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data_keys(&get), ordered_keys(), "GET: {get}");

    let single = json!({"query": ORDERED, "variables": {"id": id, "yes": true}});
    let (batch, _) = post_raw(&app, &[], &json!([single, single])).await;
    let bodies: Vec<Body> = serde_json::from_str(&batch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bodies.len(), 2, "{batch}");
    for Body { data: Keys(keys) } in bodies {
        assert_eq!(keys, ordered_keys(), "batch: {batch}");
    }

    let hash = hex::encode(Sha256::digest(ORDERED.as_bytes()));
    let persisted = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let register =
        json!({"query": ORDERED, "variables": {"id": id, "yes": true}, "extensions": persisted});
    let (registered, _) = post_raw(&app, &[], &register).await;
    assert_eq!(data_keys(&registered), ordered_keys(), "{registered}");
    let by_hash = json!({"variables": {"id": id, "yes": true}, "extensions": persisted});
    let (by_hash, _) = post_raw(&app, &[], &by_hash).await;
    assert_eq!(data_keys(&by_hash), ordered_keys(), "by hash: {by_hash}");
}

#[tokio::test]
async fn subscription_payloads_keep_the_selection_set_order() {
    let mut settings = test_settings().await;
    // No worker: the saga stays PENDING, and its first payload is its current state.
    settings.worker_concurrency = 0;
    let app = spawn_with(settings).await;
    let (token, saga) = pending_saga(&app).await;
    let mut socket = Socket::ready(&app, Some(&token)).await;
    // `steps` loads rows, so it completes after the fields read from the saga itself.
    let updates = r"subscription($id: ID!) {
      sagaUpdates(id: $id) {
        steps { status name attempts }
        id
        ... on Saga { status kind }
        order { id }
        steps { error }
      }
    }";
    socket.subscribe("1", updates, json!({"id": saga})).await;
    let message = socket.next_text().await;
    #[derive(Deserialize)]
    struct Next {
        payload: Body,
    }
    let Next {
        payload: Body { data: Keys(keys) },
    } = serde_json::from_str(&message).unwrap_or_else(|e| panic!("{e}: {message}"));
    let parsed: Value = serde_json::from_str(&message).unwrap_or_default();
    let steps = parsed["payload"]["data"]["sagaUpdates"]["steps"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(steps > 0, "{message}");
    let step = "{status name attempts error}".repeat(steps);
    assert_eq!(
        keys,
        format!("{{sagaUpdates{{steps[{step}] id status kind order}}}}"),
        "{message}"
    );
}
