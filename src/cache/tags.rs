//! Which entities a cached value embeds. While a cacheable field resolves, the types it
//! builds record their tags here (a cart records `cart:{c}` and each of its products),
//! so the entry is dropped when any of them changes.
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static COLLECTOR: TagCollector;
}

#[derive(Clone, Default)]
pub struct TagCollector {
    tags: Arc<Mutex<BTreeSet<String>>>,
    /// Set when a resolver inside the field failed: a partial value is never cached.
    failed: Arc<AtomicBool>,
}

impl TagCollector {
    pub fn into_tags(self) -> Vec<String> {
        self.tags
            .lock()
            .map(|tags| tags.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

pub async fn collecting<F: Future>(collector: TagCollector, fut: F) -> F::Output {
    COLLECTOR.scope(collector, fut).await
}

/// Records that the value being cached (if any) depends on `tag`.
pub fn record_tag(tag: impl FnOnce() -> String) {
    let _ = COLLECTOR.try_with(|collector| {
        if let Ok(mut tags) = collector.tags.lock() {
            tags.insert(tag());
        }
    });
}

/// Records that a resolver failed while the value being cached (if any) was built.
pub fn record_failure() {
    let _ = COLLECTOR.try_with(|collector| collector.failed.store(true, Ordering::Relaxed));
}
