use crate::helpers::{spawn_app, tenant};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::json;
use shopgraph::db::entities::{cart_items, carts};
use shopgraph::services::seed::{SeedSize, generate};

const CARTS: &str = "query($n: Int!) { customers(first: $n) { edges { node { name cart { itemCount items { quantity product { name price category { name } } } } } } } }";

async fn fill_carts(db: &sea_orm::DatabaseConnection, customers: i64, items: i64) {
    let now = Utc::now();
    carts::Entity::insert_many((1..=customers).map(|c| carts::ActiveModel {
        customer_id: Set(c),
        tenant_id: Set("default".into()),
        updated_at: Set(now),
    }))
    .exec_without_returning(db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    cart_items::Entity::insert_many((1..=customers).flat_map(|c| {
        (1..=items).map(move |p| cart_items::ActiveModel {
            tenant_id: Set("default".into()),
            customer_id: Set(c),
            product_id: Set((c * 7 + p) % 40 + 1),
            quantity: Set(1),
            added_at: Set(now),
            ..Default::default()
        })
    }))
    .exec_without_returning(db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn carts_with_items_products_and_categories_run_a_constant_number_of_statements() {
    let mut counts = Vec::new();
    for (customers, items) in [(5, 2), (50, 10)] {
        let app = spawn_app().await;
        generate(
            &app.db,
            &tenant("default"),
            SeedSize {
                products: 40,
                customers: customers as usize,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        fill_carts(&app.db, customers, items).await;
        // Several at once, so the batches of one request are gathered while others run
        // on the same threads: a batch that split under load would cost one of them more.
        let staff = app.staff();
        let bodies = futures_util::future::join_all(
            (0..4).map(|_| app.debug(Some(&staff), CARTS, json!({"n": customers}))),
        )
        .await;
        let per_request: Vec<u64> = bodies
            .iter()
            .map(|body| {
                body["extensions"]["debug"]["dbStatements"]
                    .as_u64()
                    .unwrap_or(u64::MAX)
            })
            .collect();
        assert!(
            per_request.iter().all(|n| *n == per_request[0]),
            "{customers}x{items} carts: {per_request:?}"
        );
        let (statements, body) = (per_request[0], &bodies[0]);
        let edges = body["data"]["customers"]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(edges.len(), customers as usize);
        assert_eq!(
            edges[0]["node"]["cart"]["items"].as_array().map(Vec::len),
            Some(items as usize)
        );
        assert!(edges[0]["node"]["cart"]["items"][0]["product"]["category"]["name"].is_string());
        counts.push(statements);
    }
    println!("statements for 5x2 and 50x10 carts: {counts:?}");
    assert_eq!(
        counts[0], counts[1],
        "statement count grew with the list sizes"
    );
    // A page of customers, their carts, the carts' lines, the lines' products, the
    // categories: exactly, so a statement run outside the counter would show too.
    assert_eq!(counts[1], 5, "{counts:?}");
}
