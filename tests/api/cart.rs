use crate::helpers::{TestApp, error_code, spawn_app, spawn_with, test_settings};
use serde_json::{Value, json};

const CART: &str =
    "{ cart { id itemCount total items { product { sku } quantity unitPrice lineTotal } } }";
const ADD: &str = "mutation($p: ID!, $q: Int!) { addToCart(productId: $p, quantity: $q) { itemCount total items { product { sku } quantity } } }";

async fn shopper(app: &TestApp) -> (String, String, String) {
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let lamp = app.create_product("LAMP", "Lamp", "20.00", 2).await;
    (app.customer(customer), mug, lamp)
}

#[tokio::test]
async fn add_merge_update_remove_and_clear() {
    let app = spawn_app().await;
    let (token, mug, lamp) = shopper(&app).await;
    let t = Some(token.as_str());
    app.data(t, ADD, json!({"p": mug, "q": 2})).await;
    let merged = app.data(t, ADD, json!({"p": mug, "q": 1})).await;
    assert_eq!(
        merged["addToCart"]["items"],
        json!([{"product": {"sku": "MUG"}, "quantity": 3}])
    );
    app.data(t, ADD, json!({"p": lamp, "q": 1})).await;

    let cart = app.data(t, CART, json!({})).await;
    assert_eq!(cart["cart"]["itemCount"], 4);
    assert_eq!(cart["cart"]["total"], "42.50");
    assert_eq!(cart["cart"]["items"][0]["lineTotal"], "22.50");

    let updated = app
        .data(
            t,
            "mutation($p: ID!) { updateCartItem(productId: $p, quantity: 5) { itemCount } }",
            json!({"p": mug}),
        )
        .await;
    assert_eq!(updated["updateCartItem"]["itemCount"], 6);
    let zero = app
        .data(t, "mutation($p: ID!) { updateCartItem(productId: $p, quantity: 0) { items { product { sku } } } }", json!({"p": mug}))
        .await;
    assert_eq!(
        zero["updateCartItem"]["items"],
        json!([{"product": {"sku": "LAMP"}}])
    );
    let removed = app
        .data(
            t,
            "mutation($p: ID!) { removeFromCart(productId: $p) { itemCount } }",
            json!({"p": lamp}),
        )
        .await;
    assert_eq!(removed["removeFromCart"]["itemCount"], 0);
    app.data(t, ADD, json!({"p": mug, "q": 1})).await;
    let cleared = app
        .data(
            t,
            "mutation { clearCart { itemCount total items { quantity } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        cleared["clearCart"],
        json!({"itemCount": 0, "total": "0.00", "items": []})
    );
}

#[tokio::test]
async fn bad_cart_input_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let (token, mug, lamp) = shopper(&app).await;
    let t = Some(token.as_str());
    app.data(t, ADD, json!({"p": mug, "q": 1})).await;
    for quantity in [0, -2] {
        let body = app.gql(t, ADD, json!({"p": mug, "q": quantity})).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "quantity {quantity}");
    }
    let negative = app
        .gql(
            t,
            "mutation($p: ID!) { updateCartItem(productId: $p, quantity: -1) { itemCount } }",
            json!({"p": mug}),
        )
        .await;
    assert_eq!(error_code(&negative), "BAD_USER_INPUT");
    let unknown = app.gql(t, ADD, json!({"p": "424242", "q": 1})).await;
    assert_eq!(error_code(&unknown), "NOT_FOUND");
    let malformed = app.gql(t, ADD, json!({"p": "not-an-id", "q": 1})).await;
    assert_eq!(error_code(&malformed), "BAD_USER_INPUT");
    let too_many = app.gql(t, ADD, json!({"p": lamp, "q": 3})).await;
    assert_eq!(error_code(&too_many), "OUT_OF_STOCK");
    // Adding on top of what the cart holds is checked against stock too.
    app.data(t, ADD, json!({"p": lamp, "q": 2})).await;
    let over = app.gql(t, ADD, json!({"p": lamp, "q": 1})).await;
    assert_eq!(error_code(&over), "OUT_OF_STOCK");

    let cart = app.data(t, CART, json!({})).await;
    assert_eq!(cart["cart"]["itemCount"], 3, "{cart}");
}

#[tokio::test]
async fn twenty_concurrent_adds_of_one_unit_end_with_twenty() {
    let app = spawn_app().await;
    let customer = app.create_customer("Busy", "busy@example.com").await;
    let product = app.create_product("BOLT", "Bolt", "0.10", 100).await;
    let token = app.customer(customer);
    let adds = (0..20).map(|_| {
        let (app, token, product) = (&app, token.clone(), product.clone());
        async move {
            app.gql(Some(&token), ADD, json!({"p": product, "q": 1}))
                .await
        }
    });
    let results: Vec<Value> = futures_util::future::join_all(adds).await;
    for body in &results {
        assert!(body.get("errors").is_none(), "{body}");
    }
    let cart = app.data(Some(&token), CART, json!({})).await;
    assert_eq!(cart["cart"]["items"][0]["quantity"], 20);
}

#[tokio::test]
async fn staff_edit_a_named_customers_cart_and_customers_cannot() {
    let app = spawn_app().await;
    let (token, mug, _) = shopper(&app).await;
    let other = app.create_customer("Bruno", "bruno@example.com").await;
    let staff = app.staff();
    let add = "mutation($p: ID!, $c: ID) { addToCart(productId: $p, customerId: $c) { customer { name } itemCount } }";
    let by_staff = app
        .data(Some(&staff), add, json!({"p": mug, "c": other.to_string()}))
        .await;
    assert_eq!(
        by_staff["addToCart"],
        json!({"customer": {"name": "Bruno"}, "itemCount": 1})
    );
    let by_customer = app
        .gql(Some(&token), add, json!({"p": mug, "c": other.to_string()}))
        .await;
    assert_eq!(error_code(&by_customer), "FORBIDDEN");
    let staff_without_customer = app.gql(Some(&staff), add, json!({"p": mug})).await;
    assert_eq!(error_code(&staff_without_customer), "BAD_USER_INPUT");
}

/// Each condition of the checked upsert refuses with its own error, in SPEC's order,
/// and a refused write leaves the cart as it was (its `updatedAt` included: read with
/// the cache off, so that a cached cart cannot hide a change).
#[tokio::test]
async fn refused_adds_and_updates_say_why_and_leave_the_cart_untouched() {
    let mut settings = test_settings().await;
    settings.cache_enabled = false;
    let app = spawn_with(settings).await;
    let (token, mug, lamp) = shopper(&app).await;
    let t = Some(token.as_str());
    let crate_of = app.create_product("CRATE", "Crate", "1.00", 20_000).await;
    let old = app.create_product("OLD", "Old", "1.00", 5).await;
    app.data(
        Some(&app.staff()),
        "mutation($id: ID!) { updateProduct(id: $id, input: {active: false}) { id } }",
        json!({"id": old}),
    )
    .await;
    app.data(t, ADD, json!({"p": lamp, "q": 2})).await;
    app.data(t, ADD, json!({"p": crate_of, "q": 9_999})).await;
    let before = app
        .data(t, "{ cart { updatedAt itemCount } }", json!({}))
        .await;

    let update =
        "mutation($p: ID!, $q: Int!) { updateCartItem(productId: $p, quantity: $q) { itemCount } }";
    let refusals = [
        (
            ADD,
            json!({"p": lamp, "q": 1}),
            "OUT_OF_STOCK",
            "only 2 of 'LAMP' in stock, 3 requested",
        ),
        (
            ADD,
            json!({"p": mug, "q": 11}),
            "OUT_OF_STOCK",
            "only 10 of 'MUG' in stock, 11 requested",
        ),
        (
            ADD,
            json!({"p": crate_of, "q": 2}),
            "BAD_USER_INPUT",
            "at most 10000 units",
        ),
        (ADD, json!({"p": old, "q": 1}), "NOT_FOUND", "not found"),
        (
            update,
            json!({"p": lamp, "q": 3}),
            "OUT_OF_STOCK",
            "3 requested",
        ),
        (
            update,
            json!({"p": mug, "q": 11}),
            "OUT_OF_STOCK",
            "11 requested",
        ),
        (update, json!({"p": old, "q": 1}), "NOT_FOUND", "not found"),
    ];
    for (query, vars, code, message) in refusals {
        let body = app.gql(t, query, vars.clone()).await;
        assert_eq!(error_code(&body), code, "{vars}: {body}");
        assert!(body.to_string().contains(message), "{vars}: {body}");
    }
    let after = app
        .data(t, "{ cart { updatedAt itemCount } }", json!({}))
        .await;
    assert_eq!(after, before);

    let customer_gone = app
        .gql(
            Some(&app.staff()),
            "mutation($p: ID!) { addToCart(productId: $p, customerId: \"424242\") { itemCount } }",
            json!({"p": mug}),
        )
        .await;
    assert_eq!(error_code(&customer_gone), "NOT_FOUND", "{customer_gone}");
    // Within the limits the same line takes the rest: 9 999 + 1, and stock exactly.
    let full = app.data(t, ADD, json!({"p": crate_of, "q": 1})).await;
    assert_eq!(full["addToCart"]["itemCount"], 10_002);
    let set = app.data(t, update, json!({"p": mug, "q": 10})).await;
    assert_eq!(set["updateCartItem"]["itemCount"], 10_012);
}
