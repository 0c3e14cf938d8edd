//! The PostgreSQL connection pool: connections kept open (`DB_MIN_CONNECTIONS`), a
//! connection the server dropped while it sat in the pool replaced before a statement
//! uses it, and what the pool still does when a connection comes back without its ping
//! (vendor/README.md): a dropped transaction rolled back at once, a connection killed
//! mid-statement not handed out again.
//! All are about PostgreSQL's connections; on the embedded SQLite database (one
//! in-process connection) they have nothing to check and return at once.
use crate::helpers::fresh_database_url;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use shopgraph::db::{Ping, PoolSettings};
use std::time::{Duration, Instant};

/// A fresh PostgreSQL database and a connection of its own to watch it from (`None` on
/// SQLite).
async fn postgres_database() -> Option<(String, DatabaseConnection)> {
    let url = fresh_database_url().await;
    if url.starts_with("sqlite:") {
        return None;
    }
    let admin = Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Some((url, admin))
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
    let Some((url, admin)) = postgres_database().await else {
        return;
    };
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
    let (url, admin) = postgres_database().await?;
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

/// A pool of one that tests connections only after a minute idle, so what the next
/// statement meets is what the pool did when the last one gave its connection back.
async fn pool_of_one(url: &str) -> DatabaseConnection {
    let pool = PoolSettings {
        min: 1,
        max: 1,
        ping: Ping::AfterIdle(Duration::from_secs(60)),
    };
    shopgraph::db::connect(url, pool, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The pool gives a connection back without a round trip only when its last exchange
/// ended cleanly (vendor/README.md); one killed in the middle of a statement is tested
/// then, found dead and replaced, so only the statement that was running fails.
#[tokio::test]
async fn a_connection_killed_during_a_statement_is_not_handed_out_again() {
    let Some((url, admin)) = postgres_database().await else {
        return;
    };
    let db = pool_of_one(&url).await;
    let own_pid = count(&db, "SELECT pg_backend_pid()::bigint AS n").await;
    let sleeper = db.clone();
    let running = tokio::spawn(async move {
        let sql = "SELECT pg_sleep(30)";
        sleeper
            .execute_raw(Statement::from_string(sleeper.get_database_backend(), sql))
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeping = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {own_pid} AND query LIKE 'SELECT pg_sleep%' AND state = 'active'"
    );
    while count(&admin, &sleeping).await == 0 {
        assert!(Instant::now() < deadline, "the statement never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = count(
        &admin,
        &format!("SELECT count(pg_terminate_backend({own_pid}))::bigint AS n"),
    )
    .await;
    assert_eq!(killed, 1, "the pool's connection was not terminated");
    let outcome = running.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.is_err(), "the killed statement reported success");
    let next = count(&db, "SELECT pg_backend_pid()::bigint AS n").await;
    assert_ne!(
        next, own_pid,
        "the next statement ran on the killed connection"
    );
    let _ = db.close().await;
}

/// A transaction dropped unfinished (a cancelled request) is rolled back when its
/// connection goes back to the pool, not whenever that connection is next used: its row
/// locks must not outlive it.
#[tokio::test]
async fn a_dropped_transaction_releases_its_locks_at_once() {
    let Some((url, admin)) = postgres_database().await else {
        return;
    };
    let setup = "CREATE TABLE lock_probe (id int PRIMARY KEY); INSERT INTO lock_probe VALUES (1)";
    admin
        .execute_unprepared(setup)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = pool_of_one(&url).await;
    let txn = sea_orm::TransactionTrait::begin(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    txn.execute_unprepared("UPDATE lock_probe SET id = 1 WHERE id = 1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(txn);
    // Nothing uses `db` from here on: only its release may roll back.
    let free =
        "SELECT count(*) AS n FROM (SELECT id FROM lock_probe FOR UPDATE SKIP LOCKED) locked";
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&admin, free).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped transaction still holds its row lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = db.close().await;
}
