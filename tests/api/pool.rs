//! The PostgreSQL connection pool: connections kept open (`DB_MIN_CONNECTIONS`), and a
//! connection the server dropped while it sat in the pool replaced before a statement
//! uses it.
//! Both are about PostgreSQL's connections; on the embedded SQLite database (one
//! in-process connection) they have nothing to check and return at once.
use crate::helpers::fresh_database_url;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use shopgraph::db::{Ping, PoolSettings};
use std::time::{Duration, Instant};

async fn postgres_database() -> Option<String> {
    let url = fresh_database_url().await;
    (!url.starts_with("sqlite:")).then_some(url)
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get::<i64>("", "n")
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Connections to the database `url` names, as PostgreSQL counts them.
async fn connections_to(admin: &DatabaseConnection, url: &str) -> i64 {
    let name = url.rsplit('/').next().unwrap_or_default();
    count(
        admin,
        &format!("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}'"),
    )
    .await
}

#[tokio::test]
async fn the_pool_keeps_its_minimum_of_connections_open() {
    let Some(url) = postgres_database().await else {
        return;
    };
    let admin = Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = shopgraph::db::connect(
        &url,
        PoolSettings {
            min: 4,
            max: 8,
            ping: Ping::EveryAcquire,
        },
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The pool opens them in the background; no statement has asked for one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = 0;
    while Instant::now() < deadline {
        // The admin connection is one of them.
        open = connections_to(&admin, &url).await - 1;
        if open >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(open >= 4, "the pool holds {open} connections, not 4");
    assert!(open <= 8, "the pool holds {open} connections, more than 8");
    let _ = db.close().await;
}

/// Kills the one connection of a pool of one, waits until its backend is gone, and
/// answers the backend that runs the next statement.
async fn backend_after_a_kill(ping: Ping, idle: Duration) -> Option<(i64, i64)> {
    let url = postgres_database().await?;
    let admin = Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pool = PoolSettings {
        min: 1,
        max: 1,
        ping,
    };
    let db = shopgraph::db::connect(&url, pool, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let own_pid = count(&db, "SELECT pg_backend_pid()::bigint AS n").await;
    let killed = count(
        &admin,
        &format!("SELECT count(pg_terminate_backend({own_pid}))::bigint AS n"),
    )
    .await;
    assert_eq!(killed, 1, "the pool's connection was not terminated");
    // Terminating is a signal: wait until the backend is gone, as after a server restart
    // or a proxy's idle timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = format!("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {own_pid}");
    while count(&admin, &alive).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the backend outlived its termination"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // How long the connection sits in the pool matters to `Ping::AfterIdle`.
    tokio::time::sleep(idle).await;
    let next = count(&db, "SELECT pg_backend_pid()::bigint AS n").await;
    let _ = db.close().await;
    Some((own_pid, next))
}

#[tokio::test]
async fn the_saga_pool_replaces_a_dropped_connection_before_a_statement_uses_it() {
    let Some((killed, next)) = backend_after_a_kill(Ping::EveryAcquire, Duration::ZERO).await
    else {
        return;
    };
    assert_ne!(
        next, killed,
        "the statement ran on the terminated connection"
    );
}

#[tokio::test]
async fn the_api_pool_replaces_a_dropped_connection_that_sat_idle() {
    let idle = Duration::from_millis(200);
    let Some((killed, next)) = backend_after_a_kill(Ping::AfterIdle(idle / 2), idle).await else {
        return;
    };
    assert_ne!(
        next, killed,
        "the statement ran on the terminated connection"
    );
}
