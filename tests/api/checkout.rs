use crate::helpers::{TestApp, error_code, spawn_app, spawn_with, tenant, test_settings};
use crate::saga_helpers::*;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use shopgraph::checkout::failures::FailureRates;
use shopgraph::db::entities::{orders, payments, sagas};
use shopgraph::services::seed::{SeedSize, generate};
use std::collections::HashMap;

async fn shop_with(latency_ms: u64, rates: Option<FailureRates>) -> TestApp {
    let mut settings = test_settings().await;
    settings.payment_latency_ms = latency_ms;
    settings.fail_rates = rates;
    spawn_with(settings).await
}

async fn cart_of(app: &TestApp, token: &str, products: &[(&str, i32)]) {
    for (product, quantity) in products {
        app.data(
            Some(token),
            "mutation($p: ID!, $q: Int!) { addToCart(productId: $p, quantity: $q) { id } }",
            json!({"p": product, "q": quantity}),
        )
        .await;
    }
}

const CHECKOUT: &str = "mutation($t: String) { checkout(input: {paymentMethod: CARD, paymentToken: $t}) { id status kind } }";
const UPDATES: &str = "subscription($id: ID!) { sagaUpdates(id: $id) { id status steps { name status } order { status } } }";

#[tokio::test]
async fn checkout_streams_every_transition_over_both_websocket_protocols() {
    let app = shop_with(150, None).await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let lamp = app.create_product("LAMP", "Lamp", "20.00", 5).await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let customer = app
            .create_customer("Ana", &format!("ana-{protocol}@example.com"))
            .await;
        let token = app.customer(customer);
        cart_of(&app, &token, &[(&mug, 2), (&lamp, 1)]).await;
        let accepted = app
            .data(Some(&token), CHECKOUT, json!({"t": "tok_visa"}))
            .await;
        assert_eq!(accepted["checkout"]["status"], "PENDING");
        assert_eq!(accepted["checkout"]["kind"], "CHECKOUT");
        let id = accepted["checkout"]["id"].clone();
        let updates = subscribe(&app, protocol, &token, UPDATES, json!({"id": id})).await;
        let statuses: Vec<&str> = updates
            .iter()
            .filter_map(|u| u["data"]["sagaUpdates"]["status"].as_str())
            .collect();
        assert!(updates.len() >= 2, "{protocol}: {statuses:?}");
        assert!(
            matches!(statuses[0], "PENDING" | "RUNNING"),
            "{protocol}: {statuses:?}"
        );
        assert_eq!(
            statuses.last(),
            Some(&"COMPLETED"),
            "{protocol}: {statuses:?}"
        );
        let last = &updates[updates.len() - 1]["data"]["sagaUpdates"];
        assert_eq!(
            last["steps"],
            json!([{"name": "RESERVE_STOCK", "status": "SUCCEEDED"}, {"name": "CHARGE_PAYMENT", "status": "SUCCEEDED"}, {"name": "CREATE_ORDER", "status": "SUCCEEDED"}])
        );
        assert_eq!(last["order"]["status"], "COMPLETED");
        let cart = app
            .data(Some(&token), "{ cart { itemCount } }", json!({}))
            .await;
        assert_eq!(
            cart["cart"]["itemCount"], 0,
            "{protocol}: the cart was not cleared"
        );
    }
    assert_eq!(stock(&app, &mug).await, 6);
    assert_eq!(stock(&app, &lamp).await, 3);
    let orders = app.data(Some(&app.staff()), "{ orders(status: COMPLETED) { totalCount edges { node { total items { quantity unitPrice } } } } }", json!({})).await;
    assert_eq!(orders["orders"]["totalCount"], 2);
    assert_eq!(orders["orders"]["edges"][0]["node"]["total"], "35.00");
}

#[tokio::test]
async fn a_declined_payment_is_compensated_and_the_stock_comes_back() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 4).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let accepted = app
        .data(Some(&token), PLACE, place_input(&mug, 3, "tok_declined"))
        .await;
    let saga = wait_terminal(
        &app,
        &token,
        accepted["placeOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(saga["status"], "COMPENSATED");
    assert_eq!(
        saga["steps"]
            .as_array()
            .map(|s| s.iter().map(|s| s["status"].clone()).collect::<Vec<_>>()),
        Some(vec![
            json!("COMPENSATED"),
            json!("FAILED"),
            json!("PENDING")
        ])
    );
    assert!(
        saga["error"]
            .as_str()
            .is_some_and(|e| e.contains("declined")),
        "{saga}"
    );
    assert_eq!(saga["order"], Value::Null);
    assert_eq!(stock(&app, &mug).await, 4);
    let id: i64 = saga["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    assert!(payments_of(&app, id).await.is_empty());
}

#[tokio::test]
async fn a_failure_creating_the_order_refunds_the_payment_and_releases_the_stock() {
    let rates = FailureRates {
        create_order: 1.0,
        ..FailureRates::default()
    };
    let app = shop_with(0, Some(rates)).await;
    let mug = app.create_product("MUG", "Mug", "7.50", 4).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let saga = place_and_finish(&app, &token, &mug, 2).await;
    assert_eq!(saga["status"], "COMPENSATED", "{saga}");
    assert_eq!(
        saga["steps"]
            .as_array()
            .map(|s| s.iter().map(|s| s["status"].clone()).collect::<Vec<_>>()),
        Some(vec![
            json!("COMPENSATED"),
            json!("COMPENSATED"),
            json!("FAILED")
        ])
    );
    let id: i64 = saga["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let payments = payments_of(&app, id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (payments[0].status.as_str(), payments[0].amount_cents),
        ("REFUNDED", 1500)
    );
    assert_eq!(stock(&app, &mug).await, 4);
}

#[tokio::test]
async fn two_hundred_concurrent_checkouts_never_oversell_ten_units() {
    let app = spawn_app().await;
    generate(
        &app.db,
        &tenant("default"),
        SeedSize {
            products: 0,
            customers: 200,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let product = app.create_product("HOT", "Hot item", "9.99", 10).await;
    let orders = (1..=200).map(|customer| {
        let (app, product) = (&app, product.clone());
        async move {
            app.gql(
                Some(&app.customer(customer)),
                PLACE,
                place_input(&product, 1, "tok_visa"),
            )
            .await
        }
    });
    let accepted: Vec<Value> = futures_util::future::join_all(orders).await;
    let mut refused_early = 0;
    for body in &accepted {
        if body.get("errors").is_some() {
            // Once stock is visibly gone, acceptance already says so.
            assert_eq!(error_code(body), "OUT_OF_STOCK", "{body}");
            refused_early += 1;
        }
    }
    wait_queue_empty(&app, 60).await;
    let all = sagas::Entity::find().all(&app.db).await.unwrap_or_default();
    let completed = all.iter().filter(|s| s.status == "COMPLETED").count();
    let compensated = all.iter().filter(|s| s.status == "COMPENSATED").count();
    println!(
        "no-oversell: {completed} completed, {compensated} compensated, {refused_early} refused at acceptance"
    );
    assert_eq!(completed, 10);
    assert_eq!(completed + compensated + refused_early, 200);
    assert_eq!(stock(&app, &product).await, 0);
    let captured = payments::Entity::find()
        .filter(payments::Column::Status.eq("CAPTURED"))
        .all(&app.db)
        .await
        .unwrap_or_default();
    assert_eq!(captured.len(), 10);
}

#[tokio::test]
async fn stock_and_money_are_conserved_under_random_failures() {
    let rates = FailureRates {
        reserve_stock: 0.3,
        charge_payment: 0.3,
        create_order: 0.3,
    };
    let app = shop_with(0, Some(rates)).await;
    generate(
        &app.db,
        &tenant("default"),
        SeedSize {
            products: 0,
            customers: 30,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut initial = HashMap::new();
    let mut products = Vec::new();
    for i in 0..5 {
        let id = app
            .create_product(
                &format!("P{i}"),
                &format!("Product {i}"),
                &format!("{}.25", i + 1),
                60,
            )
            .await;
        initial.insert(id.parse::<i64>().unwrap_or_default(), 60);
        products.push(id);
    }
    let sagas_to_run = 500;
    let requests = (0..sagas_to_run).map(|n: usize| {
        let (app, product) = (&app, products[n % products.len()].clone());
        async move {
            let token = app.customer((n % 30 + 1) as i64);
            let input = json!({"input": {"items": [{"productId": product, "quantity": (n % 3 + 1) as i32}], "paymentMethod": "PAYPAL"}});
            app.gql(Some(&token), PLACE, input).await
        }
    });
    futures_util::future::join_all(requests).await;
    wait_queue_empty(&app, 120).await;

    let all_sagas = sagas::Entity::find().all(&app.db).await.unwrap_or_default();
    let all_orders = all_orders(&app).await;
    let all_payments = payments::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_default();
    let completed: Vec<&sagas::Model> = all_sagas
        .iter()
        .filter(|s| s.status == "COMPLETED")
        .collect();
    assert!(
        all_sagas
            .iter()
            .all(|s| s.status == "COMPLETED" || s.status == "COMPENSATED"),
        "a saga ended elsewhere"
    );
    // Initial stock = stock now + units in completed orders, for every product.
    let mut sold: HashMap<i64, i64> = HashMap::new();
    for order in all_orders.iter().filter(|o| o.status == "COMPLETED") {
        let items = shopgraph::services::orders::items_by_orders(&app.db, "default", &[order.id])
            .await
            .unwrap_or_default();
        for item in items {
            *sold.entry(item.product_id).or_default() += i64::from(item.quantity);
        }
    }
    for (product, start) in &initial {
        let now = i64::from(stock(&app, &product.to_string()).await);
        assert!(now >= 0);
        assert_eq!(
            *start,
            now + sold.get(product).copied().unwrap_or(0),
            "product {product}"
        );
    }
    // Captured money = completed order totals; nothing captured for a compensated saga.
    let captured: i64 = all_payments
        .iter()
        .filter(|p| p.status == "CAPTURED")
        .map(|p| p.amount_cents)
        .sum();
    let completed_total: i64 = all_orders
        .iter()
        .filter(|o| o.status == "COMPLETED")
        .map(|o| o.total_cents)
        .sum();
    assert_eq!(captured, completed_total);
    let compensated: Vec<i64> = all_sagas
        .iter()
        .filter(|s| s.status == "COMPENSATED")
        .map(|s| s.id)
        .collect();
    assert!(
        all_payments
            .iter()
            .all(|p| p.status != "CAPTURED" || !compensated.contains(&p.saga_id))
    );
    assert_eq!(
        completed.len(),
        all_orders
            .iter()
            .filter(|o| o.status == "COMPLETED")
            .count()
    );
    println!(
        "conservation: {} sagas, {} completed, {} compensated, {} cents captured",
        all_sagas.len(),
        completed.len(),
        compensated.len(),
        captured
    );
    assert!(!completed.is_empty() && !compensated.is_empty());
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_saga_and_charges_once() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    cart_of(&app, &token, &[(&mug, 1)]).await;
    let q =
        "mutation { checkout(input: {paymentMethod: CARD, idempotencyKey: \"order-42\"}) { id } }";
    let first = app.data(Some(&token), q, json!({})).await;
    let second = app.data(Some(&token), q, json!({})).await;
    assert_eq!(first["checkout"]["id"], second["checkout"]["id"]);
    let id = first["checkout"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_terminal(&app, &token, &id).await;
    let third = app.data(Some(&token), q, json!({})).await;
    assert_eq!(third["checkout"]["id"], json!(id));
    assert_eq!(
        payments_of(&app, id.parse().unwrap_or_default())
            .await
            .len(),
        1
    );
    assert_eq!(
        sagas::Entity::find()
            .all(&app.db)
            .await
            .unwrap_or_default()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_idempotency_key_header_runs_a_mutation_once() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let add = json!({"query": "mutation($p: ID!) { addToCart(productId: $p) { itemCount } }", "variables": {"p": mug}});
    let first: Value = app
        .post(Some(&token), &[("idempotency-key", "k1")], &add)
        .await
        .json()
        .await
        .unwrap_or_default();
    let retry = app
        .post(Some(&token), &[("idempotency-key", "k1")], &add)
        .await;
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let retry: Value = retry.json().await.unwrap_or_default();
    assert_eq!(first, retry);
    let cart = app
        .data(Some(&token), "{ cart { itemCount } }", json!({}))
        .await;
    assert_eq!(cart["cart"]["itemCount"], 1);
    let other = json!({"query": "mutation($p: ID!) { addToCart(productId: $p, quantity: 2) { itemCount } }", "variables": {"p": mug}});
    let conflict = app
        .post(Some(&token), &[("idempotency-key", "k1")], &other)
        .await;
    assert_eq!(conflict.status(), 409);
    let body: Value = conflict.json().await.unwrap_or_default();
    assert_eq!(error_code(&body), "CONFLICT");
}

#[tokio::test]
async fn cancelling_a_completed_order_refunds_and_restocks() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let checkout = place_and_finish(&app, &token, &mug, 3).await;
    assert_eq!(checkout["status"], "COMPLETED");
    assert_eq!(stock(&app, &mug).await, 7);
    let order = checkout["order"]["id"].clone();
    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { id kind } }";
    let cancelled = app.data(Some(&token), cancel, json!({"id": order})).await;
    assert_eq!(cancelled["cancelOrder"]["kind"], "CANCEL_ORDER");
    let saga = wait_terminal(
        &app,
        &token,
        cancelled["cancelOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(saga["status"], "COMPLETED", "{saga}");
    assert_eq!(stock(&app, &mug).await, 10);
    let order_now = app
        .data(
            Some(&token),
            "query($id: ID!) { order(id: $id) { status } }",
            json!({"id": order}),
        )
        .await;
    assert_eq!(order_now["order"]["status"], "CANCELLED");
    let checkout_id: i64 = checkout["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    assert_eq!(payments_of(&app, checkout_id).await[0].status, "REFUNDED");
    let again = app.data(Some(&token), cancel, json!({"id": order})).await;
    assert_eq!(again["cancelOrder"]["id"], cancelled["cancelOrder"]["id"]);
    let other = app.create_customer("Bruno", "bruno@example.com").await;
    let hidden = app
        .gql(Some(&app.customer(other)), cancel, json!({"id": order}))
        .await;
    assert_eq!(error_code(&hidden), "NOT_FOUND");
}

#[tokio::test]
async fn customers_see_only_their_own_orders_and_sagas() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let ana = app.create_customer("Ana", "ana@example.com").await;
    let bruno = app.create_customer("Bruno", "bruno@example.com").await;
    let (ana_token, bruno_token) = (app.customer(ana), app.customer(bruno));
    let accepted = app
        .data(Some(&ana_token), PLACE, place_input(&mug, 1, "tok_visa"))
        .await;
    let saga = accepted["placeOrder"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_terminal(&app, &ana_token, &saga).await;
    // Another customer's saga reads exactly as a missing one: ids reveal nothing.
    let theirs = app
        .data(Some(&bruno_token), SAGA, json!({"id": saga}))
        .await;
    let missing = app
        .data(Some(&bruno_token), SAGA, json!({"id": "999999"}))
        .await;
    assert_eq!(theirs, missing);
    assert_eq!(theirs["saga"], Value::Null);
    let order =
        app.data(Some(&ana_token), SAGA, json!({"id": saga})).await["saga"]["order"]["id"].clone();
    let order_query = "query($id: ID!) { order(id: $id) { id } }";
    let their_order = app
        .data(Some(&bruno_token), order_query, json!({"id": order}))
        .await;
    assert_eq!(their_order["order"], Value::Null);
    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { id } }";
    let their_cancel = app
        .gql(Some(&bruno_token), cancel, json!({"id": order}))
        .await;
    let missing_cancel = app
        .gql(Some(&bruno_token), cancel, json!({"id": "999999"}))
        .await;
    assert_eq!(error_code(&their_cancel), "NOT_FOUND");
    assert_eq!(error_code(&missing_cancel), "NOT_FOUND");
    let bruno_orders = app
        .data(Some(&bruno_token), "{ orders { totalCount } }", json!({}))
        .await;
    assert_eq!(bruno_orders["orders"]["totalCount"], 0);
    let ana_orders = app
        .data(Some(&ana_token), "{ orders { totalCount } }", json!({}))
        .await;
    assert_eq!(ana_orders["orders"]["totalCount"], 1);
    let named = app
        .gql(
            Some(&bruno_token),
            "query($c: ID) { orders(customerId: $c) { totalCount } }",
            json!({"c": ana.to_string()}),
        )
        .await;
    assert_eq!(error_code(&named), "FORBIDDEN");
    let staff = app.data(Some(&app.staff()), "query($c: ID) { orders(customerId: $c) { totalCount } sagas { edges { node { status } } } }", json!({"c": ana.to_string()})).await;
    assert_eq!(staff["orders"]["totalCount"], 1);
    let sagas_for_customer = app
        .gql(
            Some(&ana_token),
            "{ sagas { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&sagas_for_customer), "FORBIDDEN");
    let customer_orders = app
        .data(
            Some(&ana_token),
            "query($c: ID!) { customer(id: $c) { orders { edges { node { saga { status } } } } } }",
            json!({"c": ana.to_string()}),
        )
        .await;
    assert_eq!(
        customer_orders["customer"]["orders"]["edges"][0]["node"]["saga"]["status"],
        "COMPLETED"
    );
    let empty = app.gql(Some(&bruno_token), CHECKOUT, json!({})).await;
    assert_eq!(error_code(&empty), "BAD_USER_INPUT");
    let _ = orders::Entity::find().all(&app.db).await;
}

#[tokio::test]
async fn an_order_for_an_unknown_customer_is_refused_and_queues_nothing() {
    let app = shop_with(0, None).await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let place = "mutation($p: ID!, $c: ID) { placeOrder(input: {customerId: $c, items: [{productId: $p, quantity: 1}], paymentMethod: CARD}) { id } }";
    let ghost = app.customer(987_654);
    let as_ghost = app.gql(Some(&ghost), place, json!({"p": mug})).await;
    assert_eq!(error_code(&as_ghost), "NOT_FOUND", "{as_ghost}");
    let for_ghost = app
        .gql(Some(&app.staff()), place, json!({"p": mug, "c": "987654"}))
        .await;
    assert_eq!(error_code(&for_ghost), "NOT_FOUND", "{for_ghost}");
    assert!(
        sagas::Entity::find()
            .all(&app.db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert_eq!(stock(&app, &mug).await, 10);
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_make_one_saga() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 100).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let place = "mutation($p: ID!) { placeOrder(input: {items: [{productId: $p, quantity: 1}], paymentMethod: CARD, idempotencyKey: \"same\"}) { id } }";
    let requests = (0..20).map(|_| app.data(Some(&token), place, json!({"p": mug})));
    let accepted: Vec<Value> = futures_util::future::join_all(requests).await;
    let ids: std::collections::HashSet<&Value> =
        accepted.iter().map(|a| &a["placeOrder"]["id"]).collect();
    assert_eq!(ids.len(), 1, "{accepted:?}");
    let sagas = sagas::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sagas.len(), 1);
}

/// Under a steady trickle of checkouts, a worker that emptied the queue waits
/// `WORKER_GATHER_MS` before claiming again, so the arrivals meanwhile go through their
/// steps in one claim (all under one fence) instead of one claim each.
#[tokio::test]
async fn checkouts_arriving_while_the_workers_gather_are_claimed_together() {
    let mut settings = test_settings().await;
    settings.worker_concurrency = 2;
    settings.worker_gather_ms = 4_000;
    let app = spawn_with(settings).await;
    generate(
        &app.db,
        &tenant("default"),
        SeedSize {
            products: 0,
            customers: 21,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let product = app.create_product("TRICKLE", "Trickle", "1.00", 100).await;
    // One worker takes this one and then gathers.
    let first = place_and_finish(&app, &app.customer(21), &product, 1).await;
    assert_eq!(first["status"], "COMPLETED", "{first}");

    let mut trickle = Vec::new();
    for customer in 1..=20 {
        let accepted = app
            .data(
                Some(&app.customer(customer)),
                PLACE,
                place_input(&product, 1, "tok_visa"),
            )
            .await;
        trickle.push(crate::helpers::id_of(&accepted["placeOrder"]));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    wait_queue_empty(&app, 30).await;
    let trickled: Vec<sagas::Model> = sagas::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|s| trickle.contains(&s.id.to_string()))
        .collect();
    assert_eq!(trickled.len(), 20);
    assert!(
        trickled.iter().all(|s| s.status == "COMPLETED"),
        "{trickled:?}"
    );
    let fences: std::collections::BTreeSet<i64> = trickled.iter().map(|s| s.fence).collect();
    // The idle worker takes the first arrival at once; the rest, arriving well within
    // the window, wait for a gathering worker's next claim. Claimed on arrival, they
    // would make about 20 fences.
    assert!(fences.len() <= 3, "{} claims: {fences:?}", fences.len());
    assert_eq!(stock(&app, &product).await, 79);
}
