//! The GraphQL API: schema, roots per domain, types, loaders, request context.
mod admin;
mod catalog;
pub mod context;
pub mod loaders;
mod mutation;
mod orders;
mod people;
pub mod schema;
mod stats;
mod types;

pub use context::{RequestContext, Services};
pub use schema::{AppSchema, Limits};
