use super::{Cart, id};
use crate::cache::{CacheTags, Embeds, record_entity};
use crate::db::entities::customers;
use crate::domain::EntityId;
use crate::error::GqlResultExt;
use crate::graphql::context::ContextExt;
use crate::services::cart::CartView;
use crate::services::customers as customer_service;
use crate::services::{Page, tags};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

/// Reachable only through resolvers that already checked the caller may see it.
pub struct Customer(customers::Model);

impl Customer {
    pub fn new(model: customers::Model) -> Self {
        record_entity(Self(model))
    }
}

impl CacheTags for Customer {
    /// The customer's own fields; their orders and cart declare their own tags.
    fn cache_tags(&self) -> Embeds {
        Embeds::Tags(vec![tags::customer(EntityId::from_db(self.0.id))])
    }
}

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    #[graphql(complexity = "crate::graphql::limits::weighted(first, 20, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<super::OrderConnection> {
        let customer = Some(EntityId::from_db(self.0.id));
        let page =
            crate::services::PageRequest::parse(first.unwrap_or(20), after.as_deref()).gql()?;
        let rows = crate::services::orders::orders(ctx.db()?, ctx.actor()?, customer, None, &page)
            .await
            .gql()?;
        Ok(super::order_connection(
            rows,
            super::OrderCount {
                customer,
                status: None,
            },
        ))
    }

    /// The customer's cart (empty when they never added anything).
    async fn cart(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Cart>> {
        let stored = ctx
            .loaders()?
            .carts
            .load_one(self.0.id)
            .await
            .map_err(super::db_error)?;
        Ok(Some(Cart::new(CartView {
            customer_id: EntityId::from_db(self.0.id),
            updated_at: stored.map_or(self.0.created_at, |cart| cart.updated_at),
            new_token: None,
        })))
    }
}

pub struct CustomerCount;

#[Object]
impl CustomerCount {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let count = customer_service::count_customers(ctx.db()?, ctx.actor()?)
            .await
            .gql()?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

pub type CustomerConnection = Connection<String, Customer, CustomerCount>;

pub fn customer_connection(page: Page<customers::Model>) -> CustomerConnection {
    let mut connection = Connection::with_additional_fields(
        page.has_previous_page,
        page.has_next_page,
        CustomerCount,
    );
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|(cursor, row)| Edge::new(cursor.encode(), Customer::new(row))),
    );
    connection
}
