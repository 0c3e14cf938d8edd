//! Counts SQL statements per request (and, with traces on, makes a span of each). SeaORM's metric callback is per connection, so
//! the request's counter travels in a task-local; batched loads run on the request's
//! task (see `graphql::batch`), so they are counted too.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

tokio::task_local! {
    static CURRENT: StatementCounter;
}

#[derive(Debug, Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `fut`, counting the statements it executes into `counter`.
pub fn count_statements<F: Future>(
    counter: StatementCounter,
    fut: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(counter, fut)
}

/// The counter of the request running on this task, if any.
pub fn current() -> Option<StatementCounter> {
    CURRENT.try_with(Clone::clone).ok()
}

pub(super) fn record(info: &sea_orm::metric::Info<'_>) {
    let _ = CURRENT.try_with(|counter| counter.0.fetch_add(1, Ordering::Relaxed));
    if crate::traces::enabled() {
        crate::traces::statement(&info.statement.sql, info.elapsed, info.failed);
    }
}
