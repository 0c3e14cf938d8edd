//! Group commit for accepted sagas on PostgreSQL. Concurrent requests hand their new
//! saga to the intake, whose writers each take every saga waiting at that moment and
//! write them, rows and steps, in one statement and one commit, then answer each
//! request. A request still returns only once its saga is durable; under load one
//! commit (one WAL flush) serves many checkouts instead of one each.
use super::model::{SagaKind, SagaStatus, StepStatus};
use crate::db::entities::sagas;
use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, FromQueryResult, Statement, Value,
};
use std::collections::HashMap;
use std::sync::Arc;
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
}

/// `Ok(None)`: the customer does not belong to the tenant, nothing was written.
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
        match insert(&db, &sagas).await {
            Ok(written) => {
                for (reply, saga) in replies.into_iter().zip(written) {
                    let _ = reply.send(Ok(saga));
                }
            }
            // One row can fail the statement (an idempotency key racing in): each on
            // its own then, so only that request gets the error.
            Err(_) if sagas.len() > 1 => {
                for (saga, reply) in sagas.iter().zip(replies) {
                    let written = insert(&db, std::slice::from_ref(saga)).await;
                    let _ = reply.send(written.map(|mut one| one.pop().flatten()));
                }
            }
            Err(err) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}

/// Writes `sagas` (those whose customer belongs to their tenant) with their steps in
/// one statement; the answer is in the order of `sagas`. Ids come from the sequence
/// before the insert so that each request can find its row.
async fn insert(
    db: &DatabaseConnection,
    sagas: &[NewSaga],
) -> Result<Vec<Option<sagas::Model>>, DbErr> {
    let mut values: Vec<Value> = Vec::with_capacity(sagas.len() * 5 + 1);
    let mut rows = Vec::with_capacity(sagas.len());
    for (ord, saga) in sagas.iter().enumerate() {
        let n = values.len();
        rows.push(format!(
            "({ord}, ${}, ${}, ${}::bigint, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        ));
        values.extend([
            saga.tenant.clone().into(),
            saga.kind.as_str().into(),
            saga.customer.into(),
            saga.payload.clone().into(),
            saga.idempotency_key.clone().into(),
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
        "WITH input (ord, tenant_id, kind, customer_id, payload, idempotency_key) AS (VALUES {rows}), \
         numbered AS ( \
           SELECT input.*, nextval(pg_get_serial_sequence('sagas', 'id')) AS id FROM input \
           WHERE EXISTS (SELECT 1 FROM customers c \
                         WHERE c.id = input.customer_id AND c.tenant_id = input.tenant_id)), \
         saga AS ( \
           INSERT INTO sagas (id, tenant_id, kind, status, customer_id, payload, idempotency_key, \
                              attempts, created_at, updated_at) \
           SELECT id, tenant_id, kind, '{pending}', customer_id, payload, idempotency_key, 0, ${now}, ${now} \
           FROM numbered ORDER BY ord \
           RETURNING *), \
         steps AS ( \
           INSERT INTO saga_steps (saga_id, position, name, status, attempts) \
           SELECT saga.id, step.position, step.name, '{step_pending}', 0 \
           FROM saga JOIN (VALUES {steps}) AS step(kind, position, name) ON step.kind = saga.kind) \
         SELECT numbered.ord AS ord, saga.* FROM numbered JOIN saga ON saga.id = numbered.id",
        rows = rows.join(", "),
        pending = SagaStatus::Pending.as_str(),
        step_pending = StepStatus::Pending.as_str(),
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
