//! Typed settings from environment variables and `--flags`, validated at start: a bad
//! value stops the start with a message that names the variable. Secrets are never
//! printed (`Debug` redacts them).
use crate::domain::TenantId;
use crate::redis_topology::Topology;
use anyhow::{Context, bail};
use clap::Args;
use clap::builder::BoolishValueParser;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

mod accounts;
mod identity;
mod shutdown;
pub use accounts::AccountSettings;
pub use identity::{IdentitySettings, Provider};
pub use shutdown::ShutdownSettings;

/// The longest TTL any setting accepts (30 days): far beyond any useful cache life,
/// and far from overflowing a timestamp.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Args)]
pub struct Settings {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "BIND_ADDR",
        value_name = "BIND_ADDR",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind_addr: SocketAddr,

    /// postgres://… or sqlite://…; unset = SQLite file under DATA_DIR.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Largest database connection pool (PostgreSQL; SQLite uses one writer).
    #[arg(
        long,
        env = "DB_MAX_CONNECTIONS",
        value_name = "DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// Connections the pool keeps open (at most DB_MAX_CONNECTIONS), reopened in the
    /// background: a request that finds none idle waits for a new one's connect and TLS
    /// handshake (tens of milliseconds) instead.
    #[arg(
        long,
        env = "DB_MIN_CONNECTIONS",
        value_name = "DB_MIN_CONNECTIONS",
        default_value_t = 4,
        global = true
    )]
    pub db_min_connections: u32,

    /// redis://…; unset = in-process cache, pub/sub and queue.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Comma-separated read replicas for cache reads.
    #[arg(
        long,
        env = "REDIS_REPLICA_URLS",
        value_name = "REDIS_REPLICA_URLS",
        value_delimiter = ',',
        global = true
    )]
    pub redis_replica_urls: Vec<String>,

    /// Comma-separated Sentinels (`host:port` or `redis://…`) watching the primary named
    /// by `REDIS_SENTINEL_MASTER`; instead of `REDIS_URL`.
    #[arg(
        long,
        env = "REDIS_SENTINELS",
        value_name = "REDIS_SENTINELS",
        value_delimiter = ',',
        global = true
    )]
    pub redis_sentinels: Vec<String>,

    /// The Sentinels' name for the primary (`sentinel monitor <name> …`).
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        value_name = "REDIS_SENTINEL_MASTER",
        global = true
    )]
    pub redis_sentinel_master: Option<String>,

    /// Comma-separated Redis Cluster nodes (`redis://…`, any subset); instead of `REDIS_URL`.
    #[arg(
        long,
        env = "REDIS_CLUSTER_URLS",
        value_name = "REDIS_CLUSTER_URLS",
        value_delimiter = ',',
        global = true
    )]
    pub redis_cluster_urls: Vec<String>,

    /// HS256 signing secret (at least 16 bytes). Required in production.
    #[arg(
        long,
        env = "JWT_SECRET",
        value_name = "JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,

    #[arg(
        long,
        env = "APP_ENV",
        value_name = "APP_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub app_env: AppEnv,

    /// Where the embedded default keeps its SQLite file and generated JWT secret.
    #[arg(
        long,
        env = "DATA_DIR",
        value_name = "DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Name of this instance in /whoami and /health (default: generated).
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID", global = true)]
    pub instance_id: Option<String>,

    #[arg(long, env = "CACHE_ENABLED", value_name = "CACHE_ENABLED", default_value = "true", value_parser = BoolishValueParser::new(), global = true)]
    pub cache_enabled: bool,

    #[arg(
        long,
        env = "CACHE_KEY_PREFIX",
        value_name = "CACHE_KEY_PREFIX",
        default_value = "shop",
        global = true
    )]
    pub cache_key_prefix: String,

    /// Seconds a `product(id) -> null` stays cached.
    #[arg(
        long,
        env = "CACHE_NEGATIVE_TTL",
        value_name = "CACHE_NEGATIVE_TTL",
        default_value_t = 15,
        global = true
    )]
    pub cache_negative_ttl: u64,

    /// Random extra TTL, in percent, so entries written together do not expire together.
    #[arg(
        long,
        env = "CACHE_TTL_JITTER",
        value_name = "CACHE_TTL_JITTER",
        default_value_t = 10,
        global = true
    )]
    pub cache_ttl_jitter: u8,

    /// Largest number of entries the in-process cache keeps.
    #[arg(
        long,
        env = "CACHE_MAX_ENTRIES",
        value_name = "CACHE_MAX_ENTRIES",
        default_value_t = 50_000,
        global = true
    )]
    pub cache_max_entries: usize,

    #[arg(long, env = "INTROSPECTION", value_name = "INTROSPECTION", default_value = "true", value_parser = BoolishValueParser::new(), global = true)]
    pub introspection: bool,

    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Rate limit `/graphql` and `/graphql/ws` per client IP (health, metrics and the
    /// playground are never limited).
    #[arg(long, env = "RATE_LIMIT_ENABLED", value_name = "RATE_LIMIT_ENABLED", default_value = "true", value_parser = BoolishValueParser::new(), global = true)]
    pub rate_limit_enabled: bool,

    /// Sustained requests per minute per client IP (the seed's demo: 10).
    #[arg(
        long,
        env = "RATE_LIMIT_PER_MINUTE",
        value_name = "RATE_LIMIT_PER_MINUTE",
        default_value_t = 1200,
        global = true
    )]
    pub rate_limit_per_minute: u32,

    /// Requests a client may send at once before the per-minute pace applies.
    #[arg(
        long,
        env = "RATE_LIMIT_BURST",
        value_name = "RATE_LIMIT_BURST",
        default_value_t = 100,
        global = true
    )]
    pub rate_limit_burst: u32,

    /// Comma-separated IPs or CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_name = "TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<String>,

    /// Comma-separated origins allowed by CORS (`*` for any); empty = no CORS headers.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_name = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Checks documents against the QUERY_MAX_* limits (depth, complexity, aliases,
    /// root fields, fragment cycles). Off only behind a gateway that enforces its own.
    #[arg(long, env = "QUERY_LIMITS_ENABLED", value_name = "QUERY_LIMITS_ENABLED", default_value = "true", value_parser = BoolishValueParser::new(), global = true)]
    pub query_limits_enabled: bool,

    /// Deepest selection nesting a document may have.
    #[arg(
        long,
        env = "QUERY_MAX_DEPTH",
        value_name = "QUERY_MAX_DEPTH",
        default_value_t = 16,
        global = true
    )]
    pub query_max_depth: usize,

    /// Largest complexity (one per field, lists weighted by `first`/`limit`).
    #[arg(
        long,
        env = "QUERY_MAX_COMPLEXITY",
        value_name = "QUERY_MAX_COMPLEXITY",
        default_value_t = 5_000,
        global = true
    )]
    pub query_max_complexity: usize,

    /// Most aliases in one document (fragments expanded).
    #[arg(
        long,
        env = "QUERY_MAX_ALIASES",
        value_name = "QUERY_MAX_ALIASES",
        default_value_t = 30,
        global = true
    )]
    pub query_max_aliases: usize,

    /// Most root fields in one operation.
    #[arg(
        long,
        env = "QUERY_MAX_ROOT_FIELDS",
        value_name = "QUERY_MAX_ROOT_FIELDS",
        default_value_t = 20,
        global = true
    )]
    pub query_max_root_fields: usize,

    /// Most operations in one batched HTTP request.
    #[arg(
        long,
        env = "QUERY_MAX_BATCH",
        value_name = "QUERY_MAX_BATCH",
        default_value_t = 10,
        global = true
    )]
    pub query_max_batch: usize,

    /// Largest request body, in bytes.
    #[arg(
        long,
        env = "MAX_BODY_BYTES",
        value_name = "MAX_BODY_BYTES",
        default_value_t = 256 * 1024,
        global = true
    )]
    pub max_body_bytes: usize,

    /// How long a new WebSocket may wait before its first message (`connection_init`);
    /// then it is closed with 4408, as the graphql-transport-ws protocol prescribes.
    #[arg(
        long,
        env = "WS_INIT_TIMEOUT_MS",
        value_name = "WS_INIT_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub ws_init_timeout_ms: u64,

    /// A request still running after this long is answered 408 and dropped.
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_MS",
        value_name = "REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub request_timeout_ms: u64,

    /// How often the server pings an open WebSocket; a peer that sends nothing (not even
    /// the pong) for two intervals is gone and its socket is closed.
    #[arg(
        long,
        env = "WS_KEEPALIVE_MS",
        value_name = "WS_KEEPALIVE_MS",
        default_value_t = 15_000,
        global = true
    )]
    pub ws_keepalive_ms: u64,

    /// Most subscriptions one WebSocket runs at once.
    #[arg(
        long,
        env = "WS_MAX_SUBSCRIPTIONS",
        value_name = "WS_MAX_SUBSCRIPTIONS",
        default_value_t = 20,
        global = true
    )]
    pub ws_max_subscriptions: usize,

    /// Most persisted queries (APQ) the in-process store keeps (without Redis).
    #[arg(
        long,
        env = "APQ_MAX_ENTRIES",
        value_name = "APQ_MAX_ENTRIES",
        default_value_t = 1_000,
        global = true
    )]
    pub apq_max_entries: usize,

    /// Seconds a persisted query stays registered in Redis.
    #[arg(
        long,
        env = "APQ_TTL",
        value_name = "APQ_TTL",
        default_value_t = 86_400,
        global = true
    )]
    pub apq_ttl: u64,

    /// Load demo data when the database is empty.
    #[arg(long, env = "SEED_DEMO", value_name = "SEED_DEMO", default_value = "true", value_parser = BoolishValueParser::new(), global = true)]
    pub seed_demo: bool,

    /// Checkout workers this process runs (0 = API only, like `serve --no-worker`).
    #[arg(
        long,
        env = "WORKER_CONCURRENCY",
        value_name = "WORKER_CONCURRENCY",
        default_value_t = 4,
        global = true
    )]
    pub worker_concurrency: usize,

    /// Sagas a worker claims and moves through each step together.
    #[arg(
        long,
        env = "WORKER_BATCH_SIZE",
        value_name = "WORKER_BATCH_SIZE",
        default_value_t = 64,
        global = true
    )]
    pub worker_batch_size: usize,

    /// Milliseconds a worker waits after a claim that emptied the queue before it
    /// claims again, so that under a steady load the sagas arriving meanwhile go
    /// through each step together (0 = claim again at once).
    #[arg(
        long,
        env = "WORKER_GATHER_MS",
        value_name = "WORKER_GATHER_MS",
        default_value_t = 200,
        global = true
    )]
    pub worker_gather_ms: u64,

    /// Seconds a worker holds a claimed saga before another may resume it.
    #[arg(
        long,
        env = "SAGA_LEASE_SECS",
        value_name = "SAGA_LEASE_SECS",
        default_value_t = 15,
        global = true
    )]
    pub saga_lease_secs: u64,

    /// Simulated payment gateway latency.
    #[arg(
        long,
        env = "PAYMENT_LATENCY_MS",
        value_name = "PAYMENT_LATENCY_MS",
        default_value_t = 0,
        global = true
    )]
    pub payment_latency_ms: u64,

    /// Probability that the simulated gateway takes a call's effect and then times out
    /// (an ambiguous answer), to exercise retries with the same idempotency key.
    #[arg(
        long,
        env = "PAYMENT_AMBIGUOUS_RATE",
        value_name = "PAYMENT_AMBIGUOUS_RATE",
        default_value_t = 0.0,
        global = true
    )]
    pub payment_ambiguous_rate: f64,

    /// A payment provider speaking the simulator's HTTP API (`shopgraph gateway`);
    /// unset: the simulator runs in process.
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_URL",
        value_name = "PAYMENT_GATEWAY_URL",
        global = true
    )]
    pub payment_gateway_url: Option<String>,

    /// How long a payment provider call may take before its outcome counts as unknown.
    #[arg(
        long,
        env = "PAYMENT_TIMEOUT_MS",
        value_name = "PAYMENT_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub payment_timeout_ms: u64,

    /// Attempts a checkout step gets before the saga gives up: it is compensated and
    /// ends FAILED (a dead letter).
    #[arg(
        long,
        env = "SAGA_MAX_ATTEMPTS",
        value_name = "SAGA_MAX_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub saga_max_attempts: u32,

    /// How long one SQL statement may run or wait for a lock before it fails
    /// (PostgreSQL `statement_timeout`, SQLite busy timeout).
    #[arg(
        long,
        env = "DB_STATEMENT_TIMEOUT_MS",
        value_name = "DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub db_statement_timeout_ms: u64,

    /// Tests set failure rates here; otherwise `SAGA_FAIL_RATE_<STEP>` is read.
    #[arg(skip)]
    pub fail_rates: Option<crate::checkout::failures::FailureRates>,

    /// Token lifetimes and sign-in limits of customer accounts.
    #[command(flatten)]
    pub accounts: AccountSettings,

    /// How a SIGTERM drains the server.
    #[command(flatten)]
    pub shutdown: ShutdownSettings,
    /// An external identity provider whose tokens are accepted beside ours.
    #[command(flatten)]
    pub identity: IdentitySettings,

    /// Tenant for anonymous callers that send no `X-Tenant`.
    #[arg(
        long,
        env = "DEFAULT_TENANT",
        value_name = "DEFAULT_TENANT",
        default_value = "default",
        global = true
    )]
    pub default_tenant: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind_addr", &self.bind_addr)
            .field("database", &self.database_url.as_deref().map(redact_url))
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("redis_replicas", &self.redis_replica_urls.len())
            .field(
                "redis_topology",
                &self.redis_topology().map(|t| t.describe()),
            )
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("app_env", &self.app_env)
            .field("cache_enabled", &self.cache_enabled)
            .field(
                "jwt_jwks_url",
                &self.identity.jwt_jwks_url.as_deref().map(redact_url),
            )
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Checks what clap cannot: cross-field rules and formats.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:");
        }
        self.validate_redis()?;
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 16
        {
            bail!("JWT_SECRET must be at least 16 bytes");
        }
        if self.app_env == AppEnv::Production && self.jwt_secret.is_none() {
            bail!("JWT_SECRET is required when APP_ENV=production");
        }
        // Braces would move the hash tag that keeps a tenant's keys on one cluster slot.
        if self.cache_key_prefix.is_empty()
            || self.cache_key_prefix.contains([':', ' ', '*', '{', '}'])
        {
            bail!("CACHE_KEY_PREFIX must be non-empty and hold no ':', ' ', '*', '{{' or '}}'");
        }
        if self.cache_ttl_jitter > 100 {
            bail!("CACHE_TTL_JITTER is a percentage (0-100)");
        }
        if !(1..=86_400).contains(&self.saga_lease_secs) {
            bail!("SAGA_LEASE_SECS must be between 1 and 86400");
        }
        if !(1..=100).contains(&self.saga_max_attempts) {
            bail!("SAGA_MAX_ATTEMPTS must be between 1 and 100");
        }
        if !(0.0..=1.0).contains(&self.payment_ambiguous_rate) {
            bail!("PAYMENT_AMBIGUOUS_RATE must be a probability between 0 and 1");
        }
        if !(1..=600_000).contains(&self.payment_timeout_ms) {
            bail!("PAYMENT_TIMEOUT_MS must be between 1 and 600000");
        }
        if !(1..=3_600_000).contains(&self.db_statement_timeout_ms) {
            bail!("DB_STATEMENT_TIMEOUT_MS must be between 1 and 3600000");
        }
        if let Some(url) = &self.payment_gateway_url
            && !url.starts_with("http://")
        {
            // No TLS client is built in: a provider's HTTPS API goes behind a local
            // TLS-originating proxy (a sidecar).
            bail!("PAYMENT_GATEWAY_URL must be an http:// URL");
        }
        if self.worker_concurrency > 256 {
            bail!("WORKER_CONCURRENCY must be at most 256");
        }
        if !(1..=1000).contains(&self.worker_batch_size) {
            bail!("WORKER_BATCH_SIZE must be between 1 and 1000");
        }
        if self.worker_gather_ms > 10_000 {
            bail!("WORKER_GATHER_MS must be at most 10000");
        }
        if self.db_max_connections == 0 {
            bail!("DB_MAX_CONNECTIONS must be at least 1");
        }
        TenantId::parse(&self.default_tenant)
            .map_err(|e| anyhow::anyhow!("DEFAULT_TENANT: {e}"))?;
        self.accounts.validate()?;
        self.shutdown.validate()?;
        self.identity.validate(self.app_env)?;
        self.validate_protection()
    }

    /// One topology at a time: `REDIS_URL` (with optional `REDIS_REPLICA_URLS`),
    /// `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`, or `REDIS_CLUSTER_URLS`.
    fn validate_redis(&self) -> anyhow::Result<()> {
        for url in self.redis_url.iter().chain(&self.redis_replica_urls) {
            redis::parse_redis_url(url)
                .with_context(|| "REDIS_URL / REDIS_REPLICA_URLS: not a valid redis:// URL")?;
        }
        for url in &self.redis_cluster_urls {
            redis::parse_redis_url(url).with_context(|| {
                format!(
                    "REDIS_CLUSTER_URLS: '{}' is not a valid redis:// URL",
                    redact_url(url)
                )
            })?;
        }
        for sentinel in &self.redis_sentinels {
            redis::parse_redis_url(&sentinel_url(sentinel)).with_context(|| {
                format!(
                    "REDIS_SENTINELS: '{}' is neither host:port nor a redis:// URL",
                    redact_url(sentinel)
                )
            })?;
        }
        let chosen: Vec<&str> = [
            ("REDIS_URL", self.redis_url.is_some()),
            ("REDIS_SENTINELS", !self.redis_sentinels.is_empty()),
            ("REDIS_CLUSTER_URLS", !self.redis_cluster_urls.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if chosen.len() > 1 {
            bail!(
                "{} are exclusive: set one way to reach Redis",
                chosen.join(" and ")
            );
        }
        if !self.redis_replica_urls.is_empty() && self.redis_url.is_none() {
            bail!(
                "REDIS_REPLICA_URLS needs REDIS_URL (the primary) as well; behind Sentinels or in a \
                 cluster the replicas are found, not listed"
            );
        }
        match (&self.redis_sentinel_master, self.redis_sentinels.is_empty()) {
            (Some(_), true) => bail!("REDIS_SENTINEL_MASTER needs REDIS_SENTINELS as well"),
            (None, false) => bail!(
                "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the Sentinels monitor)"
            ),
            (Some(name), false) if name.trim().is_empty() || name.contains(char::is_whitespace) => {
                bail!("REDIS_SENTINEL_MASTER must be a name without spaces")
            }
            _ => {}
        }
        Ok(())
    }

    /// Where Redis runs; `None` means in-process cache, pub/sub and queue.
    pub fn redis_topology(&self) -> Option<Topology> {
        if let Some(url) = &self.redis_url {
            return Some(Topology::Single(url.clone()));
        }
        if !self.redis_cluster_urls.is_empty() {
            return Some(Topology::Cluster(self.redis_cluster_urls.clone()));
        }
        let master = self.redis_sentinel_master.clone()?;
        (!self.redis_sentinels.is_empty()).then(|| Topology::Sentinel {
            sentinels: self
                .redis_sentinels
                .iter()
                .map(|s| sentinel_url(s))
                .collect(),
            master,
        })
    }

    fn validate_protection(&self) -> anyhow::Result<()> {
        if self.rate_limit_per_minute == 0 {
            bail!(
                "RATE_LIMIT_PER_MINUTE must be at least 1 (use RATE_LIMIT_ENABLED=false to turn it off)"
            );
        }
        if self.rate_limit_burst == 0 {
            bail!("RATE_LIMIT_BURST must be at least 1");
        }
        for (name, value) in [
            ("QUERY_MAX_DEPTH", self.query_max_depth),
            ("QUERY_MAX_COMPLEXITY", self.query_max_complexity),
            ("QUERY_MAX_ALIASES", self.query_max_aliases),
            ("QUERY_MAX_ROOT_FIELDS", self.query_max_root_fields),
            ("QUERY_MAX_BATCH", self.query_max_batch),
            ("APQ_MAX_ENTRIES", self.apq_max_entries),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        if !(1..=600_000).contains(&self.ws_init_timeout_ms) {
            bail!("WS_INIT_TIMEOUT_MS must be between 1 and 600000");
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            bail!("REQUEST_TIMEOUT_MS must be between 100 and 600000");
        }
        if !(100..=600_000).contains(&self.ws_keepalive_ms) {
            bail!("WS_KEEPALIVE_MS must be between 100 and 600000");
        }
        if !(1..=1_000).contains(&self.ws_max_subscriptions) {
            bail!("WS_MAX_SUBSCRIPTIONS must be between 1 and 1000");
        }
        if self.max_body_bytes < 1024 {
            bail!("MAX_BODY_BYTES must be at least 1024");
        }
        if !(1..=MAX_TTL_SECS).contains(&self.apq_ttl) {
            bail!("APQ_TTL must be between 1 and {MAX_TTL_SECS} seconds");
        }
        if self.cache_negative_ttl > MAX_TTL_SECS {
            bail!("CACHE_NEGATIVE_TTL must be at most {MAX_TTL_SECS} seconds");
        }
        for raw in self.trusted_proxies.iter().filter(|p| !p.trim().is_empty()) {
            parse_proxy(raw).map_err(|e| anyhow::anyhow!("TRUSTED_PROXIES: {e}"))?;
        }
        let origins = self.cors_origins();
        if origins.iter().any(|o| o == "*") && origins.len() > 1 {
            bail!("CORS_ALLOWED_ORIGINS: `*` must stand alone");
        }
        for origin in origins.iter().filter(|o| *o != "*") {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !valid {
                bail!(
                    "CORS_ALLOWED_ORIGINS: '{origin}' is not an origin such as https://shop.example"
                );
            }
        }
        Ok(())
    }

    /// `TRUSTED_PROXIES` as networks (an empty variable means none).
    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .filter_map(|p| parse_proxy(p).ok())
            .collect()
    }

    /// `CORS_ALLOWED_ORIGINS` without empty entries (an empty variable means none).
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    pub fn default_tenant(&self) -> TenantId {
        TenantId::parse(&self.default_tenant).unwrap_or_else(|_| {
            // validate() has already refused a bad value; this keeps the type total.
            TenantId::parse("default").unwrap_or_else(|_| unreachable!("literal is valid"))
        })
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("shop.db").display()
            ),
        }
    }

    pub fn is_embedded_database(&self) -> bool {
        self.database_url.is_none()
    }
}

/// One `TRUSTED_PROXIES` entry: an address (`10.0.0.7`) or a network (`10.0.0.0/8`).
fn parse_proxy(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{raw}' is not an IP address or CIDR network"))
}

/// A `REDIS_SENTINELS` entry as a URL: `host:port` means `redis://host:port`.
fn sentinel_url(raw: &str) -> String {
    let raw = raw.trim();
    if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("redis://{raw}")
    }
}

/// Hides the password of `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        assert_eq!(
            parse_proxy("10.0.0.7").map(|n| n.to_string()),
            Ok("10.0.0.7/32".to_owned())
        );
        assert!(parse_proxy(" 10.0.0.0/8 ").is_ok());
        assert!(parse_proxy("::1").is_ok());
        assert!(parse_proxy("proxy.local").is_err());
    }

    fn settings(args: &[&str]) -> Settings {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let argv = std::iter::once("shopgraph").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .settings
    }

    fn refusal(args: &[&str]) -> String {
        match settings(args).validate() {
            Ok(()) => panic!("{args:?} accepted"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn workers_gather_for_at_most_ten_seconds() {
        assert_eq!(settings(&[]).worker_gather_ms, 200);
        assert!(settings(&["--worker-gather-ms", "0"]).validate().is_ok());
        assert!(
            refusal(&["--worker-gather-ms", "10001"]).contains("WORKER_GATHER_MS"),
            "refused for another reason"
        );
    }

    #[test]
    fn redis_is_one_server_sentinels_or_a_cluster() {
        let sentinels = settings(&[
            "--redis-sentinels",
            "10.0.0.1:26379,redis://10.0.0.2:26379",
            "--redis-sentinel-master",
            "shop",
        ]);
        assert!(sentinels.validate().is_ok());
        assert_eq!(
            sentinels.redis_topology(),
            Some(Topology::Sentinel {
                sentinels: vec![
                    "redis://10.0.0.1:26379".to_owned(),
                    "redis://10.0.0.2:26379".to_owned()
                ],
                master: "shop".to_owned(),
            })
        );
        let cluster = settings(&["--redis-cluster-urls", "redis://a:7000,redis://b:7000"]);
        assert!(cluster.validate().is_ok());
        assert!(
            matches!(cluster.redis_topology(), Some(Topology::Cluster(urls)) if urls.len() == 2)
        );
        assert_eq!(settings(&[]).redis_topology(), None);

        for (args, says) in [
            (
                &[
                    "--redis-url",
                    "redis://a",
                    "--redis-cluster-urls",
                    "redis://b",
                ][..],
                "REDIS_URL and REDIS_CLUSTER_URLS are exclusive",
            ),
            (
                &[
                    "--redis-url",
                    "redis://a",
                    "--redis-sentinels",
                    "s:26379",
                    "--redis-sentinel-master",
                    "m",
                ],
                "REDIS_URL and REDIS_SENTINELS are exclusive",
            ),
            (
                &["--redis-sentinels", "s:26379"],
                "needs REDIS_SENTINEL_MASTER",
            ),
            (&["--redis-sentinel-master", "m"], "needs REDIS_SENTINELS"),
            (
                &[
                    "--redis-cluster-urls",
                    "redis://a",
                    "--redis-replica-urls",
                    "redis://b",
                ],
                "REDIS_REPLICA_URLS needs REDIS_URL",
            ),
            (&["--redis-cluster-urls", "http://a"], "REDIS_CLUSTER_URLS"),
            (&["--cache-key-prefix", "shop{x}"], "CACHE_KEY_PREFIX"),
        ] {
            let refused = refusal(args);
            assert!(refused.contains(says), "{args:?}: {refused}");
        }
    }

    #[test]
    fn an_identity_provider_needs_issuer_audience_and_a_safe_url() {
        let provider = [
            "--jwt-jwks-url",
            "https://id.example/.well-known/jwks.json",
            "--jwt-issuer",
            "https://id.example/",
            "--jwt-audience",
            "shop-api",
        ];
        assert!(settings(&provider).validate().is_ok());
        let mut mapped = provider.to_vec();
        mapped.extend(["--jwt-role-map", "shop-admin=ADMIN,shopper=CUSTOMER"]);
        assert!(settings(&mapped).validate().is_ok());
        let production = |url: &'static str| {
            let mut args = provider.to_vec();
            args[1] = url;
            args.extend([
                "--app-env",
                "production",
                "--jwt-secret",
                "0123456789abcdef",
            ]);
            args
        };
        assert!(
            settings(&production("http://127.0.0.1:8080/jwks"))
                .validate()
                .is_ok()
        );
        for (args, says) in [
            (&provider[..2], "JWT_ISSUER is required"),
            (&provider[..4], "JWT_AUDIENCE is required"),
            (&provider[2..4], "need JWT_JWKS_URL"),
            (
                &production("http://keycloak:8080/jwks")[..],
                "must be https://",
            ),
            (
                &["--jwt-jwks-url", "ftp://x"][..],
                "must be an https:// URL",
            ),
        ] {
            let refused = refusal(args);
            assert!(refused.contains(says), "{args:?}: {refused}");
        }
        let mut bad_map = provider.to_vec();
        bad_map.extend(["--jwt-role-map", "shop-admin=ROOT"]);
        assert!(refusal(&bad_map).contains("JWT_ROLE_MAP"));
        let mut bad_ttl = provider.to_vec();
        bad_ttl.extend(["--jwt-jwks-min-interval", "60", "--jwt-jwks-ttl", "10"]);
        assert!(refusal(&bad_ttl).contains("JWT_JWKS_TTL"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://***@h:5432/db"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
