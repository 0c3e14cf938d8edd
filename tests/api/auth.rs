use crate::helpers::{SECRET, error_code, spawn_app};
use serde_json::json;
use shopgraph::auth::{JwtKeys, Role};
use shopgraph::services::customers::ensure_tenant;

#[tokio::test]
async fn anonymous_callers_read_the_catalog_but_cannot_write() {
    let app = spawn_app().await;
    app.create_product("P1", "Pen", "1.00", 1).await;
    let read = app
        .data(
            None,
            "{ products { totalCount } categories { id } }",
            json!({}),
        )
        .await;
    assert_eq!(read["products"]["totalCount"], 1);
    let write = app
        .gql(None, "mutation { createProduct(input: {sku: \"X\", name: \"X\", price: \"1\", stock: 1}) { id } }", json!({}))
        .await;
    assert_eq!(error_code(&write), "UNAUTHENTICATED");
    let cart = app.gql(None, "{ cart { id } }", json!({})).await;
    assert_eq!(error_code(&cart), "UNAUTHENTICATED");
}

#[tokio::test]
async fn customers_cannot_write_the_catalog_or_read_others() {
    let app = spawn_app().await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let bruno = app.create_customer("Bruno", "bruno@example.com").await;
    let token = app.customer(ana);
    let write = app
        .gql(
            Some(&token),
            "mutation { createCategory(input: {name: \"X\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&write), "FORBIDDEN");
    let other_cart = app
        .gql(
            Some(&token),
            "query($c: ID) { cart(customerId: $c) { id } }",
            json!({"c": bruno.to_string()}),
        )
        .await;
    assert_eq!(error_code(&other_cart), "FORBIDDEN");
    let other = app
        .gql(
            Some(&token),
            "query($c: ID!) { customer(id: $c) { email } }",
            json!({"c": bruno.to_string()}),
        )
        .await;
    assert_eq!(error_code(&other), "FORBIDDEN");
    let me = app
        .data(
            Some(&token),
            "query($c: ID!) { customer(id: $c) { email cart { itemCount } } }",
            json!({"c": ana.to_string()}),
        )
        .await;
    assert_eq!(
        me["customer"],
        json!({"email": "ana@example.com", "cart": {"itemCount": 0}})
    );
    let list = app
        .gql(Some(&token), "{ customers { totalCount } }", json!({}))
        .await;
    assert_eq!(error_code(&list), "FORBIDDEN");
    let staff_list = app
        .data(
            Some(&app.staff()),
            "{ customers { totalCount edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(staff_list["customers"]["totalCount"], 2);
}

#[tokio::test]
async fn expired_forged_and_malformed_tokens_are_refused() {
    let app = spawn_app().await;
    let expired = app
        .jwt
        .issue(
            &crate::helpers::tenant("default"),
            "1",
            Role::Admin,
            chrono::Duration::hours(-2),
        )
        .unwrap_or_default();
    let forged = JwtKeys::new(b"not-the-server-secret-at-all-000")
        .issue(
            &crate::helpers::tenant("default"),
            "1",
            Role::Admin,
            chrono::Duration::hours(1),
        )
        .unwrap_or_default();
    assert_ne!(
        forged,
        app.jwt
            .issue(
                &crate::helpers::tenant("default"),
                "1",
                Role::Admin,
                chrono::Duration::hours(1)
            )
            .unwrap_or_default()
    );
    for token in [expired.as_str(), forged.as_str(), "not.a.jwt"] {
        let response = app
            .post(Some(token), &[], &json!({"query": "{ categories { id } }"}))
            .await;
        assert_eq!(response.status(), 401);
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(error_code(&body), "UNAUTHENTICATED");
    }
    assert!(SECRET.len() >= 16);
}

#[tokio::test]
async fn tenants_never_see_each_others_products_customers_or_carts() {
    let app = spawn_app().await;
    ensure_tenant(&app.db, &crate::helpers::tenant("other"), "Other")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mine = app
        .create_product("SAME-SKU", "Default tenant lamp", "5.00", 3)
        .await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let staff_b = app.token_in("other", Role::Staff, "staff-b");
    // The same SKU and e-mail are free in another tenant.
    app.data(
        Some(&staff_b),
        "mutation { createProduct(input: {sku: \"SAME-SKU\", name: \"Other tenant lamp\", price: \"6.00\", stock: 1}) { id } }",
        json!({}),
    )
    .await;
    let theirs = app
        .data(None, "{ products { edges { node { name } } } }", json!({}))
        .await;
    assert_eq!(
        theirs["products"]["edges"],
        json!([{"node": {"name": "Default tenant lamp"}}])
    );
    let other_view = app
        .gql_with(
            None,
            &[("x-tenant", "other")],
            "{ products { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        other_view["data"]["products"]["edges"],
        json!([{"node": {"name": "Other tenant lamp"}}])
    );

    let cross_product = app
        .data(
            Some(&staff_b),
            "query($id: ID!) { product(id: $id) { id } }",
            json!({"id": mine}),
        )
        .await;
    assert_eq!(cross_product["product"], serde_json::Value::Null);
    let cross_customer = app
        .data(
            Some(&staff_b),
            "query($id: ID!) { customer(id: $id) { id } }",
            json!({"id": ana.to_string()}),
        )
        .await;
    assert_eq!(cross_customer["customer"], serde_json::Value::Null);
    let cross_cart = app
        .gql(
            Some(&staff_b),
            "query($id: ID) { cart(customerId: $id) { id } }",
            json!({"id": ana.to_string()}),
        )
        .await;
    assert_eq!(error_code(&cross_cart), "NOT_FOUND");
    let cross_add = app
        .gql(
            Some(&staff_b),
            "mutation($p: ID!, $c: ID) { addToCart(productId: $p, customerId: $c) { id } }",
            json!({"p": mine, "c": ana.to_string()}),
        )
        .await;
    assert_eq!(error_code(&cross_add), "NOT_FOUND");
    let customers = app
        .data(Some(&staff_b), "{ customers { totalCount } }", json!({}))
        .await;
    assert_eq!(customers["customers"]["totalCount"], 0);
}
