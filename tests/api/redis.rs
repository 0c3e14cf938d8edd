//! Real-Redis behaviour: outages, stalls, several instances, read replicas. These run
//! whenever TEST_REDIS_URL is set (always in CI).
use crate::helpers::{
    TestApp, cache_outcome as outcome, spawn_with, test_redis_url, test_settings,
};
use crate::redis_process::{RedisProcess, StallableLink, free_port};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PRODUCTS: &str = "{ products(first: 5) { edges { node { id name price } } } }";

async fn cache_health(app: &TestApp) -> String {
    let body: Value = app
        .client
        .get(app.url("/health/cache"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    body["status"].as_str().unwrap_or_default().to_owned()
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_redis_outage_is_served_from_the_database_and_the_cache_recovers_by_itself() {
    if test_redis_url().await.is_none() {
        return;
    }
    let port = free_port();
    let redis = RedisProcess::start(port, None).await;
    let mut settings = test_settings().await;
    settings.redis_url = Some(redis.url());
    let app = spawn_with(settings).await;
    app.create_product("MUG", "Mug", "7.50", 3).await;
    app.debug(None, PRODUCTS, json!({})).await;
    assert_eq!(
        outcome(&app.debug(None, PRODUCTS, json!({})).await, "products"),
        "hit"
    );

    drop(redis);
    for _ in 0..5 {
        let body = app.debug(None, PRODUCTS, json!({})).await;
        assert_eq!(body["data"]["products"]["edges"][0]["node"]["name"], "Mug");
        assert_ne!(outcome(&body, "products"), "hit");
    }
    // Mutations succeed too; their invalidation is lost with the cache it targeted.
    app.create_product("LAMP", "Lamp", "9.00", 1).await;
    assert_eq!(cache_health(&app).await, "degraded");

    let _redis = RedisProcess::start(port, None).await;
    eventually("cache hits to resume", || async {
        app.debug(None, PRODUCTS, json!({})).await;
        outcome(&app.debug(None, PRODUCTS, json!({})).await, "products") == "hit"
    })
    .await;
    assert_eq!(cache_health(&app).await, "ok");
    let fresh = app.debug(None, PRODUCTS, json!({})).await;
    assert_eq!(
        fresh["data"]["products"]["edges"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn an_invalidation_missed_during_an_outage_is_replayed_when_redis_returns_with_its_data() {
    if test_redis_url().await.is_none() {
        return;
    }
    // A Redis that keeps its data across the outage, as an append-only one does.
    let mut redis = RedisProcess::start_persistent(free_port()).await;
    let mut settings = test_settings().await;
    settings.redis_url = Some(redis.url());
    let app = spawn_with(settings).await;
    let id = app.create_product("MUG", "Mug", "7.50", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    app.debug(None, q, json!({"id": id})).await;
    redis.kill();
    app.data(
        Some(&app.staff()),
        "mutation($id: ID!) { updateProduct(id: $id, input: {price: \"9.99\"}) { id } }",
        json!({"id": id}),
    )
    .await;
    redis.restart().await;
    eventually("the stale entry to be dropped", || async {
        let body = app.debug(None, q, json!({"id": id})).await;
        body["data"]["product"]["price"] == "9.99" && outcome(&body, "product") != "bypass"
    })
    .await;
    let again = app.debug(None, q, json!({"id": id})).await;
    assert_eq!(again["data"]["product"]["price"], "9.99");
}

#[tokio::test]
async fn a_redis_that_accepts_but_never_answers_costs_a_bounded_wait_not_an_error() {
    if test_redis_url().await.is_none() {
        return;
    }
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = stall.local_addr().map(|a| a.port()).unwrap_or_default();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stall.accept().await {
            held.push(socket);
        }
    });
    let mut settings = test_settings().await;
    settings.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    let app = spawn_with(settings).await;
    app.create_product("MUG", "Mug", "7.50", 3).await;
    let started = Instant::now();
    let body = app.debug(None, PRODUCTS, json!({})).await;
    assert_eq!(body["data"]["products"]["edges"][0]["node"]["name"], "Mug");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(cache_health(&app).await, "degraded");
}

#[tokio::test]
async fn a_write_on_one_instance_is_seen_at_once_by_another_sharing_redis() {
    let Some(_) = test_redis_url().await else {
        return;
    };
    let first_settings = crate::helpers::shared_settings().await;
    let mut second_settings = test_settings().await;
    second_settings
        .database_url
        .clone_from(&first_settings.database_url);
    second_settings
        .cache_key_prefix
        .clone_from(&first_settings.cache_key_prefix);
    let a = spawn_with(first_settings).await;
    let b = spawn_with(second_settings).await;
    let id = a.create_product("MUG", "Mug", "7.50", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    b.debug(None, q, json!({"id": id})).await;
    assert_eq!(
        outcome(&b.debug(None, q, json!({"id": id})).await, "product"),
        "hit"
    );
    for price in ["8.00", "8.50", "9.00"] {
        a.data(
            Some(&a.staff()),
            "mutation($id: ID!, $p: Decimal!) { updateProduct(id: $id, input: {price: $p}) { id } }",
            json!({"id": id, "p": price}),
        )
        .await;
        let seen = b.debug(None, q, json!({"id": id})).await;
        assert_eq!(seen["data"]["product"]["price"], price);
    }
}

#[tokio::test]
async fn reads_go_to_replicas_stay_fresh_after_writes_and_survive_a_dead_replica() {
    let Some(primary_url) = test_redis_url().await else {
        return;
    };
    let primary_port = redis::parse_redis_url(&primary_url)
        .and_then(|u| u.port())
        .unwrap_or(6379);
    let replica_1 = RedisProcess::start(free_port(), Some(primary_port)).await;
    let replica_2 = RedisProcess::start(free_port(), Some(primary_port)).await;
    let mut settings = test_settings().await;
    settings.redis_replica_urls = vec![replica_1.url(), replica_2.url()];
    let app = spawn_with(settings).await;
    let id = app.create_product("MUG", "Mug", "7.00", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    let (before_1, before_2) = (replica_1.calls("mget").await, replica_2.calls("mget").await);
    for cents in 10..30 {
        let price = format!("7.{cents}");
        app.data(
            Some(&app.staff()),
            "mutation($id: ID!, $p: Decimal!) { updateProduct(id: $id, input: {price: $p}) { id } }",
            json!({"id": id, "p": price}),
        )
        .await;
        for _ in 0..2 {
            let seen = app.debug(None, q, json!({"id": id})).await;
            assert_eq!(
                seen["data"]["product"]["price"], price,
                "a read after the write saw older data"
            );
        }
    }
    assert!(
        replica_1.calls("mget").await > before_1,
        "replica 1 served no reads"
    );
    assert!(
        replica_2.calls("mget").await > before_2,
        "replica 2 served no reads"
    );

    drop(replica_1);
    for cents in 40..45 {
        let price = format!("7.{cents}");
        app.data(
            Some(&app.staff()),
            "mutation($id: ID!, $p: Decimal!) { updateProduct(id: $id, input: {price: $p}) { id } }",
            json!({"id": id, "p": price}),
        )
        .await;
        let seen = app.debug(None, q, json!({"id": id})).await;
        assert!(seen.get("errors").is_none(), "{seen}");
        assert_eq!(seen["data"]["product"]["price"], price);
    }
}

/// Read-your-writes across instances with a replica that lags while it still answers:
/// the instance that invalidates fences the replica off for every instance before its
/// mutation returns, so another instance's next read cannot be served the dropped entry.
#[tokio::test]
async fn a_lagging_replica_is_fenced_off_for_every_instance_until_it_catches_up() {
    if test_redis_url().await.is_none() {
        return;
    }
    let primary = RedisProcess::start(free_port(), None).await;
    let link = StallableLink::to(primary.port).await;
    let replica = RedisProcess::start(free_port(), Some(link.port)).await;
    let mut writer_settings = crate::helpers::shared_settings().await;
    writer_settings.redis_url = Some(primary.url());
    writer_settings.redis_replica_urls = vec![replica.url()];
    let mut reader_settings = test_settings().await;
    reader_settings
        .database_url
        .clone_from(&writer_settings.database_url);
    reader_settings
        .cache_key_prefix
        .clone_from(&writer_settings.cache_key_prefix);
    reader_settings.redis_url = Some(primary.url());
    reader_settings.redis_replica_urls = vec![replica.url()];
    let writer = spawn_with(writer_settings).await;
    let reader = spawn_with(reader_settings).await;
    let id = writer.create_product("MUG", "Mug", "7.00", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    let set_price = |price: &'static str| {
        let writer = &writer;
        let id = id.clone();
        async move {
            let started = Instant::now();
            writer
                .data(
                    Some(&writer.staff()),
                    "mutation($id: ID!, $p: Decimal!) { updateProduct(id: $id, input: {price: $p}) { id } }",
                    json!({"id": id, "p": price}),
                )
                .await;
            started.elapsed()
        }
    };
    let served_by_replica = || {
        let (reader, replica, id) = (&reader, &replica, id.clone());
        async move {
            let before = replica.calls("mget").await;
            let seen = reader.debug(None, q, json!({"id": id})).await;
            outcome(&seen, "product") == "hit" && replica.calls("mget").await > before
        }
    };
    eventually(
        "the reader is served hits by the replica",
        served_by_replica,
    )
    .await;

    link.stall();
    let took = set_price("8.00").await;
    println!("an invalidation with a stalled replica took {took:?}");
    for _ in 0..5 {
        let seen = reader.debug(None, q, json!({"id": id})).await;
        assert_eq!(
            seen["data"]["product"]["price"], "8.00",
            "another instance read older data after the mutation returned"
        );
    }

    link.resume();
    eventually(
        "the replica serves reads again once caught up",
        served_by_replica,
    )
    .await;
    let took = set_price("9.00").await;
    println!("an invalidation with a healthy replica took {took:?}");
    let seen = reader.debug(None, q, json!({"id": id})).await;
    assert_eq!(seen["data"]["product"]["price"], "9.00");
}

#[tokio::test]
async fn saga_events_published_while_redis_was_down_reach_subscribers_on_another_instance() {
    use crate::saga_helpers::{PLACE, place_input};
    use crate::ws::Socket;
    if test_redis_url().await.is_none() {
        return;
    }
    let port = free_port();
    let mut redis = RedisProcess::start(port, None).await;
    let mut api_settings = crate::helpers::shared_settings().await;
    api_settings.redis_url = Some(redis.url());
    api_settings.worker_concurrency = 0;
    let mut worker_settings = api_settings.clone();
    worker_settings.worker_concurrency = 1;
    // Long enough for the subscription to start before the saga finishes.
    worker_settings.payment_latency_ms = 1_000;
    let api = spawn_with(api_settings).await;
    let worker = spawn_with(worker_settings).await;
    let product = api.create_product("MUG", "Mug", "7.50", 10).await;
    let customer = api.create_customer("Ana", "ana@example.com").await;
    let token = api.customer(customer);

    // Every transition of this saga happens while Redis cannot carry its event.
    redis.kill();
    let accepted = api
        .data(Some(&token), PLACE, place_input(&product, 1, "tok_visa"))
        .await;
    let id = accepted["placeOrder"]["id"].clone();
    let mut socket = Socket::ready(&api, Some(&token)).await;
    let updates = "subscription($id: ID!) { sagaUpdates(id: $id) { status } }";
    socket.subscribe("1", updates, json!({"id": id})).await;
    let first = socket.next_message().await;
    let first = first["payload"]["data"]["sagaUpdates"]["status"].clone();
    assert!(first == "PENDING" || first == "RUNNING", "{first}");
    let saga = "query($id: ID!) { saga(id: $id) { status } }";
    eventually("the worker to finish the saga", || async {
        let done = worker.data(Some(&token), saga, json!({"id": id})).await;
        done["saga"]["status"] == "COMPLETED"
    })
    .await;

    // Nothing polls: the subscriber hears of it once Redis is back.
    redis.restart().await;
    let mut last = Value::Null;
    while last != "COMPLETED" {
        let update = socket.next_message().await;
        assert_eq!(update["type"], "next", "{update}");
        last = update["payload"]["data"]["sagaUpdates"]["status"].clone();
    }
}

#[tokio::test]
async fn an_invalidation_redis_refused_survives_the_instance_that_made_it() {
    if test_redis_url().await.is_none() {
        return;
    }
    // Redis keeps its data across the outage (append-only), so the stale entry is back
    // when it returns unless someone replays the invalidation.
    let mut redis = RedisProcess::start_persistent(free_port()).await;
    let mut settings = crate::helpers::shared_settings().await;
    settings.redis_url = Some(redis.url());
    settings.worker_concurrency = 0;
    let survivor = spawn_with(settings.clone()).await;
    let doomed = ServerProcess::start(&settings).await;
    let id = survivor.create_product("MUG", "Mug", "7.50", 3).await;
    let q = "query($id: ID!) { product(id: $id) { price } }";
    survivor.debug(None, q, json!({"id": id})).await;
    assert_eq!(
        outcome(&survivor.debug(None, q, json!({"id": id})).await, "product"),
        "hit"
    );

    redis.kill();
    let changed = doomed
        .post(
            &survivor.staff(),
            json!({
                "query": "mutation($id: ID!) { updateProduct(id: $id, input: {price: \"9.99\"}) { price } }",
                "variables": {"id": id},
            }),
        )
        .await;
    assert_eq!(
        changed["data"]["updateProduct"]["price"], "9.99",
        "{changed}"
    );
    // The instance that could not invalidate dies with whatever it kept in memory.
    drop(doomed);
    redis.restart().await;
    // Served through Redis again (not bypassing it while reconnecting), and fresh.
    eventually("the other instance to replay the invalidation", || async {
        let body = survivor.debug(None, q, json!({"id": id})).await;
        body["data"]["product"]["price"] == "9.99" && outcome(&body, "product") != "bypass"
    })
    .await;
    let again = survivor.debug(None, q, json!({"id": id})).await;
    assert_eq!(again["data"]["product"]["price"], "9.99");
}

/// The server binary in a process of its own, SIGKILLed when dropped.
struct ServerProcess {
    child: std::process::Child,
    url: String,
}

impl ServerProcess {
    async fn start(settings: &shopgraph::config::Settings) -> Self {
        let port = free_port();
        let data = std::env::temp_dir().join(format!("shop-proc-{}", rand::random::<u32>()));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_shopgraph"))
            .arg("serve")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", &data)
            .env(
                "DATABASE_URL",
                settings.database_url.clone().unwrap_or_default(),
            )
            .env("REDIS_URL", settings.redis_url.clone().unwrap_or_default())
            .env("CACHE_KEY_PREFIX", &settings.cache_key_prefix)
            .env("JWT_SECRET", crate::helpers::SECRET)
            .env("SEED_DEMO", "false")
            .env("WORKER_CONCURRENCY", "0")
            .env("RATE_LIMIT_ENABLED", "false")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start the server binary: {e}"));
        let process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/health/live", process.url);
        eventually("the server process to start", || async {
            client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        process
    }

    async fn post(&self, token: &str, body: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
