//! The schema's one async-graphql extension. async-graphql runs every extension's
//! `resolve` hook around every field it resolves, a boxed future and two registry lookups
//! per extension per field, so the request-level concerns share this one instead of one
//! extension each. Each keeps its logic in its own module; this one calls them in order:
//! persisted queries (`apq`), then the limits and response order (`limits`), then the
//! resolver cache (`cache::extension`).
use super::apq::{self, ApqStore};
use super::limits::{OperationLimits, QueryLimits, tag_limit_error};
use crate::cache::{CacheExtension, RequestCache};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextResolve, NextSubscribe, NextValidation, ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use futures_util::stream::BoxStream;
use std::sync::Arc;

pub struct Gateway {
    persisted: ApqStore,
    limits: QueryLimits,
    cache: CacheExtension,
}

impl Gateway {
    pub fn new(persisted: ApqStore, limits: QueryLimits, cache: CacheExtension) -> Self {
        Self {
            persisted,
            limits,
            cache,
        }
    }
}

impl ExtensionFactory for Gateway {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation {
            persisted: self.persisted.clone(),
            limits: self.limits.per_operation(),
            cache: self.cache.per_request(),
        })
    }
}

/// One operation's passage through the gateway; it lives as long as the operation's
/// response stream.
struct Operation {
    persisted: ApqStore,
    limits: OperationLimits,
    cache: RequestCache,
}

#[async_trait::async_trait]
impl Extension for Operation {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let request = apq::expand(&self.persisted, request).await?;
        let request = self.limits.prepare(ctx, request)?;
        self.cache.prepare(&request);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next
            .run(ctx, query, variables)
            .await
            .map_err(tag_limit_error)?;
        self.cache.parsed(&doc, variables);
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| errors.into_iter().map(tag_limit_error).collect())
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        self.limits.order(&mut response);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, self.limits.order_events(stream))
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // This hook runs for every field of a response, and async-graphql boxes what it
        // returns. The cache's future is large and needed for a few root fields only, so
        // it is boxed apart: the future of every other field stays small to allocate
        // and move.
        if !RequestCache::may_serve(&info) {
            return next.run(ctx, info).await;
        }
        Box::pin(self.cache.resolve(ctx, info, next)).await
    }
}
