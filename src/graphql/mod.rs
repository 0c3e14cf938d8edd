//! The GraphQL API: schema, roots per domain, types, loaders, request context.
mod accounts;
mod admin;
pub mod apq;
pub mod batch;
mod cached_root;
mod catalog;
pub mod context;
mod documents;
#[cfg(test)]
mod field_policy;
mod gateway;
pub mod limits;
pub mod loaders;
mod measure;
mod mutation;
mod orders;
pub mod passes;
mod people;
pub mod schema;
pub mod selection_order;
pub mod socket_budget;
mod stats;
mod types;

pub use apq::ApqStore;
pub use context::{RequestContext, Services};
pub use gateway::Gateway;
pub use limits::OperationTrace;
pub use schema::{AppSchema, Limits, cache_declarations};
pub use socket_budget::SocketBudget;
