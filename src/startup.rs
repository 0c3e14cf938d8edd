//! Builds the application from settings; used by `main` and by the tests, which build
//! the same app on port 0.
use crate::auth::{Authenticator, ExternalIssuer, JwtKeys};
use crate::cache::{Backend, Cache, CachePolicy, MemoryBackend, RedisBackend};
use crate::checkout::events::Events;
use crate::checkout::failures::FailureRates;
use crate::checkout::gateway::{self, HttpGateway, Metered, PaymentGateway, Simulator};
use crate::checkout::intake::Intake;
use crate::checkout::{Engine, Workers};
use crate::config::{Settings, ShutdownSettings};
use crate::graphql::{ApqStore, Limits, Services};
use crate::http::{AppState, Drain, HttpConfig, StateInner};
use crate::services::accounts::Accounts;
use crate::services::seed;
use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct App {
    listener: TcpListener,
    router: Router,
    workers: Workers,
    stop: ShutdownSettings,
    pub state: AppState,
    pub addr: SocketAddr,
}

impl App {
    /// Connects, migrates, seeds the demo when asked and empty, binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let (state, workers) = build_state(&settings).await?;
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .with_context(|| format!("bind {} (BIND_ADDR)", settings.bind_addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router: crate::http::router(state.clone()),
            workers,
            stop: settings.shutdown.clone(),
            state,
            addr,
        })
    }

    /// Serves until `shutdown` resolves, then stops gracefully: readiness turns 503 at
    /// once (`http::Drain`) and the server goes on serving for `SHUTDOWN_DELAY_SECS`
    /// while balancers notice; then it stops listening, and the requests and WebSockets
    /// in flight (closed with 1012) and the checkout workers' batches get
    /// `SHUTDOWN_GRACE_SECS` to finish; last, the cache invalidations still waiting
    /// (coalesced statistics, the outbox) are sent.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, instance = %self.state.instance_id, "listening");
        let drain = self.state.drain.clone();
        let (delay, grace) = (self.stop.delay(), self.stop.grace());
        let (listening_ends, listening_ended) = tokio::sync::oneshot::channel::<()>();
        let stop_listening = async move {
            shutdown.await;
            drain.begin();
            tracing::info!(?delay, "draining: readiness is 503");
            tokio::time::sleep(delay).await;
            tracing::info!(?grace, "no longer listening; waiting for what is in flight");
            let _ = listening_ends.send(());
        };
        // Answers go out at once: with Nagle's algorithm, a response written in two
        // parts waits for the client's delayed ACK of the first (40 ms on Linux).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "TCP_NODELAY not set on a connection");
            }
        });
        let server = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_listening);
        let drain = self.state.drain.clone();
        let in_flight = async move {
            server.await.context("serve")?;
            drain.sockets_closed().await;
            anyhow::Ok(())
        };
        tokio::pin!(in_flight);
        let workers = self.workers;
        tokio::select! {
            served = &mut in_flight => served?,
            Ok(()) = listening_ended => {
                let (served, ()) = tokio::join!(
                    async {
                        tokio::time::timeout(grace, &mut in_flight).await.unwrap_or_else(|_| {
                            tracing::warn!(?grace, "requests still in flight after the grace period were dropped");
                            Ok(())
                        })
                    },
                    workers.stop(grace),
                );
                served?;
            }
        }
        self.state.cache.flush().await;
        tracing::info!("stopped");
        Ok(())
    }
}

pub async fn build_state(settings: &Settings) -> anyhow::Result<(AppState, Workers)> {
    let db = crate::db::connect_with(settings).await?;
    crate::db::migrate(&db).await?;
    if settings.seed_demo
        && seed::seed_demo_if_empty(&db, &settings.default_tenant())
            .await
            .is_ok_and(|seeded| seeded)
    {
        tracing::info!(tenant = %settings.default_tenant(), "loaded demo data");
    }
    let cache = build_cache(settings)?;
    cache.keep_refused_invalidations_in(db.clone());
    let jwt = JwtKeys::new(&jwt_secret(settings)?);
    let external = match settings.identity.provider()? {
        Some(provider) => Some(ExternalIssuer::start(provider).context("JWT_JWKS_URL")?),
        None => None,
    };
    let sagas_db = crate::db::connect_for_sagas(settings, Some(&db)).await?;
    let checkout = build_engine(settings, &sagas_db, &cache)?;
    let workers = checkout.spawn_workers(settings.worker_concurrency);
    spawn_idempotency_purge(db.clone());
    spawn_guest_cart_purge(
        db.clone(),
        cache.clone(),
        settings.accounts.guest_cart_ttl(),
    );
    let services = Services {
        db: db.clone(),
        cache: cache.clone(),
        checkout,
        accounts: Arc::new(build_accounts(settings, jwt.clone())?),
    };
    let limits = Limits {
        enabled: settings.query_limits_enabled,
        depth: settings.query_max_depth,
        complexity: settings.query_max_complexity,
        aliases: settings.query_max_aliases,
        root_fields: settings.query_max_root_fields,
        introspection: settings.introspection,
    };
    crate::telemetry::install();
    let state = AppState::new(StateInner {
        schema: crate::graphql::schema::build(services, limits, apq_store(settings, limits)?),
        db,
        cache,
        auth: Authenticator::new(jwt, external),
        instance_id: settings
            .instance_id
            .clone()
            .unwrap_or_else(generated_instance_id),
        default_tenant: settings.default_tenant(),
        known_documents: Default::default(),
        http: HttpConfig::from_settings(settings),
        drain: Drain::default(),
    });
    Ok((state, workers))
}

/// Accounts, with sign-in counters in Redis when configured (shared by every instance).
fn build_accounts(settings: &Settings, jwt: JwtKeys) -> anyhow::Result<Accounts> {
    let redis = match &settings.redis_topology() {
        Some(topology) => {
            Some(crate::cache::redis_connection(topology).context("Redis for sign-in counters")?)
        }
        None => None,
    };
    let redis = redis.map(|conn| (conn, settings.cache_key_prefix.as_str()));
    Accounts::new(&settings.accounts, jwt, redis)
}

/// Persisted queries in Redis when configured (shared by every instance), else in
/// process.
fn apq_store(settings: &Settings, limits: Limits) -> anyhow::Result<ApqStore> {
    Ok(match &settings.redis_topology() {
        Some(topology) => ApqStore::redis(
            crate::cache::redis_connection(topology).context("Redis for persisted queries")?,
            &settings.cache_key_prefix,
            settings.apq_ttl,
            limits,
        ),
        None => ApqStore::memory(settings.apq_max_entries, limits),
    })
}

fn generated_instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "shop".into());
    format!("{host}-{:04x}", rand::random::<u16>())
}

/// The checkout engine: events through Redis when configured, failure injection from
/// `SAGA_FAIL_RATE_<STEP>`.
pub fn build_engine(
    settings: &Settings,
    db: &sea_orm::DatabaseConnection,
    cache: &Cache,
) -> anyhow::Result<Arc<Engine>> {
    let events = match &settings.redis_topology() {
        Some(topology) => Events::with_redis(topology, &settings.cache_key_prefix)
            .context("Redis for saga events")?,
        None => Events::in_process(),
    };
    Ok(Arc::new(Engine {
        db: db.clone(),
        cache: cache.clone(),
        events,
        wake: tokio::sync::Notify::new(),
        gateway: Arc::new(Metered(payment_gateway(settings)?)),
        failures: match &settings.fail_rates {
            Some(rates) => rates.clone(),
            None => FailureRates::from_env()?,
        },
        lease: Duration::from_secs(settings.saga_lease_secs),
        batch: settings.worker_batch_size,
        gather: Duration::from_millis(settings.worker_gather_ms),
        max_attempts: settings.saga_max_attempts,
        intake: (db.get_database_backend() == sea_orm::DatabaseBackend::Postgres)
            .then(|| Intake::start(db.clone())),
    }))
}

/// Retires expired guest carts every minute, or every `GUEST_CART_TTL` when that is
/// shorter (each API instance does; a cart is retired once, in its own transaction),
/// and invalidates their cached entries.
fn spawn_guest_cart_purge(db: sea_orm::DatabaseConnection, cache: Cache, ttl: Duration) {
    let period = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        loop {
            every.tick().await;
            match crate::services::cart::purge_expired(&db).await {
                Ok(purged) => {
                    for cart in &purged {
                        cache.invalidate(&cart.tenant, &cart.tags).await;
                    }
                    if !purged.is_empty() {
                        tracing::info!(purged = purged.len(), "expired guest carts purged");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "purging guest carts failed"),
            }
        }
    });
}

/// Deletes expired `Idempotency-Key` records every ten minutes (each API instance
/// does; the statement is idempotent).
fn spawn_idempotency_purge(db: sea_orm::DatabaseConnection) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(600));
        loop {
            every.tick().await;
            match crate::services::idempotency::purge_expired(&db).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired idempotency records purged"),
                Err(err) => tracing::warn!(error = %err, "purging idempotency records failed"),
            }
        }
    });
}

/// The payment provider at `PAYMENT_GATEWAY_URL`, else the simulator in process.
fn payment_gateway(settings: &Settings) -> anyhow::Result<Arc<dyn PaymentGateway>> {
    let timeout = Duration::from_millis(settings.payment_timeout_ms);
    Ok(match &settings.payment_gateway_url {
        Some(url) => Arc::new(HttpGateway::new(url, timeout).context("PAYMENT_GATEWAY_URL")?),
        None => Arc::new(Simulator::new(simulator_config(settings))),
    })
}

pub fn simulator_config(settings: &Settings) -> gateway::SimulatorConfig {
    gateway::SimulatorConfig {
        latency: Duration::from_millis(settings.payment_latency_ms),
        ambiguous_rate: settings.payment_ambiguous_rate,
    }
}

/// `gateway`: the simulated payment provider's HTTP API alone, for workers in other
/// processes (`PAYMENT_GATEWAY_URL`) to share one ledger.
pub async fn run_gateway(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.bind_addr)
        .await
        .with_context(|| format!("bind {}", settings.bind_addr))?;
    tracing::info!(addr = %settings.bind_addr, "simulated payment provider listening");
    let router = Simulator::new(simulator_config(&settings)).router();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve the payment provider")
}

/// `worker`: checkout workers only, no HTTP.
pub async fn run_workers(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    settings.validate()?;
    let db = crate::db::connect_for_sagas(&settings, None).await?;
    crate::db::migrate(&db).await?;
    let cache = build_cache(&settings)?;
    cache.keep_refused_invalidations_in(db.clone());
    let engine = build_engine(&settings, &db, &cache)?;
    let workers = engine.spawn_workers(settings.worker_concurrency.max(1));
    shutdown.await;
    let grace = settings.shutdown.grace();
    tracing::info!(
        ?grace,
        "stopping: finishing or putting back the batches in hand"
    );
    workers.stop(grace).await;
    cache.flush().await;
    tracing::info!("stopped");
    Ok(())
}

/// `CACHE_TTL_<MODULE>` in seconds, e.g. `CACHE_TTL_PRODUCTS=120`.
fn ttl_override(module: &str) -> anyhow::Result<Option<Duration>> {
    let name = format!("CACHE_TTL_{}", module.to_ascii_uppercase());
    match std::env::var(&name) {
        Ok(raw) => raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|secs| *secs <= crate::config::MAX_TTL_SECS)
            .map(|secs| Some(Duration::from_secs(secs)))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{name} must be a whole number of seconds up to {}, got '{raw}'",
                    crate::config::MAX_TTL_SECS
                )
            }),
        Err(_) => Ok(None),
    }
}

pub fn build_cache(settings: &Settings) -> anyhow::Result<Cache> {
    let mut overrides = std::collections::HashMap::new();
    for module in CachePolicy::modules() {
        if let Some(ttl) = ttl_override(module)? {
            overrides.insert(module, ttl);
        }
    }
    let policy = CachePolicy::new(
        settings.cache_enabled,
        settings.cache_key_prefix.clone(),
        Duration::from_secs(settings.cache_negative_ttl),
        settings.cache_ttl_jitter,
        |module| overrides.get(module).copied(),
    );
    let backend = match &settings.redis_topology() {
        Some(topology) => Backend::Redis(
            RedisBackend::connect(
                topology,
                &settings.redis_replica_urls,
                &settings.cache_key_prefix,
                policy.longest_ttl(),
            )
            .with_context(|| format!("Redis cache ({})", topology.describe()))?,
        ),
        None => Backend::Memory(MemoryBackend::new(settings.cache_max_entries)),
    };
    let cache = Cache::new(backend, policy);
    // Statistics change with every completed order: invalidated per order, they would
    // be recomputed at the checkout rate. Their bounded lag is stated in the schema.
    cache.coalesce(&[crate::services::tags::STATS]);
    if let Some(delay) = invalidation_delay()? {
        tracing::warn!(
            ?delay,
            "fault injection: every cache invalidation waits after its commit"
        );
        cache.delay_invalidations(delay);
    }
    Ok(cache)
}

/// Fault injection for tests (`FAULT_INVALIDATION_DELAY_MS`): the window between a
/// commit and its invalidation, held open so a test can kill the process inside it.
fn invalidation_delay() -> anyhow::Result<Option<Duration>> {
    match std::env::var("FAULT_INVALIDATION_DELAY_MS") {
        Ok(raw) => raw
            .trim()
            .parse::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| anyhow::anyhow!("FAULT_INVALIDATION_DELAY_MS must be a whole number of milliseconds, got '{raw}'")),
        Err(_) => Ok(None),
    }
}

/// `JWT_SECRET`, or (embedded default) a secret generated once and kept in `DATA_DIR`
/// so that `token` and `serve` agree.
pub fn jwt_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = settings.data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(existing.as_bytes().to_vec());
        }
    }
    write_secret(&path)
}

fn write_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(path, &secret).with_context(|| format!("write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret.into_bytes())
}
