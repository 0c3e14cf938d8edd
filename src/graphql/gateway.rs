//! The gateway: what every operation passes through around async-graphql's execution,
//! over HTTP and WebSocket alike. In order: persisted queries turn a hash into a
//! document (`apq`), the limits measure the document, refuse what is abusive and learn
//! the response order (`limits`), and the cache learns the document for the Query root
//! (`cache::RequestCache`, used by `cached_root`). After execution the limit errors
//! async-graphql reports get their code and the response is put in selection order.
//!
//! None of this is an async-graphql extension on purpose: a schema with one extension
//! resolves every field on a slower path (see `cached_root`), and all of it but the
//! cache acts on the whole operation, never on a field.
use super::apq::{self, ApqStore};
use super::limits::{OperationLimits, QueryLimits, tag_limit_error};
use super::orders::Subscription;
use super::schema::{AppSchema, CachedQuery, Mutation};
use super::socket_budget::SocketBudget;
use crate::cache::{Cache, RequestCache};
use async_graphql::registry::Registry;
use async_graphql::{
    Data, Executor, OutputType, Request, Response, ServerResult, SubscriptionType,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::any::TypeId;
use std::sync::Arc;

/// The schema behind its gateway; what the HTTP and WebSocket handlers execute. Cheap to
/// clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    schema: AppSchema,
    persisted: ApqStore,
    limits: QueryLimits,
    cache: Cache,
    /// The schema's types, for the response order (async-graphql keeps its own private).
    registry: Registry,
}

impl Gateway {
    pub fn new(schema: AppSchema, persisted: ApqStore, limits: QueryLimits, cache: Cache) -> Self {
        Self(Arc::new(Inner {
            schema,
            persisted,
            limits,
            cache,
            registry: registry(),
        }))
    }

    /// Expands, measures and learns the request before async-graphql runs it; on error
    /// the operation is refused before anything of it runs.
    async fn admit(
        &self,
        limits: &OperationLimits,
        request: Request,
        socket: Option<&SocketBudget>,
    ) -> ServerResult<Request> {
        let request = apq::expand(&self.0.persisted, request).await?;
        let mut request = limits.prepare(socket, request, &self.0.registry)?;
        // Name and variables out of the request while its document is borrowed
        // (`parsed_query` takes it mutably), instead of copies per request.
        let name = request.operation_name.take();
        let variables = std::mem::take(&mut request.variables);
        let cache = RequestCache::new(
            self.0.cache.clone(),
            request.parsed_query()?,
            name.as_deref(),
            &variables,
        );
        request.operation_name = name;
        request.variables = variables;
        Ok(request.data(cache))
    }
}

/// What every response leaves the gateway with: async-graphql's own limit errors coded,
/// fields in selection order.
fn finish(limits: &OperationLimits, mut response: Response) -> Response {
    response.errors = std::mem::take(&mut response.errors)
        .into_iter()
        .map(tag_limit_error)
        .collect();
    limits.order(&mut response);
    response
}

impl Executor for Gateway {
    async fn execute(&self, request: Request) -> Response {
        let limits = self.0.limits.per_operation();
        let response = match self.admit(&limits, request, None).await {
            Ok(request) => self.0.schema.execute(request).await,
            Err(err) => Response::from_errors(vec![err]),
        };
        finish(&limits, response)
    }

    /// An operation on a WebSocket: a subscription's events, or a query's one answer.
    /// Its limits live as long as the stream, holding the socket's subscription slot.
    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let gateway = self.clone();
        async_stream::stream! {
            let limits = gateway.0.limits.per_operation();
            let socket = session_data
                .as_ref()
                .and_then(|data| data.get(&TypeId::of::<SocketBudget>()))
                .and_then(|budget| budget.downcast_ref::<SocketBudget>());
            match gateway.admit(&limits, request, socket).await {
                Ok(request) => {
                    let mut events = gateway
                        .0
                        .schema
                        .execute_stream_with_session_data(request, session_data.unwrap_or_default());
                    while let Some(response) = events.next().await {
                        yield finish(&limits, response);
                    }
                }
                Err(err) => yield finish(&limits, Response::from_errors(vec![err])),
            }
        }
        .boxed()
    }
}

/// The types of the schema, as async-graphql registers them for its own roots.
fn registry() -> Registry {
    let mut registry = Registry {
        query_type: CachedQuery::type_name().into_owned(),
        mutation_type: Some(Mutation::type_name().into_owned()),
        subscription_type: Some(<Subscription as SubscriptionType>::type_name().into_owned()),
        ..Registry::default()
    };
    CachedQuery::create_type_info(&mut registry);
    Mutation::create_type_info(&mut registry);
    <Subscription as SubscriptionType>::create_type_info(&mut registry);
    registry
}
