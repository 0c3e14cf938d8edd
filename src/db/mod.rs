//! Database access: the connection (SQLite or PostgreSQL), migrations, the per-request
//! statement counter and the SeaORM entities.
pub mod entities;
mod statements;

pub use statements::{StatementCounter, count_statements, current as current_statement_counter};

use crate::config::Settings;
use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::time::Duration;

/// Connects, counting every statement for the request that ran it.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        ensure_sqlite_dir(url)?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if is_sqlite {
        // SQLite has one writer: a single pooled connection serializes statements
        // instead of failing with SQLITE_BUSY, and keeps an in-memory database alive.
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(max_connections).min_connections(1);
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

pub async fn connect_with(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect(&settings.database_url(), settings.db_max_connections).await
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("apply migrations")
}

/// Ready = the database answers and no migration is pending.
pub async fn is_ready(db: &DatabaseConnection) -> bool {
    let ping = tokio::time::timeout(Duration::from_secs(2), async {
        db.ping().await.is_ok()
            && Migrator::get_pending_migrations(db)
                .await
                .map(|pending| pending.is_empty())
                .unwrap_or(false)
    })
    .await;
    ping.unwrap_or(false)
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
