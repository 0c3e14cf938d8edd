//! Which entities a cached value embeds. Each GraphQL type declares its tags with the
//! type (`impl CacheTags`); while a cacheable field resolves, the constructors of the
//! values it builds record them here (a cart records `cart:{c}`, each line its product),
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
    /// Set when a resolver inside the field failed (a partial value) or the value embeds
    /// a type declared `Embeds::Uncacheable`: such a value is never stored.
    unstorable: Arc<AtomicBool>,
}

impl TagCollector {
    pub fn into_tags(self) -> Vec<String> {
        self.tags
            .lock()
            .map(|tags| tags.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn unstorable(&self) -> bool {
        self.unstorable.load(Ordering::Relaxed)
    }
}

pub async fn collecting<F: Future>(collector: TagCollector, fut: F) -> F::Output {
    COLLECTOR.scope(collector, fut).await
}

/// Records that a resolver failed while the value being cached (if any) was built.
pub fn record_failure() {
    let _ = COLLECTOR.try_with(|collector| collector.unstorable.store(true, Ordering::Relaxed));
}

/// What a value of a GraphQL type makes a cached entry depend on.
pub enum Embeds {
    /// The entry is dropped when any of these tags is invalidated.
    Tags(Vec<String>),
    /// Nothing invalidates what the type shows, so an entry embedding it is never stored.
    Uncacheable,
}

/// A GraphQL type's cache tags, declared with the type; its constructor passes each
/// value through `record_entity`. The field-policy test fails when a type with an `id`
/// reachable from a cached field has no declaration.
pub trait CacheTags {
    fn cache_tags(&self) -> Embeds;
}

/// Records what `value` embeds into the value being cached (if any), and returns it.
pub fn record_entity<T: CacheTags>(value: T) -> T {
    let _ = COLLECTOR.try_with(|collector| match value.cache_tags() {
        Embeds::Tags(tags) => {
            if let Ok(mut recorded) = collector.tags.lock() {
                recorded.extend(tags);
            }
        }
        Embeds::Uncacheable => collector.unstorable.store(true, Ordering::Relaxed),
    });
    value
}
