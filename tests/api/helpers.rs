//! `spawn_app()`: the real application on port 0 with a fresh database (SQLite in
//! memory, or a uniquely named PostgreSQL database when `TEST_DATABASE_URL` is set) and
//! a unique Redis key prefix (when `TEST_REDIS_URL` is set).
#![allow(dead_code)]

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use shopgraph::auth::{JwtKeys, Role};
use shopgraph::config::{
    AccountSettings, AppEnv, IdentitySettings, LogFormat, Settings, ShutdownSettings,
};
use shopgraph::domain::TenantId;
use shopgraph::startup::App;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

pub const SECRET: &str = "test-secret-test-secret-test-secret";

#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub cache: shopgraph::cache::Cache,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub jwt: JwtKeys,
    pub db: sea_orm::DatabaseConnection,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(name: &str) -> String {
    format!(
        "{name}_{}_{}_{:06x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// A fresh database URL: in-memory SQLite, or a new PostgreSQL database.
pub async fn fresh_database_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) => {
            let name = unique("shop_test");
            let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
                panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}")
            });
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap_or_else(|e| panic!("create test database: {e}"));
            let _ = admin.close().await;
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(base, _)| base);
            format!("{base}/{name}")
        }
        Err(_) => "sqlite::memory:".to_owned(),
    }
}

/// The Redis URL for tests, checked to answer: a configured Redis that is down must
/// fail the suite, not silently degrade it.
pub async fn test_redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL").ok()?;
    let client =
        redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("TEST_REDIS_URL: {e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("TEST_REDIS_URL is set but Redis is unreachable: {e}"));
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("Redis PING failed: {e}"));
    assert_eq!(pong, "PONG");
    Some(url)
}

pub async fn test_settings() -> Settings {
    Settings {
        bind_addr: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        database_url: Some(fresh_database_url().await),
        db_max_connections: 5,
        // Many test servers run at once against one PostgreSQL.
        db_min_connections: 1,
        redis_url: test_redis_url().await,
        redis_replica_urls: Vec::new(),
        redis_sentinels: Vec::new(),
        redis_sentinel_master: None,
        redis_cluster_urls: Vec::new(),
        jwt_secret: Some(SECRET.to_owned()),
        app_env: AppEnv::Development,
        data_dir: std::env::temp_dir().join(unique("shop_data")),
        instance_id: Some(unique("test")),
        cache_enabled: true,
        cache_key_prefix: unique("test"),
        cache_negative_ttl: 15,
        cache_ttl_jitter: 0,
        cache_max_entries: 10_000,
        introspection: true,
        rate_limit_enabled: true,
        // On, so every test goes through the limiter, but far above what a test sends.
        rate_limit_per_minute: 600_000,
        rate_limit_burst: 10_000,
        trusted_proxies: Vec::new(),
        cors_allowed_origins: Vec::new(),
        query_limits_enabled: true,
        query_max_depth: 16,
        query_max_complexity: 5_000,
        query_max_aliases: 30,
        query_max_root_fields: 20,
        query_max_batch: 10,
        max_body_bytes: 256 * 1024,
        ws_init_timeout_ms: 10_000,
        ws_keepalive_ms: 15_000,
        request_timeout_ms: 30_000,
        ws_max_subscriptions: 20,
        apq_max_entries: 1_000,
        apq_ttl: 86_400,
        log_format: LogFormat::Text,
        seed_demo: false,
        default_tenant: "default".to_owned(),
        worker_concurrency: 4,
        worker_batch_size: 64,
        worker_gather_ms: 200,
        saga_lease_secs: 15,
        payment_latency_ms: 0,
        payment_ambiguous_rate: 0.0,
        payment_gateway_url: None,
        payment_timeout_ms: 5_000,
        saga_max_attempts: 5,
        db_statement_timeout_ms: 5_000,
        fail_rates: None,
        accounts: AccountSettings {
            access_token_ttl: 900,
            refresh_token_ttl: 30 * 24 * 3600,
            signin_max_failures: 5,
            signin_failure_window: 900,
            signin_ip_per_minute: 30,
            guest_cart_ttl: 7 * 24 * 3600,
            guest_carts_per_ip_hour: 60,
        },
        shutdown: ShutdownSettings {
            shutdown_delay_secs: 0,
            shutdown_grace_secs: 20,
        },
        identity: IdentitySettings {
            jwt_jwks_url: None,
            jwt_issuer: None,
            jwt_audience: Vec::new(),
            jwt_claim_tenant: "tenant".to_owned(),
            jwt_claim_role: "role".to_owned(),
            jwt_claim_customer: "sub".to_owned(),
            jwt_role_map: Vec::new(),
            jwt_default_role: None,
            jwt_jwks_min_interval: 30,
            jwt_jwks_ttl: 3600,
            jwt_jwks_timeout_ms: 5_000,
        },
    }
}

/// Settings whose database several instances (or processes) can share: a fresh
/// PostgreSQL database as usual, or a SQLite file instead of an in-memory one.
pub async fn shared_settings() -> Settings {
    let mut settings = test_settings().await;
    if let Some(url) = settings.database_url.as_mut()
        && url.starts_with("sqlite::memory:")
    {
        *url = shared_sqlite_url();
    }
    settings
}

/// A new SQLite file database in the temporary directory.
pub fn shared_sqlite_url() -> String {
    let file = std::env::temp_dir().join(format!("{}.db", unique("shop_shared")));
    format!("sqlite://{}?mode=rwc", file.display())
}

pub async fn spawn_app() -> TestApp {
    spawn_with(test_settings().await).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    record_server_panics();
    let app = App::build(settings.clone())
        .await
        .unwrap_or_else(|e| panic!("build app: {e:#}"));
    let addr = app.addr;
    let db = app.state.db.clone();
    let cache = app.state.cache.clone();
    shopgraph::services::customers::ensure_tenant(&db, &tenant("default"), "Default")
        .await
        .unwrap_or_else(|e| panic!("tenant: {e}"));
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        addr,
        cache,
        client: reqwest::Client::new(),
        jwt: JwtKeys::new(SECRET.as_bytes()),
        settings,
        db,
    }
}

/// With `SERVER_PANIC_LOG` set (`.ci/run` sets it), every panic raised outside the
/// tests' own code (in the server or a library it calls) is appended to that file, and
/// `.ci/run` fails when the file is not empty after the suite: the server answers a
/// panicking request with `INTERNAL`, so only this log shows that one happened.
fn record_server_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let Some(path) = std::env::var_os("SERVER_PANIC_LOG") else {
            return;
        };
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location();
            let in_tests = location.is_some_and(|l| l.file().starts_with("tests/"));
            if !in_tests {
                use std::io::Write;
                let thread = std::thread::current();
                let line = format!(
                    "{} at {}: {}\n",
                    thread.name().unwrap_or("?"),
                    location.map_or_else(|| "?".to_owned(), ToString::to_string),
                    info.payload()
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(no message)"),
                );
                if let Ok(mut file) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                {
                    let _ = file.write_all(line.as_bytes());
                }
            }
            previous(info);
        }));
    });
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap_or_else(|e| panic!("{e}"))
}

impl TestApp {
    /// A handle to the same running app, for moving into spawned tasks.
    pub fn clone_handle(&self) -> Self {
        self.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token_in(&self, tenant_name: &str, role: Role, sub: &str) -> String {
        self.jwt
            .issue(&tenant(tenant_name), sub, role, chrono::Duration::hours(1))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn staff(&self) -> String {
        self.token_in("default", Role::Staff, "staff-1")
    }

    pub fn admin(&self) -> String {
        self.token_in("default", Role::Admin, "admin-1")
    }

    pub fn customer(&self, id: i64) -> String {
        self.token_in("default", Role::Customer, &id.to_string())
    }

    /// POSTs a GraphQL request with optional bearer token and extra headers; returns
    /// the HTTP response.
    pub async fn post(
        &self,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &Value,
    ) -> reqwest::Response {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .unwrap_or_else(|_| unreachable!()),
            );
        }
        for (name, value) in extra {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        self.client
            .post(self.url("/graphql"))
            .headers(headers)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /graphql: {e}"))
    }

    /// Runs a GraphQL operation and returns the whole JSON response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_with(token, &[], query, variables).await
    }

    pub async fn gql_with(
        &self,
        token: Option<&str>,
        extra: &[(&str, &str)],
        query: &str,
        variables: Value,
    ) -> Value {
        let response = self
            .post(
                token,
                extra,
                &json!({ "query": query, "variables": variables }),
            )
            .await;
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("response is not JSON: {e}"))
    }

    /// Runs an operation that must succeed; returns `data`.
    pub async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Runs an operation with `X-Debug: 1`; returns the whole response.
    pub async fn debug(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self
            .gql_with(token, &[("x-debug", "1")], query, variables)
            .await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body
    }

    pub async fn create_category(&self, name: &str) -> String {
        let data = self
            .data(
                Some(&self.staff()),
                "mutation($name: String!) { createCategory(input: {name: $name}) { id } }",
                json!({ "name": name }),
            )
            .await;
        id_of(&data["createCategory"])
    }

    pub async fn create_product(&self, sku: &str, name: &str, price: &str, stock: i32) -> String {
        let data = self
            .data(
                Some(&self.staff()),
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
                json!({ "input": { "sku": sku, "name": name, "price": price, "stock": stock } }),
            )
            .await;
        id_of(&data["createProduct"])
    }

    pub async fn create_customer(&self, name: &str, email: &str) -> i64 {
        let data = self
            .data(
                None,
                "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }",
                json!({ "input": { "name": name, "email": email } }),
            )
            .await;
        id_of(&data["createCustomer"])
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

pub fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

/// The `extensions.code` of the first error.
/// The cache outcome (`hit`, `miss`, `bypass`; `none` when absent) that `X-Debug: 1`
/// reported for `field`.
pub fn cache_outcome(body: &Value, field: &str) -> String {
    body["extensions"]["debug"]["cache"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["field"] == field))
        .and_then(|f| f["outcome"].as_str())
        .unwrap_or("none")
        .to_owned()
}

pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}
