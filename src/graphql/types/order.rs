use super::{Customer, Product, db_error, id};
use crate::cache::{CacheTags, Embeds, record_entity};
use crate::checkout::model::{
    OrderStatus, PaymentMethod, SagaKind, SagaStatus, SagaStepName, StepStatus,
};
use crate::db::entities::{order_items, orders, saga_steps, sagas};
use crate::domain::Money;
use crate::error::AppError;
use crate::graphql::context::ContextExt;
use crate::services::Page;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

fn corrupt(what: &str) -> async_graphql::Error {
    AppError::Internal(anyhow::anyhow!("unreadable stored {what}")).to_graphql()
}

pub struct Order(orders::Model);

impl Order {
    pub fn new(model: orders::Model) -> Self {
        record_entity(Self(model))
    }
}

impl CacheTags for Order {
    /// An order's status and its saga move at every step of a checkout worker, which
    /// invalidates no tag for them: a cached value never embeds an order.
    fn cache_tags(&self) -> Embeds {
        Embeds::Uncacheable
    }
}

#[Object]
impl Order {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Customer> {
        let found = ctx
            .loaders()?
            .customers
            .load_one(self.0.customer_id)
            .await
            .map_err(db_error)?;
        found
            .map(Customer::new)
            .ok_or_else(|| AppError::not_found("customer", self.0.customer_id).to_graphql())
    }
    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        OrderStatus::parse(&self.0.status).ok_or_else(|| corrupt("order status"))
    }
    async fn items(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLine>> {
        let loaders = ctx.loaders()?;
        let items = loaders
            .order_items
            .load_one(self.0.id)
            .await
            .map_err(db_error)?
            .unwrap_or_default();
        let lines = loaders
            .with_products(items, |item| item.product_id)
            .await
            .map_err(db_error)?;
        Ok(lines
            .into_iter()
            .map(|(item, product)| OrderLine { item, product })
            .collect())
    }
    async fn total(&self) -> Decimal {
        Money::from_cents(self.0.total_cents).to_decimal()
    }
    async fn payment_method(&self) -> async_graphql::Result<PaymentMethod> {
        PaymentMethod::parse(&self.0.payment_method).ok_or_else(|| corrupt("payment method"))
    }
    async fn saga(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Saga>> {
        let saga = ctx
            .loaders()?
            .sagas
            .load_one(self.0.saga_id)
            .await
            .map_err(db_error)?;
        Ok(saga.map(Saga::new))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct OrderLine {
    item: order_items::Model,
    product: crate::db::entities::products::Model,
}

#[Object(name = "OrderItem")]
impl OrderLine {
    async fn product(&self) -> Product {
        Product::new(self.product.clone())
    }
    async fn quantity(&self) -> i32 {
        self.item.quantity
    }
    /// The price when the order was placed.
    async fn unit_price(&self) -> Decimal {
        Money::from_cents(self.item.unit_price_cents).to_decimal()
    }
    async fn line_total(&self) -> Decimal {
        Money::from_cents(self.item.unit_price_cents)
            .times(self.item.quantity)
            .to_decimal()
    }
}

pub struct Saga(sagas::Model);

impl Saga {
    pub fn new(model: sagas::Model) -> Self {
        record_entity(Self(model))
    }

    pub fn status_value(&self) -> Option<SagaStatus> {
        SagaStatus::parse(&self.0.status)
    }
}

impl CacheTags for Saga {
    /// A saga's status and steps change at every step of a checkout worker, which
    /// invalidates no tag for them: a cached value never embeds a saga.
    fn cache_tags(&self) -> Embeds {
        Embeds::Uncacheable
    }
}

#[Object]
impl Saga {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn kind(&self) -> async_graphql::Result<SagaKind> {
        SagaKind::parse(&self.0.kind).ok_or_else(|| corrupt("saga kind"))
    }
    async fn status(&self) -> async_graphql::Result<SagaStatus> {
        self.status_value().ok_or_else(|| corrupt("saga status"))
    }
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SagaStep>> {
        let steps = ctx
            .loaders()?
            .saga_steps
            .load_one(self.0.id)
            .await
            .map_err(db_error)?;
        Ok(steps
            .unwrap_or_default()
            .into_iter()
            .map(SagaStep)
            .collect())
    }
    /// The order this saga created (checkout) or cancelled (cancellation).
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        let Some(order_id) = self.0.order_id else {
            return Ok(None);
        };
        let order = ctx
            .loaders()?
            .orders
            .load_one(order_id)
            .await
            .map_err(db_error)?;
        Ok(order.map(Order::new))
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

pub struct SagaStep(saga_steps::Model);

#[Object]
impl SagaStep {
    async fn name(&self) -> async_graphql::Result<SagaStepName> {
        SagaStepName::parse(&self.0.name).ok_or_else(|| corrupt("step name"))
    }
    async fn status(&self) -> async_graphql::Result<StepStatus> {
        StepStatus::parse(&self.0.status).ok_or_else(|| corrupt("step status"))
    }
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

pub struct OrderCount {
    pub customer: Option<crate::domain::EntityId>,
    pub status: Option<OrderStatus>,
}

#[Object]
impl OrderCount {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        use crate::error::GqlResultExt;
        let count = crate::services::orders::count_orders(
            ctx.db()?,
            ctx.actor()?,
            self.customer,
            self.status,
        )
        .await
        .gql()?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

pub type OrderConnection = Connection<String, Order, OrderCount>;
pub type SagaConnection = Connection<String, Saga>;

pub fn order_connection(page: Page<orders::Model>, count: OrderCount) -> OrderConnection {
    let mut connection =
        Connection::with_additional_fields(page.has_previous_page, page.has_next_page, count);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|(cursor, row)| Edge::new(cursor.encode(), Order::new(row))),
    );
    record_entity(connection)
}

impl CacheTags for OrderConnection {
    /// Which orders a customer has changes when a checkout creates one, which
    /// invalidates no tag for it (an empty page embeds no `Order` to say so).
    fn cache_tags(&self) -> Embeds {
        Embeds::Uncacheable
    }
}

pub fn saga_connection(page: Page<sagas::Model>) -> SagaConnection {
    let mut connection = Connection::new(page.has_previous_page, page.has_next_page);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|(cursor, row)| Edge::new(cursor.encode(), Saga::new(row))),
    );
    record_entity(connection)
}

impl CacheTags for SagaConnection {
    /// Sagas are created and move without invalidating any tag.
    fn cache_tags(&self) -> Embeds {
        Embeds::Uncacheable
    }
}
