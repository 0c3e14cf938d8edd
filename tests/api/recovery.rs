//! Crash recovery and scale-out of the checkout: the server runs as a child process
//! that is SIGKILLed while sagas are in flight, then restarted.
use crate::books::{check_books, serve_provider};
use crate::helpers::{
    SECRET, TestApp, fresh_database_url, spawn_with, tenant, test_redis_url, test_settings,
};
use crate::redis_process::free_port;
use crate::saga_helpers::{PLACE, SAGA, place_input, subscribe};
use sea_orm::{Database, DatabaseConnection, EntityTrait};
use serde_json::{Value, json};
use shopgraph::auth::{JwtKeys, Role};
use shopgraph::checkout::gateway::SimulatorConfig;
use shopgraph::db::entities::sagas;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(database_url: &str, port: u16, prefix: &str, provider: &str) -> Server {
    start_server_with(database_url, port, prefix, provider, &[]).await
}

pub async fn start_server_with(
    database_url: &str,
    port: u16,
    prefix: &str,
    provider: &str,
    extra: &[(&str, &str)],
) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopgraph"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", SECRET)
        .env("SEED_DEMO", "false")
        .env("WORKER_CONCURRENCY", "4")
        // Small batches, so that sagas finish in waves and the kill finds some in flight
        // (one batch of all 60 would finish them in one transaction).
        .env("WORKER_BATCH_SIZE", "4")
        .env("SAGA_LEASE_SECS", "1")
        .env("PAYMENT_GATEWAY_URL", provider)
        .env("SAGA_FAIL_RATE_CREATE_ORDER", "0.3")
        .env("CACHE_KEY_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(redis) = test_redis_url().await {
        command.env("REDIS_URL", redis);
    }
    command.envs(extra.iter().copied());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start the server: {e}"));
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("{}/health/ready", server.url))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn gql(url: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default()
}

pub async fn unfinished(db: &DatabaseConnection) -> usize {
    sagas::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("read the sagas: {e}"))
        .iter()
        .filter(|s| !matches!(s.status.as_str(), "COMPLETED" | "COMPENSATED" | "FAILED"))
        .count()
}

/// A database the server processes and the test share (a SQLite file rather than an
/// in-memory one), migrated, with `customers` customers of the tenant `default`.
///
/// Seeded before a server starts: on SQLite two processes writing at once can meet in a
/// lock upgrade that SQLite refuses at once (SQLITE_BUSY) rather than waits out.
pub async fn database_with_customers(customers: usize) -> (String, DatabaseConnection) {
    let mut database_url = fresh_database_url().await;
    if database_url.starts_with("sqlite::memory:") {
        database_url = crate::helpers::shared_sqlite_url();
    }
    let db = Database::connect(&database_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    shopgraph::db::migrate(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    shopgraph::services::customers::ensure_tenant(&db, &tenant("default"), "Default")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    shopgraph::services::seed::generate(
        &db,
        &tenant("default"),
        shopgraph::services::seed::SeedSize {
            products: 0,
            customers,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (database_url, db)
}

#[tokio::test]
async fn sagas_interrupted_by_a_killed_process_finish_after_a_restart_with_nothing_charged_twice() {
    let (database_url, db) = database_with_customers(10).await;
    let port = free_port();
    let prefix = format!("crash{}", rand::random::<u32>());
    // The provider outlives the server, as a real one would: its ledger is the truth.
    let provider = serve_provider(SimulatorConfig {
        latency: Duration::from_millis(150),
        ambiguous_rate: 0.0,
    })
    .await;
    let server = start_server(&database_url, port, &prefix, &provider.url).await;
    let jwt = JwtKeys::new(SECRET.as_bytes());
    let token = |role: Role, sub: &str| {
        jwt.issue(&tenant("default"), sub, role, chrono::Duration::hours(1))
            .unwrap_or_default()
    };
    let staff = token(Role::Staff, "staff");
    let product = gql(&server.url, &staff, "mutation { createProduct(input: {sku: \"X\", name: \"X\", price: \"3.00\", stock: 1000}) { id } }", json!({})).await;
    let product = product["data"]["createProduct"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let product_id: i64 = product
        .parse()
        .unwrap_or_else(|e| panic!("product id {product}: {e}"));

    let orders_placed = (0..60).map(|n: usize| {
        let (url, product, token) = (
            server.url.clone(),
            product.clone(),
            token(Role::Customer, &(n % 10 + 1).to_string()),
        );
        async move {
            gql(
                &url,
                &token,
                PLACE,
                place_input(&product, (n % 4 + 1) as i32, "tok_visa"),
            )
            .await
        }
    });
    for body in futures_util::future::join_all(orders_placed).await {
        assert!(body.get("errors").is_none(), "{body}");
    }
    // Kill once some sagas have finished, so others are caught mid-step or mid-compensation.
    let deadline = Instant::now() + Duration::from_secs(30);
    while unfinished(&db).await > 45 {
        assert!(Instant::now() < deadline, "sagas did not progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = unfinished(&db).await;
    drop(server); // SIGKILL
    assert!(
        in_flight > 0,
        "every saga finished before the kill; the test proved nothing"
    );
    let interrupted = unfinished(&db).await;

    let _server = start_server(&database_url, port, &prefix, &provider.url).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while unfinished(&db).await > 0 {
        assert!(
            Instant::now() < deadline,
            "sagas were left unfinished after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let books = check_books(
        &db,
        provider.sim.ledger(),
        &HashMap::from([(product_id, 1000)]),
    )
    .await;
    println!(
        "crash recovery: {} sagas, {in_flight} in flight at the kill ({interrupted} unfinished after it), {:?}; provider captured {} refunded {} cents in {:?}",
        books.sagas_by_status.values().sum::<usize>(),
        books.sagas_by_status,
        books.ledger.captured_cents,
        books.ledger.refunded_cents,
        books.ledger.calls,
    );
    assert!(
        books
            .sagas_by_status
            .get("COMPLETED")
            .is_some_and(|&n| n > 0),
        "no saga completed: {books:?}"
    );
}

#[tokio::test]
async fn a_subscriber_on_one_instance_sees_a_saga_run_by_a_worker_on_another() {
    let Some(_) = test_redis_url().await else {
        return;
    };
    let mut api_settings = crate::helpers::shared_settings().await;
    api_settings.worker_concurrency = 0;
    let mut worker_settings = test_settings().await;
    worker_settings
        .database_url
        .clone_from(&api_settings.database_url);
    worker_settings
        .cache_key_prefix
        .clone_from(&api_settings.cache_key_prefix);
    worker_settings.payment_latency_ms = 400;
    let api: TestApp = spawn_with(api_settings).await;
    let _worker: TestApp = spawn_with(worker_settings).await;
    let product = api.create_product("MUG", "Mug", "7.50", 10).await;
    let customer = api.create_customer("Ana", "ana@example.com").await;
    let token = api.customer(customer);
    let accepted = api
        .data(Some(&token), PLACE, place_input(&product, 1, "tok_visa"))
        .await;
    let id = accepted["placeOrder"]["id"].clone();
    let updates = subscribe(
        &api,
        "graphql-transport-ws",
        &token,
        "subscription($id: ID!) { sagaUpdates(id: $id) { status steps { status } } }",
        json!({"id": id}),
    )
    .await;
    let statuses: Vec<String> = updates
        .iter()
        .map(|u| {
            u["data"]["sagaUpdates"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("COMPLETED"),
        "{statuses:?}"
    );
    // The charge takes 400 ms on the worker instance: transitions before it arrive as
    // events, not only through the subscriber's 1 s poll.
    assert!(updates.len() >= 3, "{updates:?}");
    let saga = api.data(Some(&token), SAGA, json!({"id": id})).await;
    assert_eq!(saga["saga"]["status"], "COMPLETED");
}

/// The outbox row a mutation's transaction wrote survives the instance that made it:
/// killed (SIGKILL) after its commit and before its invalidation reached Redis, the
/// change is still invalidated, by another instance, instead of being served stale
/// until the entry's TTL.
#[tokio::test]
async fn a_change_whose_instance_died_before_invalidating_it_is_invalidated_by_another() {
    if test_redis_url().await.is_none() {
        return;
    }
    let mut survivor_settings = crate::helpers::shared_settings().await;
    survivor_settings.worker_concurrency = 0;
    let database_url = survivor_settings.database_url.clone().unwrap_or_default();
    let prefix = survivor_settings.cache_key_prefix.clone();
    let survivor = spawn_with(survivor_settings).await;
    let id = survivor.create_product("MUG", "Mug", "7.00", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    survivor.debug(None, q, json!({"id": id})).await;
    let cached = survivor.debug(None, q, json!({"id": id})).await;
    assert_eq!(cached["extensions"]["debug"]["cache"][0]["outcome"], "hit");

    let port = free_port();
    let mut doomed = start_server_with(
        &database_url,
        port,
        &prefix,
        "http://127.0.0.1:9",
        &[
            ("FAULT_INVALIDATION_DELAY_MS", "600000"),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let staff = survivor.staff();
    let (url, mutation_id) = (doomed.url.clone(), id.clone());
    // Its answer never comes: the invalidation it waits for is held open.
    let pending = tokio::spawn(async move {
        gql(
            &url,
            &staff,
            "mutation($id: ID!) { updateProduct(id: $id, input: {price: \"9.00\"}) { id } }",
            json!({"id": mutation_id}),
        )
        .await
    });
    let product_id: i64 = id.parse().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let committed = shopgraph::db::entities::products::Entity::find_by_id(product_id)
            .one(&survivor.db)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.price_cents == 900);
        if committed {
            break;
        }
        assert!(Instant::now() < deadline, "the mutation did not commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = doomed.child.kill();
    let _ = doomed.child.wait();
    pending.abort();

    let stale = survivor.debug(None, q, json!({"id": id})).await;
    assert_eq!(
        stale["data"]["product"]["price"], "7.00",
        "the killed instance's invalidation ran after all: this test no longer holds the window open"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let started = Instant::now();
    loop {
        let seen = survivor.debug(None, q, json!({"id": id})).await;
        if seen["data"]["product"]["price"] == "9.00" {
            println!(
                "invalidated by the survivor {:?} after the kill",
                started.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change of the killed instance is still served stale: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
