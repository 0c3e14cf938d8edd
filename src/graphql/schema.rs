//! Builds the schema: roots merged per domain, limits, extensions.
use super::admin::{AdminMutation, AdminQuery};
use super::catalog::{CatalogMutation, CatalogQuery};
use super::context::Services;
use super::orders::{OrdersMutation, OrdersQuery, Subscription};
use super::people::{PeopleMutation, PeopleQuery};
use super::stats::StatsQuery;
use async_graphql::{MergedObject, Schema, SchemaBuilder};

#[derive(MergedObject, Default)]
pub struct Query(
    CatalogQuery,
    PeopleQuery,
    OrdersQuery,
    StatsQuery,
    AdminQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    CatalogMutation,
    PeopleMutation,
    OrdersMutation,
    AdminMutation,
);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits that reject abusive documents before any resolver runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 12,
            complexity: 5_000,
            introspection: true,
        }
    }
}

fn builder(limits: Limits) -> SchemaBuilder<Query, Mutation, Subscription> {
    let builder = Schema::build(Query::default(), Mutation::default(), Subscription)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity);
    if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    }
}

pub fn build(services: Services, limits: Limits) -> AppSchema {
    let cache = services.cache.clone();
    builder(limits)
        .extension(crate::cache::CacheExtension::new(cache))
        .data(services)
        .finish()
}

/// The SDL clients see, as written to `schema.graphql`.
pub fn sdl() -> String {
    builder(Limits::default()).finish().sdl()
}
