//! Hostile input gets a clear error, changes nothing and never panics a connection.
use crate::helpers::{error_code, spawn_app};
use serde_json::json;

#[tokio::test]
async fn a_price_beyond_any_money_is_bad_user_input_not_a_dropped_connection() {
    let app = spawn_app().await;
    for price in [
        json!("79228162514264337593543950335"),
        json!(1e28),
        json!("-79228162514264337593543950335"),
    ] {
        let body = app
            .gql(
                None,
                "query($p: Decimal) { products(filter: {minPrice: $p}) { totalCount } }",
                json!({"p": price}),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{price}: {body}");
        let created = app
            .gql(
                Some(&app.staff()),
                "mutation($p: Decimal!) { createProduct(input: {sku: \"HUGE\", name: \"Huge\", price: $p, stock: 1}) { id } }",
                json!({"p": price}),
            )
            .await;
        assert_eq!(error_code(&created), "BAD_USER_INPUT", "{price}: {created}");
    }
    assert_eq!(product_count(&app).await, 0);
}

#[tokio::test]
async fn control_characters_are_refused_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let create = "mutation($n: String!) { createProduct(input: {sku: \"NUL-1\", name: $n, price: \"1.00\", stock: 1}) { id } }";
    for name in ["nul\u{0}byte", "bell\u{7}", "new\nline"] {
        let body = app
            .gql(Some(&app.staff()), create, json!({"n": name}))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("name:"), "{message}");
    }
    let search = app
        .gql(
            None,
            "query($s: String) { products(filter: {search: $s}) { totalCount } }",
            json!({"s": "a\u{0}b"}),
        )
        .await;
    assert_eq!(error_code(&search), "BAD_USER_INPUT", "{search}");
    let described = app
        .gql(
            Some(&app.staff()),
            "mutation { createProduct(input: {sku: \"DESC-1\", name: \"Desc\", description: \"two\\nlines\", price: \"1.00\", stock: 1}) { description } }",
            json!({}),
        )
        .await;
    assert_eq!(
        described["data"]["createProduct"]["description"], "two\nlines",
        "{described}"
    );
    assert_eq!(product_count(&app).await, 1);
}

#[tokio::test]
async fn values_that_do_not_coerce_carry_bad_user_input() {
    let app = spawn_app().await;
    let customer = app.create_customer("Hal", "hal@example.com").await;
    let token = app.customer(customer);
    let cases = [
        (
            "mutation { addToCart(productId: \"1\", quantity: 2147483648) { itemCount } }",
            json!({}),
        ),
        (
            "mutation($q: Int!) { addToCart(productId: \"1\", quantity: $q) { itemCount } }",
            json!({"q": 2_147_483_648_i64}),
        ),
        ("{ products(first: \"1\") { totalCount } }", json!({})),
        (
            "query($f: Int) { products(first: $f) { totalCount } }",
            json!({"f": "1"}),
        ),
    ];
    for (query, variables) in cases {
        let body = app.gql(Some(&token), query, variables).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
    }
    let unknown = app.gql(None, "{ noSuchField }", json!({})).await;
    assert_eq!(
        error_code(&unknown),
        "GRAPHQL_VALIDATION_FAILED",
        "{unknown}"
    );
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": "staff-1", "tenant": "default", "role": "STAFF", "iat": now, "exp": now + 7200, "nbf": now + 3600});
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::SECRET.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body = app
        .gql(Some(&early), "{ queueStats { queued } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test]
async fn without_introspection_errors_suggest_no_field_names() {
    let mut settings = crate::helpers::test_settings().await;
    settings.introspection = false;
    let app = crate::helpers::spawn_with(settings).await;
    let body = app.gql(None, "{ product { nam } }", json!({})).await;
    let text = body.to_string();
    assert!(!text.contains("Did you mean"), "{text}");
    let open = spawn_app().await;
    let suggested = open
        .gql(None, "{ products { edges { node { nam } } } }", json!({}))
        .await;
    assert!(
        suggested.to_string().contains("Did you mean"),
        "{suggested}"
    );
}

#[tokio::test]
async fn a_deactivated_product_does_not_exist_for_shoppers() {
    let app = spawn_app().await;
    let product = app.create_product("OLD", "Old", "1.00", 1).await;
    app.data(
        Some(&app.staff()),
        "mutation($id: ID!) { updateProduct(id: $id, input: {active: false}) { id } }",
        json!({"id": product}),
    )
    .await;
    let query = "query($id: ID!) { product(id: $id) { id active } }";
    let anonymous = app.data(None, query, json!({"id": product})).await;
    assert_eq!(anonymous["product"], serde_json::Value::Null);
    let staff = app
        .data(Some(&app.staff()), query, json!({"id": product}))
        .await;
    assert_eq!(staff["product"]["active"], false);
    // And the anonymous answer was not the staff's, cached.
    let again = app.data(None, query, json!({"id": product})).await;
    assert_eq!(again["product"], serde_json::Value::Null);
}

#[test]
fn settings_beyond_sane_bounds_are_refused_at_start() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: shopgraph::config::Settings,
    }
    for (flag, value) in [
        ("--saga-lease-secs", "18446744073709551615"),
        ("--saga-lease-secs", "9999999999"),
        ("--apq-ttl", "18446744073709551615"),
        ("--cache-negative-ttl", "18446744073709551615"),
        ("--db-statement-timeout-ms", "0"),
        ("--saga-max-attempts", "0"),
    ] {
        let parsed = Cli::try_parse_from(["shopgraph", flag, value]);
        let refused = match parsed {
            Err(_) => true,
            Ok(cli) => cli.settings.validate().is_err(),
        };
        assert!(refused, "{flag} {value} was accepted");
    }
}

fn too_complex(body: &serde_json::Value) {
    assert_eq!(error_code(body), "QUERY_TOO_COMPLEX", "{body}");
}

#[tokio::test]
async fn every_list_and_every_duplicate_is_priced() {
    let app = spawn_app().await;
    let customer = app.create_customer("Ivy", "ivy@example.com").await;
    let token = app.customer(customer);
    let nested_lists = "{ topProducts(limit: 100) { product { category { products(first: 100) { edges { node { id name sku description } } } } } } }";
    too_complex(&app.gql(None, nested_lists, json!({})).await);
    let orders = "{ orders(first: 100) { edges { node { items { product { category { products(first: 100) { edges { node { id } } } } } } } } } }";
    too_complex(&app.gql(Some(&token), orders, json!({})).await);
    let sagas = "{ sagas(first: 100) { edges { node { order { items { product { category { products(first: 50) { edges { node { id } } } } } } } } } } }";
    too_complex(&app.gql(Some(&app.staff()), sagas, json!({})).await);
    let own = "query($c: ID!) { customer(id: $c) { orders(first: 100) { edges { node { items { product { category { products(first: 100) { totalCount } } } } } } } } }";
    too_complex(
        &app.gql(Some(&token), own, json!({"c": customer.to_string()}))
            .await,
    );
    // The same field 300 times (no aliases needed): each copy costs its query.
    let copies = "products(first: 0) { totalCount } ".repeat(300);
    too_complex(
        &app.gql(None, &format!("{{ categories {{ {copies} }} }}"), json!({}))
            .await,
    );
    // Ordinary documents still pass.
    app.data(
        None,
        "{ products(first: 20) { totalCount edges { node { id name category { name } } } } }",
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn directives_are_limited_and_cannot_amplify_errors() {
    let app = spawn_app().await;
    let query = format!("{{ __typename {} }}", "@aa ".repeat(1000));
    let response = app.post(None, &[], &json!({"query": query})).await;
    let text = response.text().await.unwrap_or_default();
    assert!(text.len() < 1024, "{} bytes answered", text.len());
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    too_complex(&body);
}

#[tokio::test]
async fn a_batch_is_held_to_the_same_limits_item_by_item() {
    let app = spawn_app().await;
    let batch = json!([
        {"query": "{ __typename }"},
        {"query": "{ topProducts(limit: 100) { product { category { products(first: 100) { totalCount } } } } }"},
        {"query": format!("{{ __typename {} }}", "@skip(if: false) ".repeat(10))}
    ]);
    let answers: serde_json::Value = app
        .post(None, &[], &batch)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(answers[0]["data"]["__typename"], "Query", "{answers}");
    too_complex(&answers[1]);
    too_complex(&answers[2]);
}

const ADD: &str = "mutation($p: ID!) { addToCart(productId: $p, quantity: 1) { itemCount } }";

async fn replayed(
    app: &crate::helpers::TestApp,
    token: Option<&str>,
    key: &str,
    body: &serde_json::Value,
) -> (bool, serde_json::Value) {
    let response = app.post(token, &[("idempotency-key", key)], body).await;
    let replay = response.headers().get("idempotent-replayed").is_some();
    (replay, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn idempotency_keys_hold_for_batches_and_persisted_mutations() {
    let app = spawn_app().await;
    let product = app.create_product("KEY", "Key", "1.00", 50).await;
    let customer = app.create_customer("Jo", "jo@example.com").await;
    let token = app.customer(customer);
    let batch = json!([
        {"query": "{ __typename }"},
        {"query": ADD, "variables": {"p": product}}
    ]);
    let (first, body) = replayed(&app, Some(&token), "batch-1", &batch).await;
    assert!(!first);
    assert_eq!(body[1]["data"]["addToCart"]["itemCount"], 1, "{body}");
    let (again, body) = replayed(&app, Some(&token), "batch-1", &batch).await;
    assert!(again, "a batched mutation ran twice: {body}");

    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(ADD.as_bytes()));
    let register = json!({"query": ADD, "variables": {"p": product},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}});
    let (_, registered) = replayed(&app, Some(&token), "apq-0", &register).await;
    assert_eq!(
        registered["data"]["addToCart"]["itemCount"], 2,
        "{registered}"
    );
    let by_hash = json!({"variables": {"p": product},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}});
    let (first, body) = replayed(&app, Some(&token), "apq-1", &by_hash).await;
    assert!(!first);
    assert_eq!(body["data"]["addToCart"]["itemCount"], 3, "{body}");
    let (again, _) = replayed(&app, Some(&token), "apq-1", &by_hash).await;
    assert!(again, "a persisted mutation ran twice");
    let cart = app
        .data(Some(&token), "{ cart { itemCount } }", json!({}))
        .await;
    assert_eq!(cart["cart"]["itemCount"], 3);
}

#[tokio::test]
async fn anonymous_idempotency_keys_are_not_replayed_across_callers() {
    let app = spawn_app().await;
    let create = |email: &str| {
        json!({"query": "mutation($e: String!) { createCustomer(input: {name: \"Kim\", email: $e}) { id } }",
               "variables": {"e": email}})
    };
    // Two anonymous callers (one shared identity) reusing a key: both run, and
    // neither gets the other's answer.
    let (first, one) = replayed(&app, None, "signup", &create("kim1@example.com")).await;
    let (second, two) = replayed(&app, None, "signup", &create("kim2@example.com")).await;
    assert!(!first && !second);
    assert_ne!(
        one["data"]["createCustomer"]["id"],
        two["data"]["createCustomer"]["id"]
    );
}

#[tokio::test]
async fn expired_idempotency_records_are_purged() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
    use shopgraph::db::entities::idempotency_records;
    let app = spawn_app().await;
    for (key, age) in [
        ("old", chrono::Duration::hours(25)),
        ("new", chrono::Duration::hours(1)),
    ] {
        idempotency_records::ActiveModel {
            tenant_id: Set("default".into()),
            caller: Set("customer:1".into()),
            key: Set(key.into()),
            request_hash: Set("h".into()),
            response: Set(Some("{}".into())),
            created_at: Set(chrono::Utc::now() - age),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // The server's own purge (at start, then every ten minutes) may get there first.
    let purged = shopgraph::services::idempotency::purge_expired(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(purged <= 1);
    let left: Vec<String> = idempotency_records::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(left, vec!["new".to_owned()]);
}

/// Every product of the tenant, deactivated ones included (as staff).
async fn product_count(app: &crate::helpers::TestApp) -> serde_json::Value {
    let count = app
        .data(
            Some(&app.staff()),
            "{ products(filter: {includeInactive: true}) { totalCount } }",
            json!({}),
        )
        .await;
    count["products"]["totalCount"].clone()
}

#[tokio::test]
async fn cache_stats_count_only_the_callers_tenant() {
    let app = spawn_app().await;
    let rival = crate::helpers::tenant("rival");
    shopgraph::services::customers::ensure_tenant(&app.db, &rival, "Rival")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let products = "{ products(first: 5) { totalCount } }";
    for _ in 0..3 {
        app.gql_with(None, &[("x-tenant", "rival")], products, json!({}))
            .await;
    }
    let stats = "{ cacheStats { hits misses sets } }";
    let theirs = app
        .data(
            Some(&app.token_in("rival", shopgraph::auth::Role::Admin, "1")),
            stats,
            json!({}),
        )
        .await;
    // Two repeats hit (the whole response), the first request missed.
    let counted = &theirs["cacheStats"];
    assert!(
        counted["hits"].as_u64() >= Some(2) && counted["misses"].as_u64() >= Some(1),
        "{theirs}"
    );
    let ours = app.data(Some(&app.admin()), stats, json!({})).await;
    assert_eq!(
        ours["cacheStats"],
        json!({"hits": 0, "misses": 0, "sets": 0}),
        "another tenant's traffic counted: {ours}"
    );
}
