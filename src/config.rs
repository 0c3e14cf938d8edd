//! Typed settings from environment variables and `--flags`, validated at start: a bad
//! value stops the start with a message that names the variable. Secrets are never
//! printed (`Debug` redacts them).
use crate::domain::TenantId;
use anyhow::{Context, bail};
use clap::Args;
use clap::builder::BoolishValueParser;
use std::net::SocketAddr;
use std::path::PathBuf;

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

    /// Tests set failure rates here; otherwise `SAGA_FAIL_RATE_<STEP>` is read.
    #[arg(skip)]
    pub fail_rates: Option<crate::checkout::gateway::FailureRates>,

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
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("app_env", &self.app_env)
            .field("cache_enabled", &self.cache_enabled)
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
        for url in self.redis_url.iter().chain(&self.redis_replica_urls) {
            redis::parse_redis_url(url)
                .with_context(|| "REDIS_URL / REDIS_REPLICA_URLS: not a valid redis:// URL")?;
        }
        if !self.redis_replica_urls.is_empty() && self.redis_url.is_none() {
            bail!("REDIS_REPLICA_URLS needs REDIS_URL (the primary) as well");
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 16
        {
            bail!("JWT_SECRET must be at least 16 bytes");
        }
        if self.app_env == AppEnv::Production && self.jwt_secret.is_none() {
            bail!("JWT_SECRET is required when APP_ENV=production");
        }
        if self.cache_key_prefix.is_empty() || self.cache_key_prefix.contains([':', ' ', '*']) {
            bail!("CACHE_KEY_PREFIX must be non-empty and hold no ':', ' ' or '*'");
        }
        if self.cache_ttl_jitter > 100 {
            bail!("CACHE_TTL_JITTER is a percentage (0-100)");
        }
        if self.saga_lease_secs == 0 {
            bail!("SAGA_LEASE_SECS must be at least 1");
        }
        if self.worker_concurrency > 256 {
            bail!("WORKER_CONCURRENCY must be at most 256");
        }
        if self.db_max_connections == 0 {
            bail!("DB_MAX_CONNECTIONS must be at least 1");
        }
        TenantId::parse(&self.default_tenant)
            .map_err(|e| anyhow::anyhow!("DEFAULT_TENANT: {e}"))?;
        Ok(())
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
