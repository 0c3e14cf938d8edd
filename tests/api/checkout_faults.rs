//! The checkout under faults, judged by what the outside world sees: the payment
//! provider's ledger (calls and amounts), stock, and the answers clients get.
use crate::books::{Provider, check_books, serve_provider};
use crate::helpers::{TestApp, error_code, fresh_database_url, spawn_with, test_settings};
use crate::saga_helpers::{PLACE, SAGA, place_input, stock, wait_terminal};
use crate::worker_process::{Worker, start_worker};
use futures_util::StreamExt;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement, TransactionTrait,
};
use serde_json::{Value, json};
use shopgraph::checkout::gateway::SimulatorConfig;
use shopgraph::db::entities::sagas;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CANCEL: &str =
    "mutation($id: ID!, $key: String) { cancelOrder(id: $id, idempotencyKey: $key) { id kind } }";

/// An app whose checkout talks to `provider`.
async fn shop(
    provider: &Provider,
    configure: impl FnOnce(&mut shopgraph::config::Settings),
) -> TestApp {
    let mut settings = test_settings().await;
    settings.payment_gateway_url = Some(provider.url.clone());
    configure(&mut settings);
    spawn_with(settings).await
}

async fn completed_order(
    app: &TestApp,
    token: &str,
    product: &str,
    quantity: i32,
) -> (String, Value) {
    let placed = app
        .data(
            Some(token),
            PLACE,
            place_input(product, quantity, "tok_visa"),
        )
        .await;
    let saga = wait_terminal(
        app,
        token,
        placed["placeOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(saga["status"], "COMPLETED", "{saga}");
    (
        saga["order"]["id"].as_str().unwrap_or_default().to_owned(),
        saga,
    )
}

#[tokio::test]
async fn ten_parallel_cancellations_with_distinct_keys_cancel_the_order_once() {
    let provider = serve_provider(SimulatorConfig::default()).await;
    let app = shop(&provider, |_| {}).await;
    let product = app.create_product("TEA", "Tea", "4.50", 10).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let (order, _) = completed_order(&app, &token, &product, 2).await;
    assert_eq!(stock(&app, &product).await, 8);

    let cancels = (0..10).map(|n| {
        let (app, token, order) = (app.clone_handle(), token.clone(), order.clone());
        async move {
            let key = (n % 3 != 0).then(|| format!("cancel-{n}"));
            app.data(Some(&token), CANCEL, json!({"id": order, "key": key}))
                .await
        }
    });
    let answers = futures_util::future::join_all(cancels).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            a["cancelOrder"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "more than one cancellation: {answers:?}");
    let cancellation = ids.into_iter().next().unwrap_or_default();
    let finished = wait_terminal(&app, &token, &cancellation).await;
    assert_eq!(finished["status"], "COMPLETED", "{finished}");
    // And once more after it finished, with yet another key.
    let again = app
        .data(Some(&token), CANCEL, json!({"id": order, "key": "late"}))
        .await;
    assert_eq!(again["cancelOrder"]["id"], cancellation.as_str());

    assert_eq!(
        stock(&app, &product).await,
        10,
        "stock restored other than once"
    );
    let ledger = provider.sim.ledger();
    assert_eq!((ledger.captured_cents, ledger.refunded_cents), (900, 900));
    let cancellations = sagas::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|s| s.kind == "CANCEL_ORDER")
        .count();
    assert_eq!(cancellations, 1);
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_operation_and_to_one_request() {
    let provider = serve_provider(SimulatorConfig::default()).await;
    let app = shop(&provider, |_| {}).await;
    let product = app.create_product("CUP", "Cup", "3.00", 50).await;
    let customer = app.create_customer("Bo", "bo@example.com").await;
    let token = app.customer(customer);
    let place = |key: &str, quantity: i32| {
        let mut input = place_input(&product, quantity, "tok_visa");
        input["input"]["idempotencyKey"] = json!(key);
        input
    };
    let first = app.data(Some(&token), PLACE, place("K", 1)).await;
    let replay = app.data(Some(&token), PLACE, place("K", 1)).await;
    assert_eq!(first["placeOrder"]["id"], replay["placeOrder"]["id"]);
    // The same key for another request is refused, not answered with the first saga.
    let other = app.gql(Some(&token), PLACE, place("K", 2)).await;
    assert_eq!(error_code(&other), "CONFLICT", "{other}");

    let saga = wait_terminal(
        &app,
        &token,
        first["placeOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    let order = saga["order"]["id"].as_str().unwrap_or_default().to_owned();
    // The checkout's key means nothing to cancelOrder: it cancels.
    let cancel = app
        .data(Some(&token), CANCEL, json!({"id": order, "key": "K"}))
        .await;
    assert_eq!(cancel["cancelOrder"]["kind"], "CANCEL_ORDER");
    assert_ne!(cancel["cancelOrder"]["id"], first["placeOrder"]["id"]);
    let cancelled = wait_terminal(
        &app,
        &token,
        cancel["cancelOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(cancelled["status"], "COMPLETED", "{cancelled}");
    assert_eq!(stock(&app, &product).await, 50);
}

#[tokio::test]
async fn a_checkout_takes_from_the_cart_only_the_units_it_ordered() {
    let provider = serve_provider(SimulatorConfig {
        latency: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let app = shop(&provider, |_| {}).await;
    let product = app.create_product("PEN", "Pen", "1.00", 50).await;
    let customer = app.create_customer("Cy", "cy@example.com").await;
    let token = app.customer(customer);
    let add =
        "mutation($p: ID!, $q: Int!) { addToCart(productId: $p, quantity: $q) { itemCount } }";
    app.data(Some(&token), add, json!({"p": product, "q": 2}))
        .await;
    let accepted = app
        .data(
            Some(&token),
            "mutation { checkout(input: {paymentMethod: CARD, paymentToken: \"tok_visa\"}) { id } }",
            json!({}),
        )
        .await;
    // The charge takes 400 ms: these units arrive after the checkout was accepted.
    app.data(Some(&token), add, json!({"p": product, "q": 3}))
        .await;
    let saga = wait_terminal(
        &app,
        &token,
        accepted["checkout"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(saga["status"], "COMPLETED", "{saga}");
    assert_eq!(saga["order"]["total"], "2.00", "{saga}");
    let cart = app
        .data(Some(&token), "{ cart { items { quantity } } }", json!({}))
        .await;
    assert_eq!(cart["cart"]["items"], json!([{"quantity": 3}]), "{cart}");
}

/// Polls `saga` until `ready` holds for it; panics after 30 s.
async fn wait_for(app: &TestApp, token: &str, saga: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = app.data(Some(token), SAGA, json!({"id": saga})).await;
        if ready(&data["saga"]) {
            return data["saga"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "saga {saga} never got there: {data}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn step<'a>(saga: &'a Value, name: &str) -> &'a Value {
    saga["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_saga_whose_order_can_no_longer_be_created_is_compensated_and_ends_failed() {
    let provider = serve_provider(SimulatorConfig {
        latency: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let app = shop(&provider, |_| {}).await;
    let metrics_before = crate::protection::metrics_text(&app).await;
    let product = app.create_product("INK", "Ink", "6.00", 20).await;
    let customer = app.create_customer("Di", "di@example.com").await;
    let token = app.customer(customer);
    let placed = app
        .data(Some(&token), PLACE, place_input(&product, 2, "tok_visa"))
        .await;
    let id = placed["placeOrder"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for(&app, &token, &id, |s| {
        step(s, "RESERVE_STOCK")["status"] == "SUCCEEDED"
    })
    .await;

    // Staff cannot delete a product that a checkout under way holds...
    let refused = app
        .gql(
            Some(&app.staff()),
            "mutation($id: ID!) { deleteProduct(id: $id) }",
            json!({"id": product}),
        )
        .await;
    assert_eq!(error_code(&refused), "CONFLICT", "{refused}");
    // ...so the permanent error is forced from outside the API.
    app.db
        .execute_unprepared(&format!("DELETE FROM products WHERE id = {product}"))
        .await
        .unwrap_or_else(|e| panic!("delete the product: {e}"));

    let saga = wait_terminal(&app, &token, &id).await;
    assert_eq!(saga["status"], "FAILED", "{saga}");
    let error = saga["error"].as_str().unwrap_or_default();
    assert!(error.contains("CREATE_ORDER"), "{saga}");
    assert!(
        step(&saga, "CREATE_ORDER")["attempts"]
            .as_i64()
            .unwrap_or(99)
            <= 5,
        "{saga}"
    );
    let ledger = provider.sim.ledger();
    assert_eq!((ledger.captured_cents, ledger.refunded_cents), (1200, 1200));
    let stats = app
        .data(
            Some(&app.admin()),
            "{ queueStats { failed deadLetters } }",
            json!({}),
        )
        .await;
    assert_eq!(stats["queueStats"], json!({"failed": 1, "deadLetters": 1}));
    let metrics_after = crate::protection::metrics_text(&app).await;
    let dead =
        |text: &str| crate::protection::metric(text, "shopgraph_saga_dead_letters_total", &[]);
    assert!(dead(&metrics_after) - dead(&metrics_before) >= 1.0);
}

#[tokio::test]
async fn a_saga_that_cannot_reach_the_provider_gives_up_and_is_compensated_when_it_returns() {
    let port = crate::redis_process::free_port();
    let app = {
        let mut settings = test_settings().await;
        settings.payment_gateway_url = Some(format!("http://127.0.0.1:{port}"));
        settings.payment_timeout_ms = 200;
        settings.saga_max_attempts = 2;
        spawn_with(settings).await
    };
    let product = app.create_product("MAP", "Map", "9.00", 5).await;
    let customer = app.create_customer("Ed", "ed@example.com").await;
    let token = app.customer(customer);
    let placed = app
        .data(Some(&token), PLACE, place_input(&product, 1, "tok_visa"))
        .await;
    let id = placed["placeOrder"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dead = wait_for(&app, &token, &id, |s| {
        s["error"].as_str().is_some_and(|e| e.contains("gave up"))
    })
    .await;
    assert_eq!(dead["status"], "COMPENSATING", "{dead}");
    assert_eq!(
        stock(&app, &product).await,
        4,
        "released before the charge was settled"
    );

    // The provider comes back: the refund settles the unknown charge (cancelling it).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind the provider: {e}"));
    let sim = shopgraph::checkout::gateway::Simulator::default();
    let router = sim.clone().router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let saga = wait_terminal(&app, &token, &id).await;
    assert_eq!(saga["status"], "FAILED", "{saga}");
    assert_eq!(stock(&app, &product).await, 5);
    let ledger = sim.ledger();
    assert_eq!(ledger.captured_cents, 0);
    assert_eq!(
        ledger.calls.get("refund:nothing_captured"),
        Some(&1),
        "{ledger:?}"
    );
}

async fn terminal_count(db: &DatabaseConnection) -> usize {
    sagas_by_status(db)
        .await
        .iter()
        .filter(|(status, _)| matches!(status.as_str(), "COMPLETED" | "COMPENSATED" | "FAILED"))
        .map(|(_, n)| n)
        .sum()
}

async fn sagas_by_status(db: &DatabaseConnection) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for saga in sagas::Entity::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("read the sagas: {e}"))
    {
        *counts.entry(saga.status).or_default() += 1;
    }
    counts
}

/// What a stalled run looked like: the sagas, and each worker's state and last words.
async fn stall_report(db: &DatabaseConnection, workers: &mut [Option<&mut Worker>]) -> String {
    let mut report = format!("sagas {:?}", sagas_by_status(db).await);
    for (n, worker) in workers.iter_mut().enumerate() {
        if let Some(worker) = worker {
            let state = worker
                .exited()
                .map_or("running".to_owned(), |status| format!("exited ({status})"));
            report += &format!(
                "\nworker {n}: {state}; its log ends:\n{}",
                worker.log_tail(20)
            );
        }
    }
    report
}

/// Kills one of the workers' PostgreSQL connections every 200 ms until told to stop;
/// returns how many it killed.
fn kill_connections(
    admin: DatabaseConnection,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut killed = 0;
        while !*stop.borrow() {
            let row = admin
                .query_one_raw(Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT count(pg_terminate_backend(pid)) AS n FROM (SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = 'shop-fault-worker' \
                     ORDER BY random() LIMIT 1) AS victim",
                ))
                .await;
            if let Ok(Some(row)) = row {
                killed += row.try_get::<i64>("", "n").unwrap_or(0) as usize;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        killed
    })
}

#[tokio::test]
async fn a_thousand_sagas_keep_the_books_through_a_paused_worker_killed_connections_and_lost_answers()
 {
    let mut database_url = fresh_database_url().await;
    let postgres = !database_url.starts_with("sqlite:");
    if !postgres {
        let file = std::env::temp_dir().join(format!("shop-faults-{}.db", rand::random::<u32>()));
        database_url = format!("sqlite://{}?mode=rwc", file.display());
    }
    // 150 ms a call: workers spend most of their time waiting on the provider, outside
    // any transaction, so a pause rarely lands while one holds SQLite's write lock.
    let provider = serve_provider(SimulatorConfig {
        latency: Duration::from_millis(150),
        ambiguous_rate: 0.1,
    })
    .await;
    let mut settings = test_settings().await;
    settings.database_url = Some(database_url.clone());
    settings.worker_concurrency = 0;
    let prefix = settings.cache_key_prefix.clone();
    let app = spawn_with(settings).await;
    let mut products = Vec::new();
    let mut initial_stock = HashMap::new();
    for n in 0..20 {
        let id = app
            .create_product(
                &format!("P{n}"),
                &format!("Product {n}"),
                &format!("{}.25", n + 1),
                100,
            )
            .await;
        initial_stock.insert(id.parse::<i64>().unwrap_or_default(), 100);
        products.push(id);
    }
    let mut tokens = Vec::new();
    for n in 0..10 {
        let customer = app
            .create_customer(&format!("C{n}"), &format!("c{n}@example.com"))
            .await;
        tokens.push(app.customer(customer));
    }

    let worker_url = if postgres {
        format!("{database_url}?application_name=shop-fault-worker")
    } else {
        database_url.clone()
    };
    // The worker to pause runs alone until its first pause, so that it holds sagas then
    // (with two, a pause could land while the other had claimed all the queue).
    let mut stale = start_worker(&worker_url, &provider.url, &prefix, "a").await;
    let mut other: Option<Worker> = None;
    let (stop_killing, stop) = tokio::sync::watch::channel(false);
    let killer = if postgres {
        let admin = Database::connect(&database_url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Some(kill_connections(admin, stop))
    } else {
        None
    };

    let (shop, catalog) = (app.clone_handle(), products.clone());
    let orders = futures_util::stream::iter(0..1000usize).map(move |n| {
        let app = shop.clone_handle();
        let token = tokens[n % tokens.len()].clone();
        let lines: Vec<Value> = (0..1 + n % 2)
            .map(|l| json!({"productId": catalog[(n * 7 + l * 3) % catalog.len()], "quantity": 1 + (n + l) % 3}))
            .collect();
        async move {
            // A client that retries a busy answer with the same idempotency key, as
            // clients should: a paused worker can hold SQLite's write lock.
            let input = json!({"input": {"items": lines, "paymentMethod": "CARD",
                "paymentToken": "tok_visa", "idempotencyKey": format!("order-{n}")}});
            for _ in 0..20 {
                let body = app.gql(Some(&token), PLACE, input.clone()).await;
                let code = &body["errors"][0]["extensions"]["code"];
                if code != "UNAVAILABLE" {
                    // The orders ask for more than the stock (3 000 units of 2 000), so
                    // once completed sagas have taken it, refusing more is the answer.
                    assert!(
                        body.get("errors").is_none() || code == "OUT_OF_STOCK",
                        "order {n} refused: {body}"
                    );
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            panic!("order {n} was never accepted")
        }
    });
    let placing = tokio::spawn(orders.buffer_unordered(16).collect::<Vec<_>>());

    // Pause one worker for three leases while the queue is busy, then let it go on. On
    // SQLite a pause inside a transaction holds the write lock, so nobody can take the
    // worker's sagas over: pause again (up to four times) until a takeover happened.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pauses = 0;
    while pauses < 4 && terminal_count(&app.db).await < 800 {
        while terminal_count(&app.db).await < 100 * (pauses + 1) {
            assert!(
                Instant::now() < deadline,
                "the sagas did not progress: {}",
                stall_report(&app.db, &mut [Some(&mut stale), other.as_mut()]).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stale.signal("-STOP");
        if other.is_none() {
            other = Some(start_worker(&worker_url, &provider.url, &prefix, "b").await);
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        stale.signal("-CONT");
        pauses += 1;
        let noticed = Instant::now() + Duration::from_secs(3);
        while stale.log_lines_with("lease taken over") == 0 && Instant::now() < noticed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if stale.log_lines_with("lease taken over") > 0 {
            break;
        }
    }

    let placed = placing.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed.len(), 1000);
    let accepted = placed.iter().filter(|b| b.get("errors").is_none()).count();
    assert!(
        accepted >= 500,
        "only {accepted} of 1000 orders were accepted"
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    while terminal_count(&app.db).await < accepted {
        assert!(
            Instant::now() < deadline,
            "sagas were left unfinished: {}",
            stall_report(&app.db, &mut [Some(&mut stale), other.as_mut()]).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_killing.send(true);
    let killed = match killer {
        Some(killer) => killer.await.unwrap_or(0),
        None => 0,
    };
    let books = check_books(&app.db, provider.sim.ledger(), &initial_stock).await;
    let takeovers = stale.log_lines_with("lease taken over");
    let dead_letters = stale.log_lines_with("saga dead-lettered")
        + other.map_or(0, |other| other.log_lines_with("saga dead-lettered"));
    println!(
        "faults ({}): {accepted} of 1000 orders accepted; sagas {:?}; provider captured {} refunded {} held {} cents = completed orders {}; calls {:?}; \
         {pauses} pauses of 6 s, after which the paused worker found {takeovers} of its sagas taken over; {dead_letters} dead letters; {killed} connections killed",
        if postgres { "PostgreSQL" } else { "SQLite" },
        books.sagas_by_status,
        books.ledger.captured_cents,
        books.ledger.refunded_cents,
        books.ledger.captured_cents - books.ledger.refunded_cents,
        books.completed_total_cents,
        books.ledger.calls,
    );
    assert!(
        takeovers > 0,
        "the paused worker held nothing; the pause proved nothing"
    );
    assert!(!postgres || killed > 0, "no connection was killed");
    assert!(
        books
            .sagas_by_status
            .get("COMPLETED")
            .is_some_and(|&n| n > 100),
        "{books:?}"
    );
}

/// A worker whose database connection is killed while it starts (its migration's
/// statement cut off) retries, comes up, and takes checkouts. It used to exit, and a
/// fleet came up without it.
#[tokio::test]
async fn a_worker_whose_connection_is_killed_while_it_migrates_comes_up_and_takes_checkouts() {
    let database_url = fresh_database_url().await;
    if database_url.starts_with("sqlite:") {
        return; // connections are killed on PostgreSQL only
    }
    let provider = serve_provider(SimulatorConfig::default()).await;
    let mut settings = test_settings().await;
    settings.database_url = Some(database_url.clone());
    settings.worker_concurrency = 0;
    let prefix = settings.cache_key_prefix.clone();
    let app = spawn_with(settings).await;
    let product = app.create_product("K1", "Kettle", "19.99", 5).await;
    let token = app.customer(app.create_customer("Kim", "kim@example.com").await);

    // The worker's migration stops on a lock the test holds, and its connection is
    // killed there: a kill that lands mid-startup every time, not by chance.
    let admin = Database::connect(&database_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lock = admin.begin().await.unwrap_or_else(|e| panic!("{e}"));
    lock.execute_unprepared("LOCK TABLE seaql_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = "shop-starting-worker";
    let url = format!("{database_url}?application_name={name}");
    let mut worker = start_worker(&url, &provider.url, &prefix, "starting").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let killed = admin
            .query_one_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!(
                    "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = '{name}' \
                     AND wait_event_type = 'Lock'"
                ),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .and_then(|row| row.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        if killed > 0 {
            break;
        }
        assert!(
            worker.exited().is_none() && Instant::now() < deadline,
            "the worker never waited on the lock: {}",
            worker.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.commit().await.unwrap_or_else(|e| panic!("{e}"));

    while worker.log_lines_with("checkout workers started") == 0 {
        assert!(
            worker.exited().is_none() && Instant::now() < deadline,
            "the worker did not come up after its connection was killed: {}",
            worker.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        worker.log_lines_with("migrating the database failed; retrying"),
        1,
        "{}",
        worker.log_tail(20)
    );
    let placed = app
        .data(Some(&token), PLACE, place_input(&product, 2, "tok_visa"))
        .await;
    // The app runs no workers: only the started worker can finish the saga.
    wait_terminal(
        &app,
        &token,
        placed["placeOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
}

#[tokio::test]
async fn an_intake_written_again_after_a_lost_answer_inserts_nothing_twice() {
    let mut settings = test_settings().await;
    settings.worker_concurrency = 0;
    let app = spawn_with(settings).await;
    if app.db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return; // the group-commit intake exists on PostgreSQL only
    }
    let customer = app.create_customer("Fay", "fay@example.com").await;
    let intake = shopgraph::checkout::intake::Intake::start(app.db.clone());
    let saga = shopgraph::checkout::intake::NewSaga {
        tenant: "default".into(),
        kind: shopgraph::checkout::model::SagaKind::Checkout,
        customer,
        payload: r#"{"lines":[],"payment_method":"CARD","payment_token":null,"clear_cart":false,"cancels_saga":null}"#.into(),
        idempotency_key: None,
        request_hash: "h".into(),
        request_id: "request-1".into(),
        cancels_order: None,
    };
    let first = intake
        .write(saga.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The same request written again, as a writer does when a commit's answer is lost.
    let again = intake.write(saga).await.unwrap_or_else(|e| panic!("{e}"));
    let (first, again) = (first.map(|s| s.id), again.map(|s| s.id));
    assert!(first.is_some());
    assert_eq!(first, again);
    let rows = sagas::Entity::find()
        .all(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn metrics_count_provider_calls() {
    use crate::protection::{metric, metrics_text};
    let app = spawn_with(test_settings().await).await;
    let before = metrics_text(&app).await;
    let product = app.create_product("BAG", "Bag", "12.00", 5).await;
    let customer = app.create_customer("Gil", "gil@example.com").await;
    let token = app.customer(customer);
    let placed = app
        .data(Some(&token), PLACE, place_input(&product, 1, "tok_visa"))
        .await;
    let saga = wait_terminal(
        &app,
        &token,
        placed["placeOrder"]["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(saga["status"], "COMPLETED", "{saga}");
    let after = metrics_text(&app).await;
    let captured = [("op", "charge"), ("outcome", "captured")];
    assert!(
        metric(&after, "shopgraph_gateway_calls_total", &captured)
            - metric(&before, "shopgraph_gateway_calls_total", &captured)
            >= 1.0
    );
    // The ledger gauges are the process's, and every test's simulator in this process
    // sets them: only their presence is this test's to check.
    assert!(after.contains("shopgraph_gateway_captured_cents"));
}

#[tokio::test]
async fn a_step_run_again_after_a_lost_commit_answer_changes_nothing() {
    use shopgraph::checkout::failures::FailureRates;
    use shopgraph::checkout::gateway::Simulator;
    use shopgraph::checkout::lease::Lease;
    use shopgraph::checkout::model::{Payload, SagaKind};
    use shopgraph::checkout::steps::{self, Ctx, Member, Verdict, Work};
    let app = spawn_with(test_settings().await).await;
    let product = app.create_product("LOST", "Lost", "2.00", 10).await;
    let customer = app.create_customer("Lu", "lu@example.com").await;
    let token = app.customer(customer);
    let (order, _) = completed_order(&app, &token, &product, 3).await;
    let cancel = app
        .data(Some(&token), CANCEL, json!({"id": order, "key": null}))
        .await;
    let id = cancel["cancelOrder"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        wait_terminal(&app, &token, &id).await["status"],
        "COMPLETED"
    );
    assert_eq!(stock(&app, &product).await, 10);

    // As if a worker's commit had gone through unheard and it ran the cancellation's
    // steps again: it holds the saga under its own fence (a lease the other workers
    // see as current, so they leave it alone).
    let fence = 424_242;
    app.db
        .execute_unprepared(&format!(
            "UPDATE sagas SET status = 'RUNNING', fence = {fence}, lease_until = {} WHERE id = {id}",
            chrono::Utc::now().timestamp_millis() + 600_000
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let saga = sagas::Entity::find_by_id(id.parse::<i64>().unwrap_or_default())
        .one(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no saga {id}"));
    let payload: Payload = serde_json::from_str(&saga.payload).unwrap_or_else(|e| panic!("{e}"));
    let lease = Lease {
        fence,
        duration: Duration::from_secs(600),
    };
    let provider = Simulator::default();
    let ctx = Ctx {
        db: &app.db,
        gateway: &provider,
        failures: &FailureRates::default(),
        lease: &lease,
    };
    let member = Member {
        saga: &saga,
        payload: &payload,
    };
    for step in SagaKind::CancelOrder.steps() {
        let work = Work::Run(SagaKind::CancelOrder, *step);
        let outcomes = steps::execute(&ctx, work, &[member], None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            outcomes.verdicts,
            vec![(saga.id, Verdict::Done)],
            "{step:?}"
        );
    }
    assert_eq!(stock(&app, &product).await, 10, "restocked twice");
    assert_eq!(
        provider.ledger().calls.len(),
        0,
        "the provider was asked again"
    );
    let saga_now = app.data(Some(&token), SAGA, json!({"id": id})).await;
    for step in saga_now["saga"]["steps"].as_array().into_iter().flatten() {
        assert_eq!(step["status"], "SUCCEEDED", "{saga_now}");
    }
}
