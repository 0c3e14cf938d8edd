//! Group commit for accepted sagas on PostgreSQL. Concurrent requests hand their new
//! saga to the intake, whose writers each take every saga waiting at that moment and
//! write them, rows and steps, in one statement and one commit, then answer each
//! request. A request still returns only once its saga is durable; under load one
//! commit (one WAL flush) serves many checkouts instead of one each.
//!
//! Exactly once: each request carries a server-made `request_id` (unique in the
//! table). When a statement fails, or its answer is lost (a connection dropped around
//! the commit), the writer runs it again with `ON CONFLICT DO NOTHING` and reads back
//! by request id: a row that made it is found, not inserted twice. A row that meets an
//! existing idempotency key is not inserted; the request is told so (`None`) and
//! answers with the earlier saga. The first try is a plain insert: `ON CONFLICT`
//! costs a speculative insertion per row and index, which every checkout would pay.
use super::model::{SagaKind, SagaStatus, StepStatus};
use crate::db::entities::sagas;
use crate::db::in_list::padded;
use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, Statement, Value,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Sagas one statement writes at most (6 parameters each).
const MAX_BATCH: usize = 256;
/// Requests that may wait for a writer before `write` itself waits.
const MAX_WAITING: usize = 4096;
/// Writers: while one commits, the next gathers what arrived meanwhile.
const WRITERS: usize = 2;

/// A saga to write, already validated.
#[derive(Debug, Clone)]
pub struct NewSaga {
    pub tenant: String,
    pub kind: SagaKind,
    pub customer: i64,
    pub payload: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub request_id: String,
    /// For a cancellation: the order it cancels (unique).
    pub cancels_order: Option<i64>,
}

/// `Ok(None)`: nothing was written: the customer does not belong to the tenant, or the
/// idempotency key (or the order's cancellation) is taken.
pub type Written = Result<Option<sagas::Model>, DbErr>;
type Waiting = (NewSaga, oneshot::Sender<Written>);

#[derive(Clone)]
pub struct Intake {
    queue: mpsc::Sender<Waiting>,
}

impl Intake {
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, waiting) = mpsc::channel(MAX_WAITING);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(db.clone(), waiting.clone()));
        }
        Self { queue }
    }

    pub async fn write(&self, saga: NewSaga) -> Written {
        let stopped = || DbErr::Custom("the checkout intake has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((saga, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_batches(db: DatabaseConnection, waiting: Arc<Mutex<mpsc::Receiver<Waiting>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut waiting = waiting.lock().await;
            if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        let (sagas, replies): (Vec<NewSaga>, Vec<_>) = batch.into_iter().unzip();
        let written = write_once(&db, &sagas).await;
        match written {
            Ok(written) => {
                for (reply, saga) in replies.into_iter().zip(written) {
                    let _ = reply.send(Ok(saga));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(DbErr::Custom(message.clone())));
                }
            }
        }
    }
}

/// Inserts `sagas`, retrying a failed statement (same request ids, so nothing lands
/// twice), then reads back any row the insert did not return.
async fn write_once(
    db: &DatabaseConnection,
    sagas: &[NewSaga],
) -> Result<Vec<Option<sagas::Model>>, DbErr> {
    let mut delay = Duration::from_millis(20);
    let mut attempt = 0;
    let mut written = loop {
        match insert(db, sagas, attempt > 0).await {
            Ok(written) => break written,
            Err(err) if attempt < 3 => {
                tracing::warn!(error = %err, sagas = sagas.len(), "writing accepted checkouts failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    };
    // Rows not returned: a retry found them already in (the lost answer was a
    // commit), or an idempotency key or cancellation was taken.
    {
        let missing: Vec<&str> = sagas
            .iter()
            .zip(&written)
            .filter(|(_, w)| w.is_none())
            .map(|(s, _)| s.request_id.as_str())
            .collect();
        if !missing.is_empty() {
            let found: HashMap<String, sagas::Model> = sagas::Entity::find()
                .filter(sagas::Column::RequestId.is_in(padded(missing)))
                .all(db)
                .await?
                .into_iter()
                .filter_map(|s| s.request_id.clone().map(|id| (id, s)))
                .collect();
            for (saga, slot) in sagas.iter().zip(written.iter_mut()) {
                if slot.is_none() {
                    *slot = found.get(&saga.request_id).cloned();
                }
            }
        }
    }
    Ok(written)
}

/// Writes `sagas` (those whose customer belongs to their tenant) with their steps in
/// one statement; the answer is in the order of `sagas`. Ids come from the sequence
/// before the insert so that each request can find its row.
async fn insert(
    db: &DatabaseConnection,
    sagas: &[NewSaga],
    skip_conflicts: bool,
) -> Result<Vec<Option<sagas::Model>>, DbErr> {
    let mut values: Vec<Value> = Vec::with_capacity(sagas.len() * 7 + 1);
    let mut rows = Vec::with_capacity(sagas.len());
    for (ord, saga) in sagas.iter().enumerate() {
        let n = values.len();
        rows.push(format!(
            "({ord}, ${}, ${}, ${}::bigint, ${}, ${}, ${}, ${}, ${}::bigint)",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 7,
            n + 8
        ));
        values.extend([
            saga.tenant.clone().into(),
            saga.kind.as_str().into(),
            saga.customer.into(),
            saga.payload.clone().into(),
            saga.idempotency_key.clone().into(),
            saga.request_hash.clone().into(),
            saga.request_id.clone().into(),
            saga.cancels_order.into(),
        ]);
    }
    values.push(Utc::now().into());
    let now = values.len();
    // Step names and positions come from the code, never from input.
    let steps = [SagaKind::Checkout, SagaKind::CancelOrder]
        .iter()
        .flat_map(|kind| {
            kind.steps()
                .iter()
                .enumerate()
                .map(move |(position, step)| {
                    format!("('{}', {position}, '{}')", kind.as_str(), step.as_str())
                })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH input (ord, tenant_id, kind, customer_id, payload, idempotency_key, request_hash, \
                     request_id, cancels_order_id) AS (VALUES {rows}), \
         numbered AS ( \
           SELECT input.*, nextval(pg_get_serial_sequence('sagas', 'id')) AS id FROM input \
           WHERE EXISTS (SELECT 1 FROM customers c \
                         WHERE c.id = input.customer_id AND c.tenant_id = input.tenant_id)), \
         saga AS ( \
           INSERT INTO sagas (id, tenant_id, kind, status, customer_id, payload, idempotency_key, \
                              request_hash, request_id, cancels_order_id, attempts, created_at, updated_at) \
           SELECT id, tenant_id, kind, '{pending}', customer_id, payload, idempotency_key, \
                  request_hash, request_id, cancels_order_id, 0, ${now}, ${now} \
           FROM numbered ORDER BY ord \
           {on_conflict} \
           RETURNING *), \
         steps AS ( \
           INSERT INTO saga_steps (saga_id, position, name, status, attempts) \
           SELECT saga.id, step.position, step.name, '{step_pending}', 0 \
           FROM saga JOIN (VALUES {steps}) AS step(kind, position, name) ON step.kind = saga.kind) \
         SELECT numbered.ord AS ord, saga.* FROM numbered JOIN saga ON saga.id = numbered.id",
        rows = rows.join(", "),
        pending = SagaStatus::Pending.as_str(),
        step_pending = StepStatus::Pending.as_str(),
        on_conflict = if skip_conflicts {
            "ON CONFLICT DO NOTHING"
        } else {
            ""
        },
    );
    let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
    let mut written: HashMap<i32, sagas::Model> = HashMap::new();
    for row in db.query_all_raw(statement).await? {
        let ord: i32 = row.try_get("", "ord")?;
        written.insert(ord, sagas::Model::from_query_result(&row, "")?);
    }
    Ok((0..sagas.len())
        .map(|ord| i32::try_from(ord).ok().and_then(|ord| written.remove(&ord)))
        .collect())
}
