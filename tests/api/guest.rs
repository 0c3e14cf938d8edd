//! Guest carts and guest checkout over HTTP: an anonymous `addToCart` answers a cart
//! token that `X-Cart-Token` sends back; sign-in and sign-up merge the guest cart;
//! a guest checks out with an e-mail through the same saga; carts expire and are
//! purged; creating them is limited per client.
use crate::helpers::{TestApp, error_code, spawn_app, spawn_with, test_settings};
use crate::saga_helpers::{SAGA, is_terminal, payments_of, stock};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use shopgraph::db::entities::{customers, guest_carts, orders};
use std::time::{Duration, Instant};

const CART: &str = "itemCount total cartToken items { product { id } quantity }";
const SESSION: &str = "accessToken customer { id email }";

fn header(token: &str) -> [(&str, &str); 1] {
    [("x-cart-token", token)]
}

/// `addToCart` as an anonymous caller, with the guest token if any: the whole body.
async fn guest_add(app: &TestApp, token: Option<&str>, product: &str, quantity: i32) -> Value {
    let query = format!(
        "mutation($p: ID!, $q: Int!) {{ addToCart(productId: $p, quantity: $q) {{ {CART} }} }}"
    );
    let vars = json!({ "p": product, "q": quantity });
    match token {
        Some(token) => app.gql_with(None, &header(token), &query, vars).await,
        None => app.gql(None, &query, vars).await,
    }
}

/// A new guest cart holding `quantity` of `product`; its token.
async fn new_guest_cart(app: &TestApp, product: &str, quantity: i32) -> String {
    let body = guest_add(app, None, product, quantity).await;
    body["data"]["addToCart"]["cartToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no cart token: {body}"))
        .to_owned()
}

async fn guest_cart(app: &TestApp, token: &str) -> Value {
    let query = format!("{{ cart {{ {CART} }} }}");
    app.gql_with(None, &header(token), &query, json!({})).await
}

async fn sign_up(app: &TestApp, email: &str, cart_token: Option<&str>) -> Value {
    let query =
        format!("mutation($input: SignUpInput!) {{ signUp(input: $input) {{ {SESSION} }} }}");
    let input = json!({ "input": { "email": email, "name": "Ana", "password": "correct horse" } });
    let extra: Vec<(&str, &str)> = cart_token
        .map(|t| ("x-cart-token", t))
        .into_iter()
        .collect();
    app.gql_with(None, &extra, &query, input).await
}

async fn sign_in(app: &TestApp, email: &str, cart_token: Option<&str>) -> Value {
    let query = format!(
        "mutation($e: String!, $p: String!) {{ signIn(email: $e, password: $p) {{ {SESSION} }} }}"
    );
    let vars = json!({ "e": email, "p": "correct horse" });
    let extra: Vec<(&str, &str)> = cart_token
        .map(|t| ("x-cart-token", t))
        .into_iter()
        .collect();
    app.gql_with(None, &extra, &query, vars).await
}

fn access(session: &Value, field: &str) -> String {
    session["data"][field]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {session}"))
        .to_owned()
}

async fn own_cart(app: &TestApp, access_token: &str) -> Value {
    let query = format!("{{ cart {{ {CART} }} }}");
    app.data(Some(access_token), &query, json!({})).await["cart"].clone()
}

fn quantity_of(cart: &Value, product: &str) -> i64 {
    cart["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|line| line["product"]["id"] == product)
        .and_then(|line| line["quantity"].as_i64())
        .unwrap_or(0)
}

async fn guest_rows(app: &TestApp) -> u64 {
    customers::Entity::find()
        .filter(customers::Column::Guest.eq(true))
        .count(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_anonymous_add_to_cart_creates_a_guest_cart_its_token_reads_and_edits() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 10).await;
    let desk = app.create_product("DESK-1", "Desk", "100.00", 5).await;

    let created = guest_add(&app, None, &lamp, 2).await;
    let token = created["data"]["addToCart"]["cartToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    assert!(token.starts_with("gct_") && token.len() == 47, "{token}");
    assert_eq!(created["data"]["addToCart"]["itemCount"], 2);

    let again = guest_add(&app, Some(&token), &desk, 1).await;
    assert_eq!(again["data"]["addToCart"]["itemCount"], 3, "{again}");
    assert!(
        again["data"]["addToCart"]["cartToken"].is_null(),
        "the token is shown once: {again}"
    );
    let read = guest_cart(&app, &token).await;
    assert_eq!(read["data"]["cart"]["total"], "125.00", "{read}");

    let update = "mutation($p: ID!) { updateCartItem(productId: $p, quantity: 4) { itemCount } }";
    let updated = app
        .gql_with(None, &header(&token), update, json!({ "p": lamp }))
        .await;
    assert_eq!(
        updated["data"]["updateCartItem"]["itemCount"], 5,
        "{updated}"
    );
    let remove = "mutation($p: ID!) { removeFromCart(productId: $p) { itemCount } }";
    let removed = app
        .gql_with(None, &header(&token), remove, json!({ "p": desk }))
        .await;
    assert_eq!(
        removed["data"]["removeFromCart"]["itemCount"], 4,
        "{removed}"
    );
    assert_eq!(
        guest_cart(&app, &token).await["data"]["cart"]["itemCount"],
        4
    );
    let cleared = app
        .gql_with(
            None,
            &header(&token),
            "mutation { clearCart { itemCount } }",
            json!({}),
        )
        .await;
    assert_eq!(cleared["data"]["clearCart"]["itemCount"], 0, "{cleared}");
    assert_eq!(
        guest_cart(&app, &token).await["data"]["cart"]["itemCount"],
        0
    );
    assert_eq!(guest_rows(&app).await, 1);
}

#[tokio::test]
async fn a_cart_token_never_reads_another_cart_or_a_customers_cart() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 10).await;
    let desk = app.create_product("DESK-1", "Desk", "100.00", 10).await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let add = "mutation($p: ID!) { addToCart(productId: $p, quantity: 7) { itemCount } }";
    app.data(Some(&app.customer(ana)), add, json!({ "p": desk }))
        .await;

    let first = new_guest_cart(&app, &lamp, 1).await;
    let second = new_guest_cart(&app, &desk, 2).await;
    assert_ne!(first, second);
    // Each read twice: the second may come from the cache, and must still be its own.
    for _ in 0..2 {
        let one = guest_cart(&app, &first).await;
        assert_eq!(one["data"]["cart"]["itemCount"], 1, "{one}");
        let two = guest_cart(&app, &second).await;
        assert_eq!(two["data"]["cart"]["itemCount"], 2, "{two}");
    }
    let second_id = app
        .gql_with(None, &header(&second), "{ cart { id } }", json!({}))
        .await["data"]["cart"]["id"]
        .clone();
    for other in [json!(ana.to_string()), second_id] {
        let body = app
            .gql_with(
                None,
                &header(&first),
                "query($c: ID) { cart(customerId: $c) { itemCount } }",
                json!({ "c": other }),
            )
            .await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
        let write = app
            .gql_with(
                None,
                &header(&first),
                "mutation($p: ID!, $c: ID) { addToCart(productId: $p, customerId: $c) { itemCount } }",
                json!({ "p": lamp, "c": other }),
            )
            .await;
        assert_eq!(error_code(&write), "FORBIDDEN", "{write}");
    }
    let ana_cart = own_cart(&app, &app.customer(ana)).await;
    assert_eq!(ana_cart["itemCount"], 7, "{ana_cart}");
    // A customer's token with a guest's cart token reads the customer's own cart.
    let both = app
        .gql_with(
            Some(&app.customer(ana)),
            &header(&first),
            "{ cart { itemCount } }",
            json!({}),
        )
        .await;
    assert_eq!(both["data"]["cart"]["itemCount"], 7, "{both}");
}

#[tokio::test]
async fn a_wrong_or_forged_cart_token_gets_a_clear_error_and_changes_nothing() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 10).await;
    let real = new_guest_cart(&app, &lamp, 1).await;

    let malformed = guest_cart(&app, "not-a-token").await;
    assert_eq!(error_code(&malformed), "BAD_USER_INPUT", "{malformed}");
    assert!(
        malformed["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("X-Cart-Token")),
        "{malformed}"
    );
    // Right shape, right prefix, one character off: a forgery.
    let mut forged = real.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(forged.len() - 1.., last);
    for body in [
        guest_cart(&app, &forged).await,
        guest_add(&app, Some(&forged), &lamp, 1).await,
        sign_up(&app, "forger@example.com", Some(&forged)).await,
    ] {
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cart token is unknown or expired")),
            "{body}"
        );
    }
    let anonymous = app.gql(None, "{ cart { itemCount } }", json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
    assert_eq!(guest_rows(&app).await, 1, "nothing was created");
    let unknown_product = guest_add(&app, None, "999999", 1).await;
    assert_eq!(
        error_code(&unknown_product),
        "NOT_FOUND",
        "{unknown_product}"
    );
    let too_many = guest_add(&app, None, &lamp, 11).await;
    assert_eq!(error_code(&too_many), "OUT_OF_STOCK", "{too_many}");
    assert_eq!(
        guest_rows(&app).await,
        1,
        "refused adds leave no guest cart"
    );
    let cart = guest_cart(&app, &real).await;
    assert_eq!(cart["data"]["cart"]["itemCount"], 1, "{cart}");
    let customers_seen = app
        .data(
            Some(&app.staff()),
            "{ customers { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        customers_seen["customers"]["totalCount"], 0,
        "guests are not customers"
    );
}

#[tokio::test]
async fn sign_in_with_a_cart_token_merges_the_guest_cart_capped_by_stock() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 5).await;
    let desk = app.create_product("DESK-1", "Desk", "100.00", 9).await;
    let signed_up = sign_up(&app, "ana@example.com", None).await;
    let first_session = access(&signed_up, "signUp");
    let add = "mutation($p: ID!) { addToCart(productId: $p, quantity: 3) { itemCount } }";
    app.data(Some(&first_session), add, json!({ "p": lamp }))
        .await;
    // Read (and cache) the customer's cart before the merge.
    assert_eq!(own_cart(&app, &first_session).await["itemCount"], 3);

    let token = new_guest_cart(&app, &lamp, 4).await;
    guest_add(&app, Some(&token), &desk, 2).await;
    let session = sign_in(&app, "ana@example.com", Some(&token)).await;
    let access_token = access(&session, "signIn");

    let cart = own_cart(&app, &access_token).await;
    assert_eq!(
        quantity_of(&cart, &lamp),
        5,
        "3 + 4 capped by a stock of 5: {cart}"
    );
    assert_eq!(quantity_of(&cart, &desk), 2, "{cart}");
    let gone = guest_cart(&app, &token).await;
    assert_eq!(
        error_code(&gone),
        "UNAUTHENTICATED",
        "the guest cart is gone: {gone}"
    );
    assert_eq!(guest_rows(&app).await, 0);
    // Signing in again with the spent token is refused; without it, nothing changes.
    let again = sign_in(&app, "ana@example.com", Some(&token)).await;
    assert_eq!(error_code(&again), "UNAUTHENTICATED", "{again}");
    let plain = sign_in(&app, "ana@example.com", None).await;
    let cart = own_cart(&app, &access(&plain, "signIn")).await;
    assert_eq!(cart["itemCount"], 7, "{cart}");
}

#[tokio::test]
async fn sign_up_with_a_cart_token_makes_the_guest_cart_the_new_customers() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 3).await;
    let token = new_guest_cart(&app, &lamp, 2).await;
    // Stock falls below what the guest holds: the merge caps it.
    let update = "mutation($id: ID!) { updateProduct(id: $id, input: { stock: 1 }) { stock } }";
    app.data(Some(&app.staff()), update, json!({ "id": lamp }))
        .await;
    let session = sign_up(&app, "bo@example.com", Some(&token)).await;
    let cart = own_cart(&app, &access(&session, "signUp")).await;
    assert_eq!(quantity_of(&cart, &lamp), 1, "{cart}");
    assert_eq!(
        error_code(&guest_cart(&app, &token).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(guest_rows(&app).await, 0);
}

async fn guest_saga(app: &TestApp, token: &str, saga: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = app
            .gql_with(None, &header(token), SAGA, json!({ "id": saga }))
            .await;
        let status = &body["data"]["saga"]["status"];
        assert!(status.is_string(), "the guest reads its saga: {body}");
        if is_terminal(status) {
            return body["data"]["saga"].clone();
        }
        assert!(Instant::now() < deadline, "saga never finished: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const CHECKOUT: &str = "mutation($input: CheckoutInput!) { checkout(input: $input) { id status } }";

#[tokio::test]
async fn a_guest_checks_out_with_an_email_and_signing_up_with_it_takes_the_order() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 10).await;
    let token = new_guest_cart(&app, &lamp, 3).await;

    let no_email = app
        .gql_with(
            None,
            &header(&token),
            CHECKOUT,
            json!({ "input": { "paymentMethod": "CARD" } }),
        )
        .await;
    assert_eq!(error_code(&no_email), "BAD_USER_INPUT", "{no_email}");
    let input = json!({ "input": { "paymentMethod": "CARD", "paymentToken": "tok_visa", "email": "Guest@Example.com" } });
    let accepted = app.gql_with(None, &header(&token), CHECKOUT, input).await;
    let saga_id = accepted["data"]["checkout"]["id"].clone();
    assert!(saga_id.is_string(), "{accepted}");

    let saga = guest_saga(&app, &token, &saga_id).await;
    assert_eq!(saga["status"], "COMPLETED", "{saga}");
    assert_eq!(saga["order"]["total"], "37.50", "{saga}");
    assert_eq!(stock(&app, &lamp).await, 7);
    let saga_num: i64 = saga_id
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let payments = payments_of(&app, saga_num).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].amount_cents, 3750);
    assert_eq!(
        guest_cart(&app, &token).await["data"]["cart"]["itemCount"],
        0
    );
    let order = orders::Entity::find()
        .one(&app.db)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no order"));
    let owner = customers::Entity::find_by_id(order.customer_id)
        .one(&app.db)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no owner"));
    assert!(
        owner.guest && owner.email == "guest@example.com",
        "{owner:?}"
    );
    // A customer's checkout refuses an e-mail; a guest checkout with no cart token
    // needs to sign in.
    let anonymous = app
        .gql(
            None,
            CHECKOUT,
            json!({ "input": { "paymentMethod": "CARD", "email": "x@example.com" } }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");

    let session = sign_up(&app, "guest@example.com", None).await;
    let access_token = access(&session, "signUp");
    let mine = app
        .data(
            Some(&access_token),
            "{ orders { totalCount edges { node { id total } } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["orders"]["totalCount"], 1, "{mine}");
    assert_eq!(
        mine["orders"]["edges"][0]["node"]["id"],
        saga["order"]["id"]
    );
}

#[tokio::test]
async fn a_guest_checkout_with_a_real_customers_email_never_reaches_that_account() {
    let app = spawn_app().await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 10).await;
    let ana = sign_up(&app, "ana@example.com", None).await;
    let ana_token = access(&ana, "signUp");
    let token = new_guest_cart(&app, &lamp, 1).await;
    let input = json!({ "input": { "paymentMethod": "CARD", "email": "ana@example.com" } });
    let accepted = app.gql_with(None, &header(&token), CHECKOUT, input).await;
    let saga = guest_saga(&app, &token, &accepted["data"]["checkout"]["id"]).await;
    assert_eq!(saga["status"], "COMPLETED", "{saga}");
    let orders = app
        .data(Some(&ana_token), "{ orders { totalCount } }", json!({}))
        .await;
    assert_eq!(orders["orders"]["totalCount"], 0, "{orders}");
    let again = sign_up(&app, "ana@example.com", None).await;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");
    // The guest row holds no password: signing in with the e-mail is Ana's account.
    let ana_again = sign_in(&app, "ana@example.com", None).await;
    assert_eq!(
        ana_again["data"]["signIn"]["customer"]["id"], ana["data"]["signUp"]["customer"]["id"],
        "{ana_again}"
    );
}

#[tokio::test]
async fn expired_guest_carts_are_refused_and_purged() {
    let mut settings = test_settings().await;
    settings.accounts.guest_cart_ttl = 1;
    let app = spawn_with(settings).await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 10).await;
    let token = new_guest_cart(&app, &lamp, 2).await;
    assert_eq!(guest_rows(&app).await, 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = guest_carts::Entity::find()
            .count(&app.db)
            .await
            .unwrap_or(1);
        if rows == 0 && guest_rows(&app).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired guest cart was never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = guest_cart(&app, &token).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test]
async fn creating_guest_carts_is_limited_per_client() {
    let mut settings = test_settings().await;
    settings.accounts.guest_carts_per_ip_hour = 3;
    let app = spawn_with(settings).await;
    let lamp = app.create_product("LAMP-1", "Lamp", "12.50", 100).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(new_guest_cart(&app, &lamp, 1).await);
    }
    let refused = guest_add(&app, None, &lamp, 1).await;
    assert_eq!(error_code(&refused), "RATE_LIMITED", "{refused}");
    assert_eq!(guest_rows(&app).await, 3);
    // Carts already made keep working.
    let more = guest_add(&app, Some(&tokens[0]), &lamp, 1).await;
    assert_eq!(more["data"]["addToCart"]["itemCount"], 2, "{more}");
}
