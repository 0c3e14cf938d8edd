//! The PostgreSQL connection pool: connections kept open (`DB_MIN_CONNECTIONS`), and a
//! connection the server dropped while it sat idle replaced before a statement uses it.
//! Both are about PostgreSQL's connections; on the embedded SQLite database (one
//! in-process connection) they have nothing to check and return at once.
use crate::helpers::fresh_database_url;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use shopgraph::db::PoolSize;
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
    let db = shopgraph::db::connect(&url, PoolSize { min: 4, max: 8 }, Duration::from_secs(5))
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

#[tokio::test]
async fn a_connection_dropped_while_idle_is_replaced_before_a_statement_uses_it() {
    let Some(url) = postgres_database().await else {
        return;
    };
    let admin = Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = shopgraph::db::connect(&url, PoolSize { min: 1, max: 1 }, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&db, "SELECT 1::bigint AS n").await, 1);
    let own_pid = count(&db, "SELECT pg_backend_pid()::bigint AS n").await;
    let killed = count(
        &admin,
        &format!("SELECT count(pg_terminate_backend({own_pid}))::bigint AS n"),
    )
    .await;
    assert_eq!(killed, 1, "the pool's connection was not terminated");
    // Idle past the threshold after which the pool pings a connection before handing it
    // out: what a server restart or a proxy's idle timeout does to a quiet instance.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let replaced = count(&db, "SELECT pg_backend_pid()::bigint AS n").await;
    assert_ne!(
        replaced, own_pid,
        "the statement ran on the terminated connection"
    );
    let _ = db.close().await;
}
