//! Batching without a timer. Every key a level of a response asks for is registered
//! within one poll pass of the request (`passes`), so a batch waits for passes, not for
//! time: it fetches once a whole pass added no key. A miss pays its SQL and two re-polls
//! of the request, where a timer charged every level a fixed delay and, on a busy
//! machine, still split batches when a level took longer than the timer.
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sea_orm::DbErr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Keys beyond this open a second batch, keeping each statement's `IN` list bounded.
const MAX_BATCH: usize = 1000;

/// One statement that fetches the rows of many keys.
pub trait Fetch: Send + Sync + 'static {
    type Value: Clone + Send + Sync + 'static;

    fn fetch(&self, keys: Vec<i64>)
    -> BoxFuture<'static, Result<HashMap<i64, Self::Value>, DbErr>>;
}

type Fetched<V> = Result<Arc<HashMap<i64, V>>, DbErr>;

#[derive(Default)]
struct Keys {
    list: Vec<i64>,
    closed: bool,
}

struct Open<V> {
    keys: Arc<Mutex<Keys>>,
    fetched: Shared<BoxFuture<'static, Fetched<V>>>,
}

/// Gathers the keys asked for while a batch is open and fetches them with one statement.
/// Every waiter polls the same shared fetch, so the batch proceeds whichever of them the
/// executor polls first, and a waiter that is dropped (a failed sibling) stalls no one.
pub struct Batcher<F: Fetch> {
    fetch: Arc<F>,
    open: Mutex<Option<Open<F::Value>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is a key list, valid after any panic that poisoned it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<F: Fetch> Batcher<F> {
    pub fn new(fetch: F) -> Self {
        Self {
            fetch: Arc::new(fetch),
            open: Mutex::new(None),
        }
    }

    pub async fn load_one(&self, key: i64) -> Result<Option<F::Value>, DbErr> {
        let fetched = self.join(key).await?;
        Ok(fetched.get(&key).cloned())
    }

    pub async fn load_many(
        &self,
        keys: impl IntoIterator<Item = i64>,
    ) -> Result<HashMap<i64, F::Value>, DbErr> {
        let keys: Vec<i64> = keys.into_iter().collect();
        let mut batches: Vec<Shared<BoxFuture<'static, Fetched<F::Value>>>> = Vec::new();
        for &key in &keys {
            let batch = self.join(key);
            if batches.last().is_none_or(|last| !last.ptr_eq(&batch)) {
                batches.push(batch);
            }
        }
        let mut found = HashMap::with_capacity(keys.len());
        for fetched in futures_util::future::try_join_all(batches).await? {
            for key in &keys {
                if let Some(value) = fetched.get(key) {
                    found.insert(*key, value.clone());
                }
            }
        }
        Ok(found)
    }

    /// Adds `key` to the open batch, opening one if there is none (or it is closed or full).
    fn join(&self, key: i64) -> Shared<BoxFuture<'static, Fetched<F::Value>>> {
        let mut open = lock(&self.open);
        if let Some(batch) = open.as_ref() {
            let mut keys = lock(&batch.keys);
            if !keys.closed && keys.list.len() < MAX_BATCH {
                keys.list.push(key);
                return batch.fetched.clone();
            }
        }
        let keys = Arc::new(Mutex::new(Keys {
            list: vec![key],
            closed: false,
        }));
        let fetched = gather_then_fetch(keys.clone(), self.fetch.clone())
            .boxed()
            .shared();
        *open = Some(Open {
            keys,
            fetched: fetched.clone(),
        });
        fetched
    }
}

async fn gather_then_fetch<F: Fetch>(keys: Arc<Mutex<Keys>>, fetch: Arc<F>) -> Fetched<F::Value> {
    // A pass may poll only a few of a long list's futures (futures' `FuturesUnordered`
    // stops a round after two of them wake themselves), so a level can take many
    // passes; each adds a key until the level is done, and the batch holds at most
    // `MAX_BATCH`, so this ends.
    let mut seen = 0;
    loop {
        super::passes::pass_end().await;
        let now = lock(&keys).list.len();
        if now == seen {
            break;
        }
        seen = now;
    }
    let mut list = {
        let mut keys = lock(&keys);
        keys.closed = true;
        std::mem::take(&mut keys.list)
    };
    list.sort_unstable();
    list.dedup();
    fetch.fetch(list).await.map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::passes::counting_passes;
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles keys, remembering the size of every statement it would have run.
    #[derive(Default)]
    struct Doubling(Arc<Mutex<Vec<usize>>>);

    impl Fetch for Doubling {
        type Value = i64;

        fn fetch(&self, keys: Vec<i64>) -> BoxFuture<'static, Result<HashMap<i64, i64>, DbErr>> {
            lock(&self.0).push(keys.len());
            async move { Ok(keys.into_iter().map(|k| (k, k * 2)).collect()) }.boxed()
        }
    }

    /// Two levels of 2 500 futures each, as `FuturesUnordered` polls them (a few per
    /// pass once they wake themselves): fetched in full batches, none split.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_level_is_fetched_in_full_batches_however_its_futures_are_polled() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::new(Doubling(sizes.clone()));
        let answered = AtomicUsize::new(0);
        let (batcher, answered_ref) = (&batcher, &answered);
        counting_passes(async {
            let mut level: FuturesUnordered<_> = (0..2_500)
                .map(|k| async move {
                    let first = batcher.load_one(k).await.ok().flatten();
                    let second = batcher.load_one(first.unwrap_or(-1) + 10_000).await;
                    if second.ok().flatten() == first.map(|f| (f + 10_000) * 2) {
                        answered_ref.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .collect();
            while level.next().await.is_some() {}
        })
        .await;
        assert_eq!(answered.load(Ordering::Relaxed), 2_500);
        // 5 000 distinct keys in the fewest statements `MAX_BATCH` allows (a batch still
        // gathering when the next level starts takes that level's first keys too).
        assert_eq!(*lock(&sizes), vec![MAX_BATCH; 5]);
    }
}
