use crate::helpers::{TestApp, error_code, spawn_app};
use crate::saga_helpers::{place_and_finish, wait_terminal};
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use shopgraph::db::entities::{customers, order_items, orders, sagas};

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

async fn customer(app: &TestApp, name: &str, created: DateTime<Utc>) -> i64 {
    customers::ActiveModel {
        tenant_id: Set("default".into()),
        name: Set(name.into()),
        email: Set(format!("{}@example.com", name.to_lowercase())),
        created_at: Set(created),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .id
}

/// An order as a finished saga would have left it.
async fn order(
    app: &TestApp,
    customer: i64,
    status: &str,
    method: &str,
    placed: DateTime<Utc>,
    changed: DateTime<Utc>,
    lines: &[(i64, i32, i64)],
) {
    let saga = sagas::ActiveModel {
        tenant_id: Set("default".into()),
        kind: Set("CHECKOUT".into()),
        status: Set("COMPLETED".into()),
        customer_id: Set(customer),
        payload: Set("{}".into()),
        attempts: Set(1),
        created_at: Set(placed),
        updated_at: Set(placed),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let total: i64 = lines.iter().map(|(_, q, p)| i64::from(*q) * p).sum();
    let order = orders::ActiveModel {
        tenant_id: Set("default".into()),
        customer_id: Set(customer),
        saga_id: Set(saga.id),
        status: Set(status.into()),
        total_cents: Set(total),
        payment_method: Set(method.into()),
        created_at: Set(placed),
        updated_at: Set(changed),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for (product, quantity, price) in lines {
        order_items::ActiveModel {
            tenant_id: Set("default".into()),
            order_id: Set(order.id),
            product_id: Set(*product),
            quantity: Set(*quantity),
            unit_price_cents: Set(*price),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Three months of orders: one cancelled (refunded in November), two payment methods.
async fn history(app: &TestApp) -> (i64, i64) {
    let a: i64 = app
        .create_product("A", "Alpha", "10.00", 50)
        .await
        .parse()
        .unwrap_or_default();
    let b: i64 = app
        .create_product("B", "Beta", "5.50", 50)
        .await
        .parse()
        .unwrap_or_default();
    let c1 = customer(app, "Carla", at(2026, 8, 15)).await;
    let c2 = customer(app, "Dario", at(2026, 10, 1)).await;
    customer(app, "Eva", at(2026, 10, 3)).await;
    order(
        app,
        c1,
        "COMPLETED",
        "CARD",
        at(2026, 9, 10),
        at(2026, 9, 10),
        &[(a, 2, 1000)],
    )
    .await;
    order(
        app,
        c1,
        "COMPLETED",
        "PAYPAL",
        at(2026, 10, 5),
        at(2026, 10, 5),
        &[(b, 1, 550)],
    )
    .await;
    order(
        app,
        c2,
        "CANCELLED",
        "CARD",
        at(2026, 10, 20),
        at(2026, 11, 2),
        &[(a, 1, 1000)],
    )
    .await;
    order(
        app,
        c2,
        "COMPLETED",
        "CARD",
        at(2026, 11, 1),
        at(2026, 11, 1),
        &[(a, 1, 1000), (b, 2, 550)],
    )
    .await;
    // Written by hand, not by checkouts: the aggregates are recomputed as after an import.
    shopgraph::services::stats::tally::rebuild(&app.db)
        .await
        .unwrap_or_else(|e| panic!("rebuild statistics: {e}"));
    (a, b)
}

const SALES: &str = "query($from: DateTime, $to: DateTime) { salesStats(from: $from, to: $to) { orders revenue refunds netRevenue averageTicket series { period orders revenue refunds } revenueByPaymentMethod { method orders revenue } topProducts { product { sku } unitsSold revenue } } }";

#[tokio::test]
async fn sales_statistics_match_a_hand_computed_history() {
    let app = spawn_app().await;
    history(&app).await;
    let data = app.data(Some(&app.staff()), SALES, json!({})).await;
    let s = &data["salesStats"];
    assert_eq!(
        (
            s["orders"].clone(),
            s["revenue"].clone(),
            s["refunds"].clone()
        ),
        (json!(4), json!("56.50"), json!("10.00"))
    );
    assert_eq!(
        (s["netRevenue"].clone(), s["averageTicket"].clone()),
        (json!("46.50"), json!("14.13"))
    );
    assert_eq!(
        s["series"],
        json!([
            {"period": "2026-09", "orders": 1, "revenue": "20.00", "refunds": "0.00"},
            {"period": "2026-10", "orders": 2, "revenue": "15.50", "refunds": "0.00"},
            {"period": "2026-11", "orders": 1, "revenue": "21.00", "refunds": "10.00"},
        ])
    );
    assert_eq!(
        s["revenueByPaymentMethod"],
        json!([{"method": "CARD", "orders": 3, "revenue": "51.00"}, {"method": "PAYPAL", "orders": 1, "revenue": "5.50"}])
    );
    assert_eq!(
        s["topProducts"],
        json!([{"product": {"sku": "A"}, "unitsSold": 3, "revenue": "30.00"}, {"product": {"sku": "B"}, "unitsSold": 3, "revenue": "16.50"}])
    );
    let october = app
        .data(
            Some(&app.staff()),
            SALES,
            json!({"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (
            october["salesStats"]["orders"].clone(),
            october["salesStats"]["revenue"].clone()
        ),
        (json!(2), json!("15.50"))
    );
    let refused = app.gql(Some(&app.customer(1)), SALES, json!({})).await;
    assert_eq!(error_code(&refused), "FORBIDDEN");
    let backwards = app
        .gql(
            Some(&app.staff()),
            SALES,
            json!({"from": "2026-11-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(error_code(&backwards), "BAD_USER_INPUT");
}

#[tokio::test]
async fn customer_statistics_match_a_hand_computed_history() {
    let app = spawn_app().await;
    history(&app).await;
    let data = app
        .data(
            Some(&app.admin()),
            "{ customerStats { newCustomersPerMonth { period count } mostActiveCustomers { customer { name } orders spent } buyers repeatPurchaseRate } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["customerStats"],
        json!({
            "newCustomersPerMonth": [{"period": "2026-08", "count": 1}, {"period": "2026-10", "count": 2}],
            "mostActiveCustomers": [
                {"customer": {"name": "Carla"}, "orders": 2, "spent": "25.50"},
                {"customer": {"name": "Dario"}, "orders": 1, "spent": "21.00"},
            ],
            "buyers": 2,
            "repeatPurchaseRate": 0.5,
        })
    );
}

/// Statistics lag orders by at most one cache outbox round (the schema says one second);
/// a loaded test machine gets some slack. Without the round's invalidation they would
/// stay as cached for minutes.
const STATISTICS_LAG: std::time::Duration = std::time::Duration::from_secs(3);

/// Reads `query` as `token` until it answers `expected` or the statistics' lag is over;
/// returns the last answer (its `extensions` included).
async fn within_lag(app: &TestApp, token: Option<&str>, query: &str, expected: &Value) -> Value {
    let deadline = std::time::Instant::now() + STATISTICS_LAG;
    loop {
        let body = app.debug(token, query, json!({})).await;
        if body["data"] == *expected || std::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_completed_checkout_reaches_cached_top_products_within_a_round() {
    let app = spawn_app().await;
    let (a, _) = history(&app).await;
    let q = "{ topProducts(limit: 1) { product { sku } unitsSold } }";
    app.debug(None, q, json!({})).await;
    let cached = app.debug(None, q, json!({})).await;
    assert_eq!(cached["extensions"]["debug"]["cache"][0]["outcome"], "hit");
    assert_eq!(
        cached["data"]["topProducts"],
        json!([{"product": {"sku": "A"}, "unitsSold": 3}])
    );
    let buyer = app.create_customer("Buyer", "buyer@example.com").await;
    let token = app.customer(buyer);
    let beta = (a + 1).to_string();
    let saga = place_and_finish(&app, &token, &beta, 4).await;
    assert_eq!(saga["status"], "COMPLETED");
    let expected = json!({"topProducts": [{"product": {"sku": "B"}, "unitsSold": 7}]});
    let fresh = within_lag(&app, None, q, &expected).await;
    assert_eq!(fresh["data"], expected);
    assert_eq!(fresh["extensions"]["debug"]["cache"][0]["outcome"], "miss");
}

#[tokio::test]
async fn ranges_that_cut_days_count_the_orders_inside_them_exactly() {
    let app = spawn_app().await;
    history(&app).await;
    let sales = |from: &'static str, to: &'static str| {
        let app = &app;
        async move {
            let data = app
                .data(Some(&app.staff()), SALES, json!({"from": from, "to": to}))
                .await;
            let s = &data["salesStats"];
            let top: Vec<(String, i64)> = s["topProducts"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            (
                                r["product"]["sku"].as_str().unwrap_or_default().to_owned(),
                                r["unitsSold"].as_i64().unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                s["orders"].as_i64().unwrap_or(-1),
                s["revenue"].as_str().unwrap_or_default().to_owned(),
                s["refunds"].as_str().unwrap_or_default().to_owned(),
                top,
            )
        }
    };
    // From the morning of Oct 5 (its noon order counts) to the evening of Nov 1 (its
    // noon order counts; the refund of Nov 2 does not).
    assert_eq!(
        sales("2026-10-05T06:00:00Z", "2026-11-01T18:00:00Z").await,
        (
            3,
            "36.50".into(),
            "0.00".into(),
            vec![("B".into(), 3), ("A".into(), 1)]
        )
    );
    // After Oct 5's noon order, up to the refund's day included.
    assert_eq!(
        sales("2026-10-05T13:00:00Z", "2026-11-02T13:00:00Z").await,
        (
            2,
            "31.00".into(),
            "10.00".into(),
            vec![("B".into(), 2), ("A".into(), 1)]
        )
    );
    // Within one day, and an hour of that day holding no order.
    assert_eq!(
        sales("2026-09-10T11:00:00Z", "2026-09-10T13:00:00Z").await,
        (1, "20.00".into(), "0.00".into(), vec![("A".into(), 2)])
    );
    assert_eq!(
        sales("2026-09-10T13:00:00Z", "2026-09-10T18:00:00Z").await,
        (0, "0.00".into(), "0.00".into(), vec![])
    );
}

#[tokio::test]
async fn statistics_follow_checkouts_and_cancellations_as_they_happen() {
    let app = spawn_app().await;
    let mug = app.create_product("MUG", "Mug", "7.50", 10).await;
    let buyer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(buyer);
    let q = "{ topProducts { product { sku } unitsSold revenue } salesStats { orders revenue refunds } customerStats { buyers mostActiveCustomers { orders spent } } }";
    let checkout = place_and_finish(&app, &token, &mug, 3).await;
    assert_eq!(checkout["status"], "COMPLETED");
    let admin = app.admin();
    let sold = json!({
        "topProducts": [{"product": {"sku": "MUG"}, "unitsSold": 3, "revenue": "22.50"}],
        "salesStats": {"orders": 1, "revenue": "22.50", "refunds": "0.00"},
        "customerStats": {"buyers": 1, "mostActiveCustomers": [{"orders": 1, "spent": "22.50"}]},
    });
    assert_eq!(within_lag(&app, Some(&admin), q, &sold).await["data"], sold);
    let cancelled = app
        .data(
            Some(&token),
            "mutation($id: ID!) { cancelOrder(id: $id) { id } }",
            json!({"id": checkout["order"]["id"]}),
        )
        .await;
    let saga = wait_terminal(
        &app,
        &token,
        cancelled["cancelOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(saga["status"], "COMPLETED");
    // The sale stays in the period it was made, refunded; it no longer ranks anything.
    let refunded = json!({
        "topProducts": [],
        "salesStats": {"orders": 1, "revenue": "22.50", "refunds": "22.50"},
        "customerStats": {"buyers": 0, "mostActiveCustomers": []},
    });
    assert_eq!(
        within_lag(&app, Some(&admin), q, &refunded).await["data"],
        refunded
    );
    let differences = shopgraph::services::stats::tally::verify(&app.db)
        .await
        .unwrap_or_else(|e| panic!("check statistics: {e}"));
    assert!(differences.is_empty(), "{differences:#?}");
}
