//! Services hold the shop's rules and own their transactions. They take an `Actor`
//! (who is asking, in which tenant), return domain values, and for every change the
//! cache tags it touched, so the caller can invalidate exactly that. They know nothing
//! of GraphQL or of the cache's keys.
//!
//! Rules kept here: every query filters by the actor's tenant; a customer reads and
//! edits only their own cart; stock never goes negative; bad input changes nothing.
pub mod accounts;
pub mod cart;
pub mod catalog;
pub mod customers;
pub mod idempotency;
pub mod orders;
mod pagination;
pub mod seed;
pub mod stats;
pub mod tags;

pub use pagination::{Cursor, Page, PageRequest};

use crate::domain::TenantId;
use crate::error::AppResult;
use sea_orm::DatabaseTransaction;

/// A mutation's result, the cache tags its commit made stale, and the outbox row that
/// records them.
#[derive(Debug)]
pub struct Changed<T> {
    pub value: T,
    pub tags: Vec<String>,
    pub recorded: Option<i64>,
}

impl<T> Changed<T> {
    /// Commits a change: the tags it makes stale are recorded in the cache outbox in
    /// the same transaction, so that nothing after the commit (a killed process, Redis
    /// down) can lose their invalidation.
    pub async fn commit(
        txn: DatabaseTransaction,
        tenant: &TenantId,
        value: T,
        tags: Vec<String>,
    ) -> AppResult<Self> {
        let recorded = if tags.is_empty() {
            None
        } else {
            Some(crate::cache::outbox::record(&txn, tenant, &tags).await?)
        };
        txn.commit().await?;
        Ok(Self {
            value,
            tags,
            recorded,
        })
    }

    /// A change already committed by one statement that also recorded its tags as
    /// outbox row `recorded` (see `cache::outbox::record_from`).
    pub fn committed(value: T, tags: Vec<String>, recorded: i64) -> Self {
        Self {
            value,
            tags,
            recorded: Some(recorded),
        }
    }
}
