//! Claims, leases and fencing. A claim takes sagas for a lease and stamps them with a
//! fresh fence token; every write a worker makes for a saga afterwards runs in a
//! transaction that first re-takes the lease *under that token* (`Lease::begin`). Once
//! another worker has claimed the saga (its lease expired: a slow database, a paused
//! process), the token no longer matches and the stale worker writes nothing. On
//! PostgreSQL the fenced statement also locks the saga rows until the transaction ends,
//! and claims skip locked rows, so no claim lands in the middle of a step.
use super::model::SagaStatus;
use crate::db::entities::sagas;
use crate::db::in_list::padded;
use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    FromQueryResult, Statement, TransactionTrait, Value,
};
use std::collections::HashSet;
use std::time::Duration;

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Which sagas a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Accepted and never claimed: the queue proper.
    Queued,
    /// Running or compensating under an expired lease: their worker died, stalled, or
    /// put them back to retry after a backoff.
    Expired,
}

/// The lease a worker holds on the sagas of one claim.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub fence: i64,
    pub duration: Duration,
}

/// The terminal statuses, as an SQL list.
fn terminal() -> String {
    [
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Failed,
    ]
    .map(|s| format!("'{}'", s.as_str()))
    .join(", ")
}

/// Numbered placeholders for PostgreSQL, `?` for SQLite.
fn placeholder(backend: DatabaseBackend, n: usize) -> String {
    if backend == DatabaseBackend::Postgres {
        format!("${n}")
    } else {
        "?".to_owned()
    }
}

fn id_list(backend: DatabaseBackend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| placeholder(backend, n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Claims up to `limit` of the oldest such sagas for `duration`, oldest first, under a
/// new fence token. `FOR UPDATE SKIP LOCKED` lets many workers claim concurrently on
/// PostgreSQL (and skips sagas a worker is writing right now); SQLite's single writer
/// serializes claims.
pub async fn claim(
    db: &DatabaseConnection,
    which: Claim,
    duration: Duration,
    limit: usize,
) -> Result<(Lease, Vec<sagas::Model>), DbErr> {
    let lease = Lease {
        // Never 0, the fence of a saga nobody claimed yet.
        fence: i64::try_from(rand::random::<u64>() >> 1)
            .unwrap_or(1)
            .max(1),
        duration,
    };
    let now = now_ms();
    let limit = i64::try_from(limit.max(1)).unwrap_or(1);
    let backend = db.get_database_backend();
    let p = |n| placeholder(backend, n);
    // Values bind in order: the lease, the fence, then `now` for an expired lease, then the limit.
    let (set_status, claimable, mut values): (&str, String, Vec<Value>) = match which {
        Claim::Queued => (
            "status = 'RUNNING', ",
            "status = 'PENDING'".to_owned(),
            vec![lease.until().into(), lease.fence.into()],
        ),
        Claim::Expired => (
            "",
            format!(
                "status IN ('RUNNING', 'COMPENSATING') AND lease_until < {}",
                p(3)
            ),
            vec![lease.until().into(), lease.fence.into(), now.into()],
        ),
    };
    values.push(limit.into());
    let query = format!(
        "UPDATE sagas SET {set_status}lease_until = {p1}, fence = {p2}, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM sagas WHERE {claimable} ORDER BY id LIMIT {limit}{lock}) \
         RETURNING *",
        p1 = p(1),
        p2 = p(2),
        limit = p(values.len()),
        lock = if backend == DatabaseBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        },
    );
    let statement = Statement::from_sql_and_values(backend, query, values);
    let mut claimed = db
        .query_all_raw(statement)
        .await?
        .iter()
        .map(|row| sagas::Model::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|saga| saga.id);
    Ok((lease, claimed))
}

impl Lease {
    /// When a lease taken or renewed now ends (epoch milliseconds).
    pub fn until(&self) -> i64 {
        now_ms() + millis(self.duration)
    }

    /// Renews the lease of those of `ids` this lease still holds and returns them.
    pub async fn renew<C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[i64],
    ) -> Result<HashSet<i64>, DbErr> {
        self.set_lease_until(conn, ids, self.until()).await
    }

    /// A transaction fenced by this lease, and which of `ids` it may write for. On
    /// PostgreSQL the held saga rows are locked (`FOR NO KEY UPDATE`, which claims'
    /// `FOR UPDATE SKIP LOCKED` skips) without writing them, so fencing adds no dead
    /// row versions; SQLite's fence renews the lease, which also takes the write lock
    /// first, as every write transaction there should.
    pub async fn begin(
        &self,
        db: &DatabaseConnection,
        ids: &[i64],
    ) -> Result<(DatabaseTransaction, HashSet<i64>), DbErr> {
        let txn = db.begin().await?;
        let held = if txn.get_database_backend() == DatabaseBackend::Postgres {
            self.lock(&txn, ids).await?
        } else {
            self.renew(&txn, ids).await?
        };
        Ok((txn, held))
    }

    async fn lock(&self, txn: &DatabaseTransaction, ids: &[i64]) -> Result<HashSet<i64>, DbErr> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let backend = DatabaseBackend::Postgres;
        let ids = padded(ids.iter().copied());
        let query = format!(
            "SELECT id FROM sagas WHERE fence = $1 AND status NOT IN ({}) AND id IN ({}) \
             ORDER BY id FOR NO KEY UPDATE",
            terminal(),
            id_list(backend, 2, ids.len()),
        );
        let mut values: Vec<Value> = vec![self.fence.into()];
        values.extend(ids.iter().map(|&id| Value::from(id)));
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(backend, query, values))
            .await?;
        rows.iter()
            .map(|row| row.try_get::<i64>("", "id"))
            .collect()
    }

    /// Gives sagas back to the queue of expired leases, to be claimed again (by any
    /// worker) once `after` has passed: a retry with backoff, or at once.
    pub async fn release<C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[i64],
        after: Duration,
    ) -> Result<(), DbErr> {
        self.set_lease_until(conn, ids, now_ms() + millis(after))
            .await
            .map(|_| ())
    }

    async fn set_lease_until<C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[i64],
        until: i64,
    ) -> Result<HashSet<i64>, DbErr> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let backend = conn.get_database_backend();
        let ids = padded(ids.iter().copied());
        let query = format!(
            "UPDATE sagas SET lease_until = {} \
             WHERE fence = {} AND status NOT IN ({}) AND id IN ({}) RETURNING id",
            placeholder(backend, 1),
            placeholder(backend, 2),
            terminal(),
            id_list(backend, 3, ids.len()),
        );
        let mut values: Vec<Value> = vec![until.into(), self.fence.into()];
        values.extend(ids.iter().map(|&id| Value::from(id)));
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(backend, query, values))
            .await?;
        rows.iter()
            .map(|row| row.try_get::<i64>("", "id"))
            .collect()
    }
}
