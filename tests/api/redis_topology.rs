//! The cache, saga events and persisted queries on a Redis Cluster and behind Redis
//! Sentinels, with every Redis process started here (free loopback ports, temporary
//! directories, SIGKILLed by PID when dropped). They run whenever TEST_REDIS_URL is set,
//! which says redis-server is installed: a process that cannot start fails the test.
use crate::helpers::{
    TestApp, cache_outcome as outcome, spawn_with, tenant, test_redis_url, test_settings,
};
use crate::redis_process::{RedisProcess, free_port};
use serde_json::{Value, json};
use shopgraph::auth::Role;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PRODUCT: &str = "query($id: ID!) { product(id: $id) { id price } }";
const PRODUCTS: &str = "{ products(first: 20) { edges { node { id name price } } } }";
const SET_PRICE: &str =
    "mutation($id: ID!, $p: Decimal!) { updateProduct(id: $id, input: {price: $p}) { id } }";

/// A loopback port held (bound) until a process is started on it: while held, no
/// other test takes it, not even as the local port of an outgoing connection.
struct Reserved(std::net::TcpListener);

impl Reserved {
    fn new() -> Self {
        Self(
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("no free port: {e}")),
        )
    }

    fn port(&self) -> u16 {
        self.0
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn reserve(n: usize) -> Vec<Self> {
        (0..n).map(|_| Self::new()).collect()
    }
}

/// A Redis process (server, cluster node or Sentinel) in its own directory.
struct Spawned {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Spawned {
    /// Starts on the reserved port, released only now.
    fn start(reserved: Reserved, args: &[&str], config: Option<&str>) -> Self {
        let port = reserved.port();
        drop(reserved);
        let dir = std::env::temp_dir().join(format!("shop-topo-{port}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new("redis-server");
        if let Some(config) = config {
            let path = dir.join("redis.conf");
            std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
            command.arg(path);
        }
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("TEST_REDIS_URL is set, so redis-server must be installed: {e}")
            });
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command to one server, `None` while it does not answer.
async fn ask<T: redis::FromRedisValue>(url: &str, command: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    tokio::time::timeout(Duration::from_secs(1), command.query_async(&mut conn))
        .await
        .ok()?
        .ok()
}

/// Polls `check` until it holds; panics with `what` after `secs`.
async fn until<F, Fut>(what: &str, secs: u64, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn cache_health(app: &TestApp) -> String {
    let Ok(response) = app.client.get(app.url("/health/cache")).send().await else {
        return String::new();
    };
    let body: Value = response.json().await.unwrap_or_default();
    body["status"].as_str().unwrap_or_default().to_owned()
}

/// Three masters sharing the 16384 slots, ready to serve.
struct Cluster {
    nodes: Vec<Spawned>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_on(Reserved::reserve(3)).await
    }

    async fn start_on(ports: Vec<Reserved>) -> Self {
        let nodes: Vec<Spawned> = ports
            .into_iter()
            .map(|port| {
                Spawned::start(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                    None,
                )
            })
            .collect();
        for node in &nodes {
            let url = node.url();
            until("a cluster node to start", 15, || async {
                ask::<String>(&url, &redis::cmd("PING")).await.as_deref() == Some("PONG")
            })
            .await;
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("TEST_REDIS_URL is set, so redis-cli must be installed: {e}")
            });
        assert!(created.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            let url = node.url();
            until("the cluster to be ready on every node", 20, || async {
                ask::<String>(&url, redis::cmd("CLUSTER").arg("INFO"))
                    .await
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            })
            .await;
        }
        Self { nodes }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Spawned::url).collect()
    }

    /// How many keys each master holds.
    async fn key_counts(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            counts.push(ask(&node.url(), &redis::cmd("DBSIZE")).await.unwrap_or(0));
        }
        counts
    }
}

/// A tenant name whose keys land in each third of the slots (the three masters'
/// ranges as `redis-cli --cluster create` splits them).
fn tenant_per_master() -> Vec<String> {
    let mut chosen: Vec<Option<String>> = vec![None, None, None];
    for i in 0..1000 {
        let name = format!("shop{i}");
        let key = shopgraph::cache::tenant_prefix("x", &name);
        let third = match slot_of(&key) {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        if chosen[third].is_none() {
            chosen[third] = Some(name);
        }
        if chosen.iter().all(Option::is_some) {
            break;
        }
    }
    chosen.into_iter().flatten().collect()
}

fn slot_of(key: &str) -> u16 {
    // CRC16/XMODEM of the hash tag, as Redis Cluster computes it.
    let tag = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or(key, |(tag, _)| tag);
    let mut crc: u16 = 0;
    for byte in tag.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[tokio::test]
async fn a_three_master_cluster_caches_invalidates_and_carries_saga_events() {
    use crate::saga_helpers::{PLACE, place_input};
    use crate::ws::Socket;
    if test_redis_url().await.is_none() {
        return;
    }
    let cluster = Cluster::start().await;
    let mut api_settings = crate::helpers::shared_settings().await;
    api_settings.redis_url = None;
    api_settings.redis_cluster_urls = cluster.urls();
    api_settings.worker_concurrency = 0;
    // The workers' instance lists the nodes the other way round, so the two listen for
    // saga events on different nodes.
    let mut worker_settings = api_settings.clone();
    worker_settings.redis_cluster_urls.reverse();
    worker_settings.worker_concurrency = 1;
    worker_settings.payment_latency_ms = 500;
    let app = spawn_with(api_settings).await;
    let worker = spawn_with(worker_settings).await;

    // One tenant per master: every node runs the scripts for the tenants it holds.
    let tenants = tenant_per_master();
    assert_eq!(tenants.len(), 3, "{tenants:?}");
    for name in &tenants {
        shopgraph::services::customers::ensure_tenant(&app.db, &tenant(name), name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let staff = app.token_in(name, Role::Staff, "staff-1");
        let data = app
            .data(
                Some(&staff),
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
                json!({"input": {"sku": "MUG", "name": "Mug", "price": "7.00", "stock": 5}}),
            )
            .await;
        let id = crate::helpers::id_of(&data["createProduct"]);
        let read = |token: String| {
            let app = app.clone_handle();
            let id = id.clone();
            async move {
                app.gql_with(
                    Some(&token),
                    &[("x-debug", "1")],
                    PRODUCT,
                    json!({"id": id}),
                )
                .await
            }
        };
        let first = read(staff.clone()).await;
        assert_eq!(first["data"]["product"]["price"], "7.00", "{first}");
        let second = read(staff.clone()).await;
        assert_eq!(outcome(&second, "product"), "hit", "{name}: {second}");
        for price in ["7.10", "7.20"] {
            app.data(Some(&staff), SET_PRICE, json!({"id": id, "p": price}))
                .await;
            let seen = read(staff.clone()).await;
            assert_eq!(seen["data"]["product"]["price"], price, "{name}: {seen}");
            assert_ne!(
                outcome(&seen, "product"),
                "hit",
                "{name}: stale entry served"
            );
            let again = read(staff.clone()).await;
            assert_eq!(outcome(&again, "product"), "hit", "{name}: {again}");
        }
        // Admin views scan the one node holding the tenant.
        let admin = app.token_in(name, Role::Admin, "admin-1");
        let entries = app
            .data(Some(&admin), "{ cacheEntries { key module } }", json!({}))
            .await;
        let keys = entries["cacheEntries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            keys.iter().any(|e| e["key"]
                .as_str()
                .is_some_and(|k| k.contains(&format!("{{{name}}}")))),
            "{name}: {entries}"
        );
        let dropped = app
            .data(Some(&admin), "mutation { invalidateCache }", json!({}))
            .await;
        assert!(dropped["invalidateCache"].as_i64() > Some(0), "{dropped}");
        let after = read(staff.clone()).await;
        assert_eq!(outcome(&after, "product"), "miss", "{name}: {after}");
    }
    let counts = cluster.key_counts().await;
    assert!(
        counts.iter().all(|&n| n > 0),
        "every master holds cache keys: {counts:?}"
    );
    assert_eq!(cache_health(&app).await, "ok");

    // Anonymous whole-list reads of the default tenant, and persisted queries.
    app.debug(None, PRODUCTS, json!({})).await;
    assert_eq!(
        outcome(&app.debug(None, PRODUCTS, json!({})).await, "products"),
        "hit"
    );
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(PRODUCTS.as_bytes()));
    let persisted = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let registered: Value = app
        .post(
            None,
            &[],
            &json!({"query": PRODUCTS, "extensions": persisted}),
        )
        .await
        .json()
        .await
        .unwrap_or_default();
    assert!(registered.get("errors").is_none(), "{registered}");
    // The other instance finds the document another instance registered.
    let by_hash: Value = worker
        .post(None, &[], &json!({"extensions": persisted}))
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(by_hash["data"], registered["data"], "{by_hash}");

    // A saga run by the other instance is heard by a subscriber on this one.
    let product = app.create_product("LAMP", "Lamp", "9.00", 5).await;
    let customer = app.create_customer("Ana", "ana@example.com").await;
    let token = app.customer(customer);
    let accepted = app
        .data(Some(&token), PLACE, place_input(&product, 1, "tok_visa"))
        .await;
    let id = accepted["placeOrder"]["id"].clone();
    let mut socket = Socket::ready(&app, Some(&token)).await;
    socket
        .subscribe(
            "1",
            "subscription($id: ID!) { sagaUpdates(id: $id) { status } }",
            json!({"id": id}),
        )
        .await;
    let mut last = Value::Null;
    while last != "COMPLETED" {
        let update = socket.next_message().await;
        assert_eq!(update["type"], "next", "{update}");
        last = update["payload"]["data"]["sagaUpdates"]["status"].clone();
    }
}

#[tokio::test]
async fn a_cluster_down_at_start_is_a_degraded_cache_that_connects_by_itself() {
    if test_redis_url().await.is_none() {
        return;
    }
    // Held, so nothing answers on them until the cluster starts.
    let ports = Reserved::reserve(3);
    let mut settings = test_settings().await;
    settings.redis_url = None;
    settings.redis_cluster_urls = ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{}", port.port()))
        .collect();
    let app = spawn_with(settings).await;
    // Its invalidation is refused: it waits in the outbox for the cluster.
    let id = app.create_product("MUG", "Mug", "7.00", 3).await;
    let body = app.debug(None, PRODUCT, json!({"id": id})).await;
    assert_eq!(body["data"]["product"]["price"], "7.00");
    assert_ne!(outcome(&body, "product"), "hit");
    assert_eq!(cache_health(&app).await, "degraded");

    let _cluster = Cluster::start_on(ports).await;
    until("the cache to reach the cluster", 30, || async {
        app.debug(None, PRODUCT, json!({"id": id})).await;
        outcome(
            &app.debug(None, PRODUCT, json!({"id": id})).await,
            "product",
        ) == "hit"
    })
    .await;
    assert_eq!(cache_health(&app).await, "ok");
}

/// A primary, two replicas and three Sentinels watching them.
struct Sentinels {
    primary: RedisProcess,
    replicas: Vec<RedisProcess>,
    sentinels: Vec<Spawned>,
    master: String,
}

impl Sentinels {
    async fn start() -> Self {
        let master = format!("shop{}", rand::random::<u32>());
        Self::start_on(Reserved::reserve(3), &master).await
    }

    /// Sentinels on these ports, watching a new primary under the name `master`.
    async fn start_on(sentinel_ports: Vec<Reserved>, master: &str) -> Self {
        let master = master.to_owned();
        let primary = RedisProcess::start(free_port(), None).await;
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(RedisProcess::start(free_port(), Some(primary.port)).await);
        }
        let config = format!(
            "sentinel monitor {master} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {master} 1000\n\
             sentinel failover-timeout {master} 5000\n\
             sentinel parallel-syncs {master} 2\n",
            port = primary.port
        );
        let sentinels: Vec<Spawned> = sentinel_ports
            .into_iter()
            .map(|port| Spawned::start(port, &["--sentinel"], Some(&config)))
            .collect();
        for sentinel in &sentinels {
            let url = sentinel.url();
            until(
                "each Sentinel to see the replicas and the other Sentinels",
                30,
                || async {
                    let info: Option<Vec<String>> =
                        ask(&url, redis::cmd("SENTINEL").arg("MASTER").arg(&master)).await;
                    let info = info.unwrap_or_default();
                    let field = |name: &str| {
                        info.iter()
                            .position(|f| f == name)
                            .and_then(|i| info.get(i + 1))
                            .and_then(|v| v.parse::<u32>().ok())
                            .unwrap_or(0)
                    };
                    field("num-slaves") == 2 && field("num-other-sentinels") == 2
                },
            )
            .await;
        }
        Self {
            primary,
            replicas,
            sentinels,
            master,
        }
    }

    fn addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// Until both replicas applied everything the primary wrote so far.
    async fn replicas_caught_up(&self) {
        let offset = |info: &str, field: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let written = offset(
            &self.primary.info("replication").await,
            "master_repl_offset:",
        );
        for replica in &self.replicas {
            until("the replicas to catch up", 15, || async {
                offset(&replica.info("replication").await, "slave_repl_offset:") >= written
            })
            .await;
        }
    }

    /// The port of the primary the Sentinels name now.
    async fn primary_port(&self) -> Option<u16> {
        let (_, port): (String, u16) = ask(
            &self.sentinels[0].url(),
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.master),
        )
        .await?;
        Some(port)
    }
}

#[tokio::test]
async fn sentinels_down_at_start_are_a_degraded_cache_that_connects_by_itself() {
    if test_redis_url().await.is_none() {
        return;
    }
    // Held, so nothing answers on them until the Sentinels start.
    let ports = Reserved::reserve(3);
    let master = format!("shop{}", rand::random::<u32>());
    let mut settings = test_settings().await;
    settings.redis_url = None;
    settings.redis_sentinels = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.port()))
        .collect();
    settings.redis_sentinel_master = Some(master.clone());
    let app = spawn_with(settings).await;
    let id = app.create_product("MUG", "Mug", "7.00", 3).await;
    let body = app.debug(None, PRODUCT, json!({"id": id})).await;
    assert_eq!(body["data"]["product"]["price"], "7.00");
    assert_ne!(outcome(&body, "product"), "hit");
    assert_eq!(cache_health(&app).await, "degraded");

    let _topology = Sentinels::start_on(ports, &master).await;
    until(
        "the cache to reach the primary the Sentinels name",
        30,
        || async {
            app.debug(None, PRODUCT, json!({"id": id})).await;
            outcome(
                &app.debug(None, PRODUCT, json!({"id": id})).await,
                "product",
            ) == "hit"
        },
    )
    .await;
    assert_eq!(cache_health(&app).await, "ok");
}

/// What the load saw: rounds (a mutation, then reads of what it wrote) and problems.
#[derive(Default)]
struct Load {
    rounds: AtomicU64,
    problems: std::sync::Mutex<Vec<String>>,
}

impl Load {
    fn problem(&self, what: String) {
        if let Ok(mut problems) = self.problems.lock() {
            problems.push(what);
        }
    }
}

/// Mutations on `app` and the reads that follow them on every reader, until `stop`:
/// every answer must be free of errors and every read must show the price the last
/// acknowledged mutation set.
async fn run_load(
    app: TestApp,
    readers: Vec<TestApp>,
    id: String,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) {
    let staff = app.staff();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let price = format!("{}.{:02}", 10 + round / 100, round % 100);
        let changed = app
            .gql(Some(&staff), SET_PRICE, json!({"id": id, "p": price}))
            .await;
        if changed.get("errors").is_some() {
            load.problem(format!("mutation {round}: {changed}"));
            continue;
        }
        for (reader, query) in readers.iter().flat_map(|r| [(r, PRODUCT), (r, PRODUCTS)]) {
            let seen = reader.gql(None, query, json!({"id": id})).await;
            if seen.get("errors").is_some() {
                load.problem(format!("read {round}: {seen}"));
                continue;
            }
            let shown = if query == PRODUCT {
                seen["data"]["product"]["price"].clone()
            } else {
                seen["data"]["products"]["edges"]
                    .as_array()
                    .and_then(|edges| edges.iter().find(|e| e["node"]["id"] == id.as_str()))
                    .map(|e| e["node"]["price"].clone())
                    .unwrap_or_default()
            };
            if shown != price {
                load.problem(format!("stale read {round}: wanted {price}, saw {shown}"));
            }
        }
        load.rounds.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_failover_behind_sentinels_is_followed_without_errors_or_stale_reads() {
    if test_redis_url().await.is_none() {
        return;
    }
    let mut topology = Sentinels::start().await;
    let first_primary = topology.primary.port;
    let mut settings = crate::helpers::shared_settings().await;
    settings.redis_url = None;
    settings.redis_sentinels = topology.addresses();
    settings.redis_sentinel_master = Some(topology.master.clone());
    // A second instance on the same database and cache: it only reads, so it learns of
    // the first one's refused invalidations only through the outbox.
    let mut other = test_settings().await;
    other.redis_url = None;
    other.redis_sentinels.clone_from(&settings.redis_sentinels);
    other
        .redis_sentinel_master
        .clone_from(&settings.redis_sentinel_master);
    other.database_url.clone_from(&settings.database_url);
    other
        .cache_key_prefix
        .clone_from(&settings.cache_key_prefix);
    let app = spawn_with(settings).await;
    // Two instances on one SQLite file contend for its write lock (busy errors that have
    // nothing to do with Redis): without PostgreSQL the first instance reads too.
    let reader = if std::env::var_os("TEST_DATABASE_URL").is_some() {
        spawn_with(other).await
    } else {
        app.clone_handle()
    };
    let id = app.create_product("MUG", "Mug", "7.00", 3).await;
    until(
        "cached reads through the Sentinels' primary",
        15,
        || async {
            app.debug(None, PRODUCT, json!({"id": id})).await;
            outcome(
                &app.debug(None, PRODUCT, json!({"id": id})).await,
                "product",
            ) == "hit"
        },
    )
    .await;

    // An entry on every replica, whose invalidation the dead primary will refuse.
    let lamp = app.create_product("LAMP", "Lamp", "5.00", 3).await;
    app.debug(None, PRODUCT, json!({"id": lamp})).await;
    for instance in [&app, &reader] {
        let seen = instance.debug(None, PRODUCT, json!({"id": lamp})).await;
        assert_eq!(outcome(&seen, "product"), "hit");
    }
    topology.replicas_caught_up().await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let running = tokio::spawn(run_load(
        app.clone_handle(),
        vec![app.clone_handle(), reader.clone_handle()],
        id.clone(),
        stop.clone(),
        load.clone(),
    ));
    until("the load to get going", 15, || async {
        load.rounds.load(Ordering::Relaxed) >= 20
    })
    .await;

    topology.primary.kill();
    let killed = Instant::now();
    let rounds_at_kill = load.rounds.load(Ordering::Relaxed);
    let changed = app
        .gql(
            Some(&app.staff()),
            SET_PRICE,
            json!({"id": lamp, "p": "5.55"}),
        )
        .await;
    assert!(changed.get("errors").is_none(), "{changed}");
    // Back: the cache says ok and serves hits again (which only a new primary can, and
    // only once every invalidation it missed is replayed). The promoted replica still
    // holds the lamp's old entry: it must never be served.
    until("the cache to recover on the new primary", 20, || async {
        for instance in [&app, &reader] {
            let seen = instance.debug(None, PRODUCT, json!({"id": lamp})).await;
            assert_eq!(
                seen["data"]["product"]["price"], "5.55",
                "stale read from the promoted replica: {seen}"
            );
        }
        let body = app.debug(None, PRODUCT, json!({"id": id})).await;
        let again = app.debug(None, PRODUCT, json!({"id": id})).await;
        cache_health(&app).await == "ok"
            && outcome(&body, "product") != "bypass"
            && outcome(&again, "product") == "hit"
    })
    .await;
    let failover = killed.elapsed();
    println!("sentinel failover: cache ok again {failover:?} after the primary was killed");
    let rounds_during = load.rounds.load(Ordering::Relaxed) - rounds_at_kill;

    // The load keeps running on the new primary for a while.
    let resumed = load.rounds.load(Ordering::Relaxed);
    until("the load to run on the new primary", 15, || async {
        load.rounds.load(Ordering::Relaxed) >= resumed + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    running.await.unwrap_or_else(|e| panic!("load task: {e}"));

    let problems = load.problems.lock().map(|p| p.clone()).unwrap_or_default();
    assert!(
        problems.is_empty(),
        "client-visible problems: {problems:#?}"
    );
    assert!(
        rounds_during > 0,
        "no mutation completed while failing over"
    );
    let now = topology.primary_port().await;
    assert!(
        now.is_some_and(|port| port != first_primary),
        "the Sentinels promoted a replica: {now:?}"
    );
    assert!(
        failover < Duration::from_secs(10),
        "the cache took {failover:?} to be ok again"
    );
}
