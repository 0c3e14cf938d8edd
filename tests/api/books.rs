//! The outside world's view of the checkout: a simulated payment provider served on
//! loopback (so that worker processes share its ledger), and checks that its books,
//! our orders and the stock agree.
#![allow(dead_code)]
use sea_orm::{DatabaseConnection, EntityTrait};
use shopgraph::checkout::gateway::{Ledger, Simulator, SimulatorConfig, charge_key};
use shopgraph::db::entities::{order_items, orders, products, sagas};
use std::collections::{BTreeMap, HashMap};

pub struct Provider {
    pub sim: Simulator,
    pub url: String,
}

/// Serves a simulated provider on a loopback port, on the test's runtime.
pub async fn serve_provider(config: SimulatorConfig) -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the provider: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("provider address: {e}"));
    let sim = Simulator::new(config);
    let router = sim.clone().router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Provider {
        sim,
        url: format!("http://{addr}"),
    }
}

/// What the books say once every saga is terminal.
#[derive(Debug)]
pub struct Books {
    pub ledger: Ledger,
    pub sagas_by_status: BTreeMap<String, usize>,
    pub completed_total_cents: i64,
    pub units_sold: HashMap<i64, i64>,
}

/// Reads the books and asserts that money and stock agree:
/// - what the provider holds (captured − refunded) is exactly the completed orders'
///   total, charge by charge: every completed checkout's charge is held for its order's
///   total, and no other charge is held;
/// - no key was captured twice;
/// - stock moved by exactly the units of completed orders, and no product is below 0;
/// - the statistics' aggregates equal a recomputation from the orders.
pub async fn check_books(
    db: &DatabaseConnection,
    ledger: Ledger,
    initial_stock: &HashMap<i64, i32>,
) -> Books {
    let all_sagas = sagas::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("read sagas: {e}"));
    let mut sagas_by_status = BTreeMap::new();
    for saga in &all_sagas {
        *sagas_by_status.entry(saga.status.clone()).or_default() += 1;
    }
    let unfinished: Vec<i64> = all_sagas
        .iter()
        .filter(|s| !matches!(s.status.as_str(), "COMPLETED" | "COMPENSATED" | "FAILED"))
        .map(|s| s.id)
        .collect();
    assert!(unfinished.is_empty(), "sagas not terminal: {unfinished:?}");

    let all_orders = orders::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("read orders: {e}"));
    let completed: HashMap<i64, &orders::Model> = all_orders
        .iter()
        .filter(|o| o.status == "COMPLETED")
        .map(|o| (o.id, o))
        .collect();
    let expected_held: BTreeMap<String, i64> = completed
        .values()
        .map(|o| (charge_key(o.saga_id), o.total_cents))
        .collect();
    let completed_total_cents: i64 = completed.values().map(|o| o.total_cents).sum();
    let mismatched: Vec<String> = ledger
        .held_by_key
        .iter()
        .filter(|(key, amount)| expected_held.get(*key) != Some(amount))
        .chain(
            expected_held
                .iter()
                .filter(|(key, _)| !ledger.held_by_key.contains_key(*key)),
        )
        .take(10)
        .map(|(key, amount)| {
            let saga = all_sagas
                .iter()
                .find(|s| charge_key(s.id) == *key)
                .map(|s| format!("{} {:?}", s.status, s.error));
            format!("{key} {amount}: {saga:?}")
        })
        .collect();
    assert!(
        mismatched.is_empty(),
        "charges held ≠ completed orders: {mismatched:#?}"
    );
    assert_eq!(
        ledger.captured_cents - ledger.refunded_cents,
        completed_total_cents,
        "captured − refunded at the provider ≠ the completed orders' total"
    );
    assert_eq!(
        ledger.held_by_key, expected_held,
        "the provider holds money for other charges than the completed orders'"
    );
    assert!(
        ledger.captures_by_key.values().all(|&n| n == 1),
        "a charge key was captured twice"
    );

    let mut units_sold: HashMap<i64, i64> = HashMap::new();
    for item in order_items::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("read order items: {e}"))
    {
        if completed.contains_key(&item.order_id) {
            *units_sold.entry(item.product_id).or_default() += i64::from(item.quantity);
        }
    }
    for product in products::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("read products: {e}"))
    {
        assert!(product.stock >= 0, "product {} below zero", product.id);
        if let Some(initial) = initial_stock.get(&product.id) {
            let sold = units_sold.get(&product.id).copied().unwrap_or(0);
            assert_eq!(
                i64::from(*initial) - i64::from(product.stock),
                sold,
                "stock of product {} moved by other than the units sold",
                product.id
            );
        }
    }
    // The check rebuilds the aggregates in a transaction it rolls back. On SQLite a
    // server still running (its outbox round, say) can take the write lock between the
    // check's read and its first write, which SQLite refuses at once (busy) instead of
    // waiting: tried again until a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let differences = loop {
        match shopgraph::services::stats::tally::verify(db).await {
            Ok(differences) => break differences,
            Err(shopgraph::error::AppError::Unavailable(_))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("check statistics: {e}"),
        }
    };
    assert!(
        differences.is_empty(),
        "the statistics' aggregates differ from the orders: {differences:#?}"
    );
    Books {
        ledger,
        sagas_by_status,
        completed_total_cents,
        units_sold,
    }
}
