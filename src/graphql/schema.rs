//! Builds the schema: roots merged per domain, limits, extensions.
use super::accounts::AccountsMutation;
use super::admin::{AdminMutation, AdminQuery};
use super::apq::ApqStore;
pub use super::cached_root::CachedQuery;
use super::catalog::{CatalogMutation, CatalogQuery};
use super::context::Services;
use super::gateway::Gateway;
pub use super::limits::Limits;
use super::limits::QueryLimits;
use super::orders::{OrdersMutation, OrdersQuery, Subscription};
use super::people::{PeopleMutation, PeopleQuery};
use super::stats::StatsQuery;
use crate::cache::{FieldCache, FieldDeclarations};
use async_graphql::{MergedObject, Schema, SchemaBuilder};

/// The Query root, merged from one object per domain. Each part must declare the cache
/// decision of its fields (`FieldDeclarations`), or this does not compile.
macro_rules! query_root {
    ($($part:ident),+ $(,)?) => {
        #[derive(MergedObject, Default)]
        pub struct Query($($part),+);

        /// Every Query field's cache decision, in schema order.
        pub fn cache_declarations() -> impl Iterator<Item = &'static FieldCache> {
            [$(<$part as FieldDeclarations>::FIELDS),+].into_iter().flatten()
        }
    };
}

query_root!(
    CatalogQuery,
    PeopleQuery,
    OrdersQuery,
    StatsQuery,
    AdminQuery
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    CatalogMutation,
    PeopleMutation,
    OrdersMutation,
    AccountsMutation,
    AdminMutation,
);

pub type AppSchema = Schema<CachedQuery, Mutation, Subscription>;

pub(super) fn builder(limits: Limits) -> SchemaBuilder<CachedQuery, Mutation, Subscription> {
    let mut builder = Schema::build(CachedQuery::default(), Mutation::default(), Subscription)
        .limit_recursive_depth(limits.nesting());
    if limits.enabled {
        builder = builder
            .limit_depth(limits.depth)
            .limit_complexity(limits.complexity);
    }
    if limits.introspection {
        builder
    } else {
        // "Did you mean …" would hand out the field names introspection hides.
        builder.disable_introspection().disable_suggestions()
    }
}

/// The schema behind its gateway (APQ, limits, response order, the resolver cache).
/// No extension unless traces are on: then async-graphql's spans of parsing,
/// validation and every resolver that runs (a field the cache answers runs none).
pub fn build(services: Services, limits: Limits, persisted: ApqStore) -> Gateway {
    let cache = services.cache.clone();
    let mut builder = builder(limits);
    if crate::traces::enabled() {
        builder = builder.extension(async_graphql::extensions::Tracing);
    }
    let schema = builder.data(services).finish();
    Gateway::new(schema, persisted, QueryLimits::new(limits), cache)
}

/// The SDL clients see, as written to `schema.graphql`.
pub fn sdl() -> String {
    builder(Limits::default()).finish().sdl()
}
