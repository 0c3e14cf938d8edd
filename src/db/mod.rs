//! Database access: the connection (SQLite or PostgreSQL), migrations, the per-request
//! statement counter and the SeaORM entities.
pub mod dialect;
pub mod entities;
pub mod in_list;
pub mod rows;
mod statements;

pub use statements::{StatementCounter, count_statements, current as current_statement_counter};

use crate::config::Settings;
use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use std::time::Duration;

/// A PostgreSQL pool: at most `max` connections, `min` kept open, and when one is tested
/// before it is handed out.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub min: u32,
    pub max: u32,
    pub ping: Ping,
}

/// When the pool tests a connection (a round trip) before handing it out. Giving one
/// back tests it only when its last exchange did not end cleanly (a queued rollback, a
/// statement cut off): vendored sqlx, see vendor/README.md.
#[derive(Debug, Clone, Copy)]
pub enum Ping {
    /// Every time: a connection PostgreSQL dropped is replaced, never used.
    EveryAcquire,
    /// Only after it sat idle this long: a dropped connection that was in use a moment
    /// before fails the next statement on it (UNAVAILABLE, which clients retry).
    AfterIdle(Duration),
}

/// The API's reads and writes skip the test of busy connections: it was a round trip per
/// statement, a third of an uncached page's latency (BENCHMARKS.md, session 9). Idle ones
/// (the kind a restart, a proxy or a firewall drops) are still tested.
const API_PING: Ping = Ping::AfterIdle(Duration::from_secs(1));

/// The checkout engine's connections on an instance that runs no workers.
const ACCEPTING_CONNECTIONS: u32 = 4;

/// Connects, counting every statement for the request that ran it. A statement that
/// waits longer than `statement_timeout` (a lock held by a stuck or paused process)
/// fails instead of outlasting a saga's lease: PostgreSQL's `statement_timeout`, SQLite's
/// busy timeout.
pub async fn connect(
    url: &str,
    pool: PoolSettings,
    statement_timeout: Duration,
) -> anyhow::Result<DatabaseConnection> {
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        ensure_sqlite_dir(url)?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if let Ping::AfterIdle(idle) = pool.ping {
        options.test_before_acquire_if_idle_for(idle);
    }
    let millis = statement_timeout.as_millis().to_string();
    options
        .map_sqlx_postgres_opts(move |pg| pg.options([("statement_timeout", millis.as_str())]))
        .map_sqlx_sqlite_opts(move |sqlite| sqlite.busy_timeout(statement_timeout));
    if is_sqlite {
        // SQLite has one writer: a single pooled connection serializes statements
        // instead of failing with SQLITE_BUSY, and keeps an in-memory database alive.
        options.max_connections(1).min_connections(1);
    } else {
        options
            .max_connections(pool.max)
            .min_connections(pool.min.min(pool.max));
    }
    let mut db = Database::connect(options).await.with_context(|| {
        format!(
            "connect to the database at {}",
            crate::config::redact_url(url)
        )
    })?;
    db.set_metric_callback(statements::record);
    Ok(db)
}

/// A fault that passes: no pooled connection in time, a connection lost, a statement
/// cancelled by its timeout, a lock or serialization conflict, SQLite busy.
pub fn is_transient(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, SqlxError};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                // query_canceled, serialization_failure, deadlock_detected,
                // lock_not_available, admin_shutdown; SQLITE_BUSY (and its extended
                // BUSY_SNAPSHOT), SQLITE_LOCKED.
                SqlxError::Database(db) => matches!(
                    db.code().as_deref(),
                    Some("57014" | "40001" | "40P01" | "55P03" | "57P01" | "5" | "517" | "6")
                ),
                SqlxError::Io(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed
                | SqlxError::Protocol(_) => true,
                _ => false,
            }
        }
        _ => false,
    }
}

/// The pool of the API's requests and the instance's housekeeping.
pub async fn connect_with(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect(
        &settings.database_url(),
        PoolSettings {
            min: settings.db_min_connections,
            max: settings.db_max_connections,
            ping: API_PING,
        },
        Duration::from_millis(settings.db_statement_timeout_ms),
    )
    .await
}

/// The pool of the checkout engine: its workers and the acceptance of orders. Every
/// connection is tested before use. A saga step that meets a dropped connection is put
/// back with a growing backoff, and a batch whose read fails waits for its lease to
/// expire; untested, a PostgreSQL connection killed every 200 ms left sagas unfinished
/// after three minutes (`checkout_faults`). An instance without workers only accepts
/// orders here, with a few connections. On SQLite, whose one writer every part shares,
/// this is `shared`.
pub async fn connect_for_sagas(
    settings: &Settings,
    shared: Option<&DatabaseConnection>,
) -> anyhow::Result<DatabaseConnection> {
    if let Some(shared) = shared
        && shared.get_database_backend() != sea_orm::DatabaseBackend::Postgres
    {
        return Ok(shared.clone());
    }
    connect(
        &settings.database_url(),
        PoolSettings {
            min: 1,
            max: if settings.worker_concurrency == 0 {
                settings.db_max_connections.min(ACCEPTING_CONNECTIONS)
            } else {
                settings.db_max_connections
            },
            ping: Ping::EveryAcquire,
        },
        Duration::from_millis(settings.db_statement_timeout_ms),
    )
    .await
}

/// Applies the migrations this release has and the database lacks. A database that a
/// newer release has migrated further is left as it is: during a rolling upgrade (the
/// migration runs first) and after a rollback, this release runs on that schema, which
/// only ever gains tables and columns it ignores (OPERATIONS.md, "Upgrades").
///
/// A fault that passes (a connection killed or dropped, the database restarting, a lock
/// timeout) is retried for up to `MIGRATE_RETRY_FOR`: a worker that exited on one killed
/// connection at startup never came up while the rest of its fleet ran (`checkout_faults`,
/// `startup_faults`). Each attempt starts from the record of applied migrations, and
/// PostgreSQL rolls back what a dropped connection's transaction had done.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + MIGRATE_RETRY_FOR;
    let mut wait = Duration::from_millis(100);
    loop {
        match migrate_once(db).await {
            Err(err) if is_transient(&err) && tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %err, retry_in = ?wait, "migrating the database failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            result => return result.context("migrate the database"),
        }
    }
}

/// How long `migrate` retries faults that pass.
const MIGRATE_RETRY_FOR: Duration = Duration::from_secs(30);

async fn migrate_once(db: &DatabaseConnection) -> Result<(), DbErr> {
    let schema = schema_state(db).await?;
    if schema.pending == 0 {
        if !schema.newer.is_empty() {
            tracing::info!(newer = ?schema.newer, "the database has migrations of a newer release");
        }
        return Ok(());
    }
    Migrator::up(db, None).await
}

/// Ready = the database answers and every migration of this release is applied (one of
/// a newer release does not make an instance unready: see `migrate`).
pub async fn is_ready(db: &DatabaseConnection) -> bool {
    let ping = tokio::time::timeout(Duration::from_secs(2), async {
        db.ping().await.is_ok()
            && schema_state(db)
                .await
                .is_ok_and(|schema| schema.pending == 0)
    })
    .await;
    ping.unwrap_or(false)
}

/// This release's migrations against the database's record of applied ones.
struct SchemaState {
    /// Migrations of this release not applied yet.
    pending: usize,
    /// Applied migrations this release does not know (a newer release's).
    newer: Vec<String>,
}

async fn schema_state(db: &DatabaseConnection) -> Result<SchemaState, DbErr> {
    let applied: std::collections::HashSet<String> = Migrator::get_migration_models(db)
        .await?
        .into_iter()
        .map(|model| model.version)
        .collect();
    let known: std::collections::HashSet<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Ok(SchemaState {
        pending: known.difference(&applied).count(),
        newer: applied.difference(&known).cloned().collect(),
    })
}

pub async fn ping(db: &DatabaseConnection) -> bool {
    tokio::time::timeout(Duration::from_secs(2), db.execute_unprepared("SELECT 1"))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    Ok(())
}
