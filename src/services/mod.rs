//! Services hold the shop's rules and own their transactions. They take an `Actor`
//! (who is asking, in which tenant), return domain values, and for every change the
//! cache tags it touched, so the caller can invalidate exactly that. They know nothing
//! of GraphQL or of the cache's keys.
//!
//! Rules kept here: every query filters by the actor's tenant; a customer reads and
//! edits only their own cart; stock never goes negative; bad input changes nothing.
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

/// A mutation's result and the cache tags its commit made stale.
#[derive(Debug)]
pub struct Changed<T> {
    pub value: T,
    pub tags: Vec<String>,
}

impl<T> Changed<T> {
    pub fn new(value: T, tags: Vec<String>) -> Self {
        Self { value, tags }
    }
}
