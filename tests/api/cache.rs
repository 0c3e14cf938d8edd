use crate::helpers::{
    TestApp, cache_outcome as outcome, error_code, spawn_app, spawn_with, test_settings,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{Notify, oneshot};

const PRODUCTS: &str =
    "query($n: Int) { products(first: $n) { edges { node { id name price updatedAt } } } }";

fn statements(body: &Value) -> u64 {
    body["extensions"]["debug"]["dbStatements"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

async fn seeded() -> TestApp {
    let app = spawn_app().await;
    app.create_product("MUG", "Mug", "7.50", 10).await;
    app.create_product("LAMP", "Lamp", "19.99", 5).await;
    app
}

#[tokio::test]
async fn a_second_identical_query_is_a_hit_that_runs_no_sql_and_returns_the_same_data() {
    let app = seeded().await;
    let first = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    assert_eq!(outcome(&first, "products"), "miss");
    assert!(statements(&first) >= 1);
    let second = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    assert_eq!(outcome(&second, "products"), "hit");
    assert_eq!(statements(&second), 0);
    // Decimals and timestamps survive the round trip exactly.
    assert_eq!(first["data"], second["data"]);
    assert_eq!(
        second["data"]["products"]["edges"][0]["node"]["price"],
        "19.99"
    );
}

#[tokio::test]
async fn a_different_selection_set_or_variables_is_a_different_entry() {
    let app = seeded().await;
    app.debug(None, PRODUCTS, json!({"n": 5})).await;
    let other_selection = app
        .debug(
            None,
            "query($n: Int) { products(first: $n) { edges { node { id sku } } } }",
            json!({"n": 5}),
        )
        .await;
    assert_eq!(outcome(&other_selection, "products"), "miss");
    let other_variables = app.debug(None, PRODUCTS, json!({"n": 1})).await;
    assert_eq!(outcome(&other_variables, "products"), "miss");
    assert_eq!(
        other_variables["data"]["products"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // The same field written with a literal instead of a variable is the same entry.
    let literal = app
        .debug(
            None,
            "{ products(first: 5) { edges { node { id name price updatedAt } } } }",
            json!({}),
        )
        .await;
    assert_eq!(outcome(&literal, "products"), "hit");
}

#[tokio::test]
async fn private_entries_never_cross_users() {
    let app = seeded().await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let bruno = app.create_customer("Bruno", "bruno@example.com").await;
    let product = app
        .data(
            None,
            "{ products(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let product = product["products"]["edges"][0]["node"]["id"].clone();
    let ana_token = app.customer(ana);
    app.data(
        Some(&ana_token),
        "mutation($p: ID!) { addToCart(productId: $p) { id } }",
        json!({"p": product}),
    )
    .await;
    let q = "{ cart { id itemCount } }";
    let ana_cart = app.debug(Some(&ana_token), q, json!({})).await;
    assert_eq!(outcome(&ana_cart, "cart"), "miss");
    let bruno_cart = app.debug(Some(&app.customer(bruno)), q, json!({})).await;
    assert_eq!(outcome(&bruno_cart, "cart"), "miss");
    assert_eq!(
        bruno_cart["data"]["cart"],
        json!({"id": bruno.to_string(), "itemCount": 0})
    );
    let ana_again = app.debug(Some(&ana_token), q, json!({})).await;
    assert_eq!(outcome(&ana_again, "cart"), "hit");
    assert_eq!(ana_again["data"]["cart"]["itemCount"], 1);
}

#[tokio::test]
async fn tenants_never_share_entries() {
    let app = seeded().await;
    shopgraph::services::customers::ensure_tenant(
        &app.db,
        &crate::helpers::tenant("other"),
        "Other",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let default = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    let other = app
        .gql_with(
            None,
            &[("x-debug", "1"), ("x-tenant", "other")],
            PRODUCTS,
            json!({"n": 5}),
        )
        .await;
    assert_eq!(outcome(&other, "products"), "miss");
    assert_eq!(other["data"]["products"]["edges"], json!([]));
    assert_ne!(default["data"], other["data"]);
}

#[tokio::test]
async fn each_mutation_invalidates_what_it_changed_and_nothing_else() {
    let app = seeded().await;
    let staff = app.staff();
    let ids = app
        .data(
            None,
            "{ products(sort: NAME) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let (lamp, mug) = (
        ids["products"]["edges"][0]["node"]["id"].clone(),
        ids["products"]["edges"][1]["node"]["id"].clone(),
    );
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let ana_token = app.customer(ana);
    app.data(
        Some(&ana_token),
        "mutation($p: ID!) { addToCart(productId: $p) { id } }",
        json!({"p": lamp}),
    )
    .await;

    let one = "query($id: ID!) { product(id: $id) { name price } }";
    let cart = "{ cart { total items { product { price } } } }";
    async fn warm_all(
        app: &TestApp,
        ana_token: &str,
        lamp: &Value,
        mug: &Value,
        one: &str,
        cart: &str,
    ) {
        app.debug(None, one, json!({"id": lamp})).await;
        app.debug(None, one, json!({"id": mug})).await;
        app.debug(None, "{ categories { name } }", json!({})).await;
        app.debug(None, PRODUCTS, json!({"n": 5})).await;
        app.debug(Some(ana_token), cart, json!({})).await;
    }
    warm_all(&app, &ana_token, &lamp, &mug, one, cart).await;

    // A price change drops that product, the lists, and the carts that embed it.
    app.data(
        Some(&staff),
        "mutation($id: ID!) { updateProduct(id: $id, input: {price: \"25.00\"}) { id } }",
        json!({"id": lamp}),
    )
    .await;
    let lamp_after = app.debug(None, one, json!({"id": lamp})).await;
    assert_eq!(
        (
            outcome(&lamp_after, "product"),
            lamp_after["data"]["product"]["price"].clone()
        ),
        ("miss".into(), json!("25.00"))
    );
    let mug_after = app.debug(None, one, json!({"id": mug})).await;
    assert_eq!(outcome(&mug_after, "product"), "hit");
    let categories_after = app.debug(None, "{ categories { name } }", json!({})).await;
    assert_eq!(outcome(&categories_after, "categories"), "hit");
    let list_after = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    assert_eq!(outcome(&list_after, "products"), "miss");
    let cart_after = app.debug(Some(&ana_token), cart, json!({})).await;
    assert_eq!(
        (
            outcome(&cart_after, "cart"),
            cart_after["data"]["cart"]["total"].clone()
        ),
        ("miss".into(), json!("25.00"))
    );

    // A cart change drops only that cart.
    warm_all(&app, &ana_token, &lamp, &mug, one, cart).await;
    app.data(
        Some(&ana_token),
        "mutation($p: ID!) { addToCart(productId: $p) { id } }",
        json!({"p": mug}),
    )
    .await;
    let cart_changed = app.debug(Some(&ana_token), cart, json!({})).await;
    assert_eq!(
        (
            outcome(&cart_changed, "cart"),
            cart_changed["data"]["cart"]["total"].clone()
        ),
        ("miss".into(), json!("32.50"))
    );
    for (query, field, vars) in [
        (one, "product", json!({"id": lamp})),
        (PRODUCTS, "products", json!({"n": 5})),
        ("{ categories { name } }", "categories", json!({})),
    ] {
        let body = app.debug(None, query, vars).await;
        assert_eq!(
            outcome(&body, field),
            "hit",
            "{field} should survive a cart change"
        );
    }

    // A new category drops the category list only.
    app.create_category("Lighting").await;
    let categories_new = app.debug(None, "{ categories { name } }", json!({})).await;
    assert_eq!(outcome(&categories_new, "categories"), "miss");
    assert_eq!(
        categories_new["data"]["categories"],
        json!([{"name": "Lighting"}])
    );
    let mug_still = app.debug(None, one, json!({"id": mug})).await;
    assert_eq!(outcome(&mug_still, "product"), "hit");

    // Deleting a product drops it (the next read is null) and the carts holding it.
    app.data(
        Some(&staff),
        "mutation($id: ID!) { deleteProduct(id: $id) }",
        json!({"id": mug}),
    )
    .await;
    let mug_gone = app.debug(None, one, json!({"id": mug})).await;
    assert_eq!(mug_gone["data"]["product"], Value::Null);
    let cart_without = app.debug(Some(&ana_token), cart, json!({})).await;
    assert_eq!(cart_without["data"]["cart"]["total"], "25.00");
}

#[tokio::test]
async fn a_slow_reader_cannot_store_a_value_it_read_before_a_write() {
    let app = seeded().await;
    let (loaded_tx, loaded_rx) = oneshot::channel::<()>();
    let loaded_tx = Arc::new(std::sync::Mutex::new(Some(loaded_tx)));
    let proceed = Arc::new(Notify::new());
    let hook_proceed = proceed.clone();
    // Pause the first products load between its database read and its cache store.
    app.cache.set_store_hook(Some(Arc::new(move |key: String| {
        let (loaded_tx, proceed) = (loaded_tx.clone(), hook_proceed.clone());
        Box::pin(async move {
            if key.contains(":products:products:") {
                let sender = loaded_tx.lock().ok().and_then(|mut s| s.take());
                if let Some(sender) = sender {
                    let _ = sender.send(());
                    proceed.notified().await;
                }
            }
        })
    })));
    let slow_reader = {
        let app = app.clone_handle();
        tokio::spawn(async move { app.debug(None, PRODUCTS, json!({"n": 5})).await })
    };
    loaded_rx
        .await
        .unwrap_or_else(|e| panic!("the reader never loaded: {e}"));
    let id = app
        .data(
            None,
            "{ products(sort: NAME) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let lamp = id["products"]["edges"][0]["node"]["id"].clone();
    app.data(
        Some(&app.staff()),
        "mutation($id: ID!) { updateProduct(id: $id, input: {name: \"Desk lamp\"}) { id } }",
        json!({"id": lamp}),
    )
    .await;
    proceed.notify_one();
    let stale = slow_reader.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stale.to_string().contains("\"Lamp\""),
        "the slow reader read before the write: {stale}"
    );
    app.cache.set_store_hook(None);
    let after = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    assert_eq!(
        outcome(&after, "products"),
        "miss",
        "the stale value was stored"
    );
    assert!(after.to_string().contains("Desk lamp"), "{after}");
}

#[tokio::test]
async fn a_hundred_concurrent_misses_on_one_key_cause_one_load() {
    let app = seeded().await;
    // A lookup Redis does not answer within its timeout bypasses the cache by design
    // (and loads alone); on a starved machine that can happen to a whole round, which
    // then says nothing about sharing loads. So rounds are run, each on a cold key,
    // until one has every lookup answered.
    for first in 3..9 {
        let query = format!("{{ products(first: {first}) {{ edges {{ node {{ id name }} }} }} }}");
        let requests = (0..100).map(|_| {
            let app = &app;
            let query = query.as_str();
            async move { app.debug(None, query, json!({})).await }
        });
        let bodies: Vec<Value> = futures_util::future::join_all(requests).await;
        if bodies.iter().any(|b| outcome(b, "products") == "bypass") {
            continue;
        }
        let total: u64 = bodies.iter().map(statements).sum();
        let misses = bodies
            .iter()
            .filter(|b| outcome(b, "products") == "miss")
            .count();
        assert_eq!(total, 1, "statements across 100 requests");
        assert_eq!(misses, 1);
        assert!(bodies.iter().all(|b| b["data"] == bodies[0]["data"]));
        return;
    }
    panic!("no round had every cache lookup answered in time");
}

#[tokio::test]
async fn negative_results_are_cached_and_dropped_by_the_products_tag() {
    let app = seeded().await;
    let q = "{ product(id: \"4242\") { id } }";
    let first = app.debug(None, q, json!({})).await;
    assert_eq!(
        (first["data"]["product"].clone(), outcome(&first, "product")),
        (Value::Null, "miss".into())
    );
    let second = app.debug(None, q, json!({})).await;
    assert_eq!(outcome(&second, "product"), "hit");
    assert_eq!(statements(&second), 0);
}

#[tokio::test]
async fn cache_control_follows_scope_and_max_age() {
    let app = seeded().await;
    let get = app
        .client
        .get(app.url("/graphql?query=%7Bcategories%7Bname%7D%7D"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get.headers()["cache-control"], "public, max-age=300");
    let mixed = app
        .post(
            None,
            &[],
            &json!({"query": "{ categories { name } products { totalCount } }"}),
        )
        .await;
    assert_eq!(mixed.headers()["cache-control"], "private, max-age=60");
    let uncacheable = app
        .post(
            None,
            &[],
            &json!({"query": "{ categories { name } __typename }"}),
        )
        .await;
    assert_eq!(uncacheable.headers()["cache-control"], "no-store");
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let cart = app
        .post(
            Some(&app.customer(ana)),
            &[],
            &json!({"query": "{ cart { id } }"}),
        )
        .await;
    assert_eq!(cart.headers()["cache-control"], "private, max-age=1800");
}

#[tokio::test]
async fn disabled_cache_bypasses_and_says_so() {
    let mut settings = test_settings().await;
    settings.cache_enabled = false;
    let app = spawn_with(settings).await;
    app.create_product("P", "P", "1.00", 1).await;
    let first = app.debug(None, PRODUCTS, json!({})).await;
    let second = app.debug(None, PRODUCTS, json!({})).await;
    assert_eq!(outcome(&second, "products"), "bypass");
    assert!(statements(&second) >= 1);
    assert_eq!(first["data"], second["data"]);
    let health: Value = app
        .client
        .get(app.url("/health/cache"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(health["status"], "disabled");
}

#[tokio::test]
async fn admins_see_stats_and_entries_and_invalidate_by_module_or_tag() {
    let app = seeded().await;
    app.debug(None, PRODUCTS, json!({"n": 5})).await;
    app.debug(None, PRODUCTS, json!({"n": 5})).await;
    app.debug(None, "{ categories { name } }", json!({})).await;
    let admin = app.admin();
    let stats = app.data(Some(&admin), "{ cacheStats { hits misses hitRatio sets state backend modules { module hits misses } } }", json!({})).await;
    let stats = &stats["cacheStats"];
    assert_eq!(
        (
            stats["hits"].as_u64(),
            stats["misses"].as_u64(),
            stats["sets"].as_u64()
        ),
        (Some(1), Some(2), Some(2))
    );
    assert_eq!(stats["hitRatio"].as_f64(), Some(1.0 / 3.0));
    assert_eq!(stats["state"], "OK");
    let entries = app
        .data(
            Some(&admin),
            "{ cacheEntries { key module tags ttlSeconds bytes } }",
            json!({}),
        )
        .await;
    let entries = entries["cacheEntries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| {
        e["key"]
            .as_str()
            .is_some_and(|k| k.contains(":t:{default}:"))
            && e["bytes"].as_i64() > Some(0)
    }));
    let by_module = app
        .data(
            Some(&admin),
            "mutation { invalidateCache(module: \"categories\") }",
            json!({}),
        )
        .await;
    assert_eq!(by_module["invalidateCache"], 1);
    let products_still = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    assert_eq!(outcome(&products_still, "products"), "hit");
    let all = app
        .data(Some(&admin), "mutation { invalidateCache }", json!({}))
        .await;
    // In process the count is exact (the products entry); Redis invalidates in O(1) and
    // counts what was stored under the tag since its last invalidation, which includes
    // the categories entry already made stale above.
    let expected = if app.settings.redis_url.is_some() {
        2
    } else {
        1
    };
    assert_eq!(all["invalidateCache"], expected);
    let products_gone = app.debug(None, PRODUCTS, json!({"n": 5})).await;
    assert_eq!(outcome(&products_gone, "products"), "miss");
    let refused = app
        .gql(
            Some(&app.staff()),
            "mutation { invalidateCache }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&refused), "FORBIDDEN");
    let unknown = app
        .gql(
            Some(&admin),
            "mutation { invalidateCache(module: \"nope\") }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&unknown), "BAD_USER_INPUT");
}

async fn post_json(app: &TestApp, token: Option<&str>, query: &str) -> (bool, Value) {
    let response = app.post(token, &[], &json!({ "query": query })).await;
    let hit = response
        .headers()
        .get("x-cache")
        .is_some_and(|v| v == "hit");
    (hit, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn whole_responses_are_served_from_the_cache_and_dropped_with_their_fields() {
    let app = seeded().await;
    let q = "{ products(first: 5) { edges { node { id name price } } } categories { name } }";
    // First sight teaches the instance the document is cacheable; the second stores it.
    let (first, _) = post_json(&app, None, q).await;
    let (second, stored) = post_json(&app, None, q).await;
    let (third, served) = post_json(&app, None, q).await;
    assert_eq!((first, second, third), (false, false, true));
    assert_eq!(served, stored);

    let lamp = stored["data"]["products"]["edges"][0]["node"]["id"].clone();
    app.data(
        Some(&app.staff()),
        "mutation($id: ID!) { updateProduct(id: $id, input: {price: \"1.23\"}) { id } }",
        json!({"id": lamp}),
    )
    .await;
    let (after, fresh) = post_json(&app, None, q).await;
    assert!(
        !after,
        "a response embedding the changed product was served"
    );
    assert_eq!(
        fresh["data"]["products"]["edges"][0]["node"]["price"],
        "1.23"
    );
    let (again, cached) = post_json(&app, None, q).await;
    assert!(again);
    assert_eq!(cached, fresh);

    // A document with an uncached root field is never served whole.
    let mixed = "{ categories { name } __typename }";
    for _ in 0..3 {
        assert!(!post_json(&app, None, mixed).await.0);
    }
}

#[tokio::test]
async fn whole_private_responses_never_cross_users() {
    let app = seeded().await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let bruno = app.create_customer("Bruno", "bruno@example.com").await;
    let product = app
        .data(
            None,
            "{ products(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let product = product["products"]["edges"][0]["node"]["id"].clone();
    let ana_token = app.customer(ana);
    app.data(
        Some(&ana_token),
        "mutation($p: ID!) { addToCart(productId: $p) { id } }",
        json!({"p": product}),
    )
    .await;
    let q = "{ cart { id itemCount } }";
    for _ in 0..2 {
        post_json(&app, Some(&ana_token), q).await;
    }
    let (ana_hit, ana_cart) = post_json(&app, Some(&ana_token), q).await;
    assert!(ana_hit);
    assert_eq!(ana_cart["data"]["cart"]["itemCount"], 1);
    let (bruno_hit, bruno_cart) = post_json(&app, Some(&app.customer(bruno)), q).await;
    assert!(!bruno_hit);
    assert_eq!(
        bruno_cart["data"]["cart"],
        json!({"id": bruno.to_string(), "itemCount": 0})
    );
}

#[tokio::test]
async fn a_cart_embedding_orders_is_never_stored_and_one_without_them_is() {
    // Orders and sagas move with the checkout worker, which invalidates no tag for
    // them, so they declare themselves uncacheable; an empty order page too, or the
    // first order would never show.
    let app = seeded().await;
    let ana = app.customer(app.create_customer("Ana", "ana@example.com").await);
    let with_orders =
        "{ cart { itemCount customer { orders { totalCount edges { node { status } } } } } }";
    let without = "{ cart { itemCount customer { name } } }";
    for query in [with_orders, without] {
        let first = app.debug(Some(&ana), query, json!({})).await;
        assert_eq!(outcome(&first, "cart"), "miss", "{query}");
    }
    let again = app.debug(Some(&ana), with_orders, json!({})).await;
    assert_eq!(outcome(&again, "cart"), "miss");
    assert_eq!(again["data"]["cart"]["customer"]["orders"]["totalCount"], 0);
    let again = app.debug(Some(&ana), without, json!({})).await;
    assert_eq!(outcome(&again, "cart"), "hit");
}

/// Through a long outage the outbox stays small: past 1 000 rows waiting for one tenant,
/// they are replaced by one invalidation of the tenant's whole cache.
#[tokio::test]
async fn a_crowded_outbox_becomes_one_invalidation_of_the_tenants_whole_cache() {
    use sea_orm::{EntityTrait, PaginatorTrait, Set};
    use shopgraph::db::entities::cache_outbox;
    let app = spawn_app().await;
    let id = app.create_product("MUG", "Mug", "7.00", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    app.debug(None, q, json!({"id": id})).await;
    assert_eq!(
        outcome(&app.debug(None, q, json!({"id": id})).await, "product"),
        "hit"
    );
    // Rows of another product, waiting since long before any instance's grace period.
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let rows = (0..1_001).map(|_| cache_outbox::ActiveModel {
        tenant_id: Set("default".into()),
        tags: Set(r#"["product:999999"]"#.into()),
        created_at: Set(long_ago),
        ..Default::default()
    });
    cache_outbox::Entity::insert_many(rows)
        .exec_without_returning(&app.db)
        .await
        .unwrap_or_else(|e| panic!("write outbox rows: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let waiting = cache_outbox::Entity::find()
            .count(&app.db)
            .await
            .unwrap_or_else(|e| panic!("count outbox rows: {e}"));
        if waiting == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} outbox rows still waiting"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // No row named this product: only the whole-tenant invalidation can have dropped it.
    assert_eq!(
        outcome(&app.debug(None, q, json!({"id": id})).await, "product"),
        "miss"
    );
}

/// A checkout moves stock only: entries that show what it sold without its stock (names,
/// prices, unfiltered lists) stay cached through it, and those showing stock do not.
#[tokio::test]
async fn a_checkout_drops_what_shows_stock_and_keeps_names_and_prices_cached() {
    use crate::saga_helpers::place_and_finish;
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.00", 5).await;
    let buyer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(buyer);
    let untouched = [
        "query($id: ID!) { product(id: $id) { name price } }",
        "{ products(first: 10) { edges { node { name price } } } }",
    ];
    let stocked = "query($id: ID!) { product(id: $id) { stock updatedAt } }";
    for query in untouched.iter().chain([&stocked]) {
        app.debug(None, query, json!({"id": mug})).await;
    }
    let saga = place_and_finish(&app, &token, &mug, 2).await;
    assert_eq!(saga["status"], "COMPLETED");
    for query in untouched {
        let body = app.debug(None, query, json!({"id": mug})).await;
        let field = if query.contains("products(") {
            "products"
        } else {
            "product"
        };
        assert_eq!(outcome(&body, field), "hit", "{query}");
    }
    let body = app.debug(None, stocked, json!({"id": mug})).await;
    assert_eq!(outcome(&body, "product"), "miss");
    assert_eq!(body["data"]["product"]["stock"], 3);
}
