//! The Query root as the schema runs it: every root field goes through the request's
//! cache (`cache::RequestCache`) when the gateway put one in the request's data.
//!
//! The cache serves root fields only, so it sits here rather than in an async-graphql
//! extension: a schema with any extension resolves every field of every response on a
//! slower path (a `ResolveInfo` with two registry lookups, and a boxed future per
//! extension, for each field and each list item), which was most of the executor's cost
//! of a response the cache does not answer (BENCHMARKS.md, session 14).
use super::schema::Query;
use crate::cache::RequestCache;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{ContainerType, resolve_container};
use async_graphql::{
    Context, ContextSelectionSet, ObjectType, OutputType, Positioned, ServerResult, Value,
};
use std::borrow::Cow;

/// `Query`, with the cache in front of its fields; to clients it is `Query` itself.
#[derive(Default)]
pub struct CachedQuery(Query);

impl ContainerType for CachedQuery {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        match ctx.data_opt::<RequestCache>() {
            Some(cache) => cache.resolve(ctx, self.0.resolve_field(ctx)).await,
            None => self.0.resolve_field(ctx).await,
        }
    }
}

impl OutputType for CachedQuery {
    fn type_name() -> Cow<'static, str> {
        Query::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Query::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container(ctx, self).await
    }
}

impl ObjectType for CachedQuery {}
