//! Checkout, orders, sagas and the live `sagaUpdates` subscription.
use super::context::{ContextExt, Services};
use super::types::{
    Order, OrderConnection, OrderCount, Saga, SagaConnection, order_connection, parse_id,
    parse_opt_id, saga_connection,
};
use crate::cache::{FieldCache, FieldDeclarations};
use crate::checkout::accept::{self, Request};
use crate::checkout::events;
use crate::checkout::model::{OrderStatus, PaymentMethod, SagaStatus};
use crate::checkout::queue::{self, QueueStats};
use crate::domain::{Email, EntityId, Quantity};
use crate::error::{AppError, AppResult, GqlResultExt};
use crate::services::{PageRequest, orders};
use async_graphql::{Context, ID, InputObject, Object, Subscription};
use futures_util::Stream;

#[derive(Debug, InputObject)]
pub struct CheckoutInput {
    customer_id: Option<ID>,
    payment_method: PaymentMethod,
    payment_token: Option<String>,
    /// A repeated key returns the first saga instead of charging twice.
    idempotency_key: Option<String>,
    /// A guest's e-mail: required when checking out a guest cart (sent with
    /// `X-Cart-Token`), refused for signed-in customers. Signing up later with it
    /// makes the guest's orders the new customer's.
    email: Option<String>,
}

#[derive(Debug, InputObject)]
pub struct OrderItemInput {
    product_id: ID,
    quantity: i32,
}

#[derive(Debug, InputObject)]
pub struct PlaceOrderInput {
    customer_id: Option<ID>,
    items: Vec<OrderItemInput>,
    payment_method: PaymentMethod,
    payment_token: Option<String>,
    idempotency_key: Option<String>,
}

fn services<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Services> {
    ctx.data::<Services>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("services missing")).to_graphql())
}

#[derive(Default)]
pub struct OrdersQuery;

/// Orders and sagas move at every step of a checkout worker, which invalidates no tag
/// for them; a caller polling a saga must see each step.
const MOVES_WITH_CHECKOUT: &str =
    "orders and sagas change at every checkout step, which invalidates no tag for them";

impl FieldDeclarations for OrdersQuery {
    const FIELDS: &'static [FieldCache] = &[
        FieldCache::never("order", MOVES_WITH_CHECKOUT),
        FieldCache::never("orders", MOVES_WITH_CHECKOUT),
        FieldCache::never("saga", MOVES_WITH_CHECKOUT),
        FieldCache::never("sagas", MOVES_WITH_CHECKOUT),
        FieldCache::never("queueStats", "operational figures, read live"),
    ];
}

#[Object]
impl OrdersQuery {
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let id = parse_id("id", &id)?;
        Ok(orders::order(ctx.db()?, ctx.actor()?, id)
            .await
            .gql()?
            .map(Order::new))
    }

    /// The caller's orders; STAFF/ADMIN see all and may filter by customer.
    #[graphql(complexity = "super::limits::weighted(first, 20, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        status: Option<OrderStatus>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        let customer = parse_opt_id("customerId", customer_id.as_ref())?;
        let page = PageRequest::parse(first.unwrap_or(20), after.as_deref()).gql()?;
        let rows = orders::orders(ctx.db()?, ctx.actor()?, customer, status, &page)
            .await
            .gql()?;
        Ok(order_connection(rows, OrderCount { customer, status }))
    }

    async fn saga(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Saga>> {
        let id = parse_id("id", &id)?;
        Ok(orders::saga(ctx.db()?, ctx.actor()?, id)
            .await
            .gql()?
            .map(Saga::new))
    }

    /// STAFF/ADMIN.
    #[graphql(complexity = "super::limits::weighted(first, 20, child_complexity)")]
    async fn sagas(
        &self,
        ctx: &Context<'_>,
        status: Option<SagaStatus>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<SagaConnection> {
        let page = PageRequest::parse(first.unwrap_or(20), after.as_deref()).gql()?;
        let rows = orders::sagas(ctx.db()?, ctx.actor()?, status, &page)
            .await
            .gql()?;
        Ok(saga_connection(rows))
    }

    /// ADMIN: the checkout queue of this tenant.
    async fn queue_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<QueueStats> {
        let actor = ctx.actor()?;
        actor.require_admin().gql()?;
        queue::stats(ctx.db()?, actor.tenant.as_str())
            .await
            .map_err(|e| AppError::from(e).to_graphql())
    }
}

#[derive(Default)]
pub struct OrdersMutation;

#[Object]
impl OrdersMutation {
    /// Checks out the cart: returns the saga at once (PENDING); workers do the rest.
    async fn checkout(
        &self,
        ctx: &Context<'_>,
        input: CheckoutInput,
    ) -> async_graphql::Result<Saga> {
        let guest_email = input
            .email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(AppError::from)
            .gql()?;
        let request = Request {
            customer: parse_opt_id("customerId", input.customer_id.as_ref())?,
            payment_method: input.payment_method,
            payment_token: input.payment_token,
            idempotency_key: input.idempotency_key,
            guest_email,
        };
        let engine = &services(ctx)?.checkout;
        Ok(Saga::new(
            accept::checkout(engine, ctx.actor()?, request)
                .await
                .gql()?,
        ))
    }

    /// Orders explicit items through the same saga.
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: PlaceOrderInput,
    ) -> async_graphql::Result<Saga> {
        let parse = |items: Vec<OrderItemInput>| -> AppResult<Vec<(EntityId, Quantity)>> {
            items
                .into_iter()
                .map(|item| {
                    Ok((
                        EntityId::parse("items.productId", item.product_id.as_str())?,
                        Quantity::parse("items.quantity", item.quantity)?,
                    ))
                })
                .collect()
        };
        let items = parse(input.items).gql()?;
        let request = Request {
            customer: parse_opt_id("customerId", input.customer_id.as_ref())?,
            payment_method: input.payment_method,
            payment_token: input.payment_token,
            idempotency_key: input.idempotency_key,
            guest_email: None,
        };
        let engine = &services(ctx)?.checkout;
        Ok(Saga::new(
            accept::place_order(engine, ctx.actor()?, request, items)
                .await
                .gql()?,
        ))
    }

    /// Refunds and restocks a completed order (a CANCEL_ORDER saga).
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Saga> {
        let id = parse_id("id", &id)?;
        let engine = &services(ctx)?.checkout;
        Ok(Saga::new(
            accept::cancel_order(engine, ctx.actor()?, id, idempotency_key)
                .await
                .gql()?,
        ))
    }
}

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The saga's current state at once, then every transition; ends when terminal.
    async fn saga_updates(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = Saga> + use<>> {
        let id = parse_id("id", &id)?;
        let actor = ctx.actor()?.clone();
        let services = services(ctx)?.clone();
        // Subscribe before the first read, so no transition falls between the two.
        let mut events = services.checkout.events.subscribe();
        let first = orders::saga(&services.db, &actor, id)
            .await
            .gql()?
            .ok_or_else(|| AppError::not_found("saga", id).to_graphql())?;
        Ok(async_stream::stream! {
            let mut last = first;
            let terminal = |s: &crate::db::entities::sagas::Model| SagaStatus::parse(&s.status).is_some_and(SagaStatus::is_terminal);
            yield Saga::new(last.clone());
            let mut last_steps = step_signature(&services.db, id).await;
            // Pushed, not polled: the saga is read again only when an event names it,
            // or when events may have been missed (a resync, or this receiver lagged).
            while !terminal(&last) {
                match events.recv().await {
                    Ok(changed) if !events::is_resync(&changed) && !changed.contains(&id.get()) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    _ => {}
                }
                let Ok(Some(current)) = orders::saga(&services.db, &actor, id).await else { break };
                let steps = step_signature(&services.db, id).await;
                if current.status != last.status || steps != last_steps {
                    last = current;
                    last_steps = steps;
                    yield Saga::new(last.clone());
                }
            }
        })
    }
}

/// The steps' statuses, to tell a real transition from a repeated event.
async fn step_signature(
    db: &sea_orm::DatabaseConnection,
    saga: EntityId,
) -> Vec<(String, String, i32)> {
    orders::steps_by_sagas(db, "", &[saga.get()])
        .await
        .map(|steps| {
            steps
                .into_iter()
                .map(|s| (s.name, s.status, s.attempts))
                .collect()
        })
        .unwrap_or_default()
}
