//! Customer and cart operations.
use super::context::ContextExt;
use super::mutation::finish;
use super::types::{
    Cart, Customer, CustomerConnection, customer_connection, parse_id, parse_opt_id,
};
use crate::cache::{FieldCache, FieldDeclarations, Scope};
use crate::domain::{Email, PersonName};
use crate::error::{AppResult, GqlResultExt};
use crate::services::{PageRequest, cart, customers};
use async_graphql::{Context, ID, InputObject, Object};

#[derive(Debug, InputObject)]
pub struct CreateCustomerInput {
    name: String,
    email: String,
}

#[derive(Default)]
pub struct PeopleQuery;

impl FieldDeclarations for PeopleQuery {
    const FIELDS: &'static [FieldCache] = &[
        FieldCache::never(
            "customer",
            "a per-caller read of one row, which embeds orders (never cached)",
        ),
        FieldCache::never("customers", "a staff list whose pages every sign-up shifts"),
        FieldCache::cached("cart", "cart", 1800, Scope::Private),
    ];
}

#[Object]
impl PeopleQuery {
    /// The caller themselves, or anyone for STAFF/ADMIN.
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        let id = parse_id("id", &id)?;
        let customer = customers::customer(ctx.db()?, ctx.actor()?, id)
            .await
            .gql()?;
        Ok(customer.map(Customer::new))
    }

    /// STAFF/ADMIN.
    #[graphql(complexity = "super::limits::weighted(first, 20, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<CustomerConnection> {
        let page = PageRequest::parse(first.unwrap_or(20), after.as_deref()).gql()?;
        let rows = customers::customers(ctx.db()?, ctx.actor()?, &page)
            .await
            .gql()?;
        Ok(customer_connection(rows))
    }

    /// Omit `customerId` for the caller's own cart.
    async fn cart(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
    ) -> async_graphql::Result<Cart> {
        let customer = parse_opt_id("customerId", customer_id.as_ref())?;
        let view = cart::cart(ctx.db()?, ctx.actor()?, customer).await.gql()?;
        Ok(Cart::new(view))
    }
}

#[derive(Default)]
pub struct PeopleMutation;

#[Object]
impl PeopleMutation {
    /// Sign-up: open to anonymous callers.
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> async_graphql::Result<Customer> {
        let parse = || -> AppResult<(PersonName, Email)> {
            Ok((PersonName::parse(&input.name)?, Email::parse(&input.email)?))
        };
        let (name, email) = parse().gql()?;
        let changed = customers::create_customer(ctx.db()?, ctx.actor()?, name, email)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Customer::new)
    }

    /// Adds to the caller's cart. Anonymous, without `X-Cart-Token`: creates a guest
    /// cart and answers its `cartToken` (at most `GUEST_CARTS_PER_IP_HOUR` new guest
    /// carts per client IP, then `RATE_LIMITED`).
    async fn add_to_cart(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        #[graphql(default = 1)] quantity: i32,
        customer_id: Option<ID>,
    ) -> async_graphql::Result<Cart> {
        let product = parse_id("productId", &product_id)?;
        let customer = parse_opt_id("customerId", customer_id.as_ref())?;
        let quantity = crate::domain::Quantity::parse("quantity", quantity)
            .map_err(Into::into)
            .gql()?;
        let request = ctx.request()?;
        let caller = (
            &request.actor,
            ctx.accounts()?.guest_carts(),
            request.client,
        );
        let changed = cart::add_to_cart(ctx.db()?, caller, customer, product, quantity)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Cart::new)
    }

    /// Sets a line's quantity; 0 removes it.
    async fn update_cart_item(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        quantity: i32,
        customer_id: Option<ID>,
    ) -> async_graphql::Result<Cart> {
        let product = parse_id("productId", &product_id)?;
        let customer = parse_opt_id("customerId", customer_id.as_ref())?;
        let changed = cart::update_cart_item(ctx.db()?, ctx.actor()?, customer, product, quantity)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Cart::new)
    }

    async fn remove_from_cart(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        customer_id: Option<ID>,
    ) -> async_graphql::Result<Cart> {
        let product = parse_id("productId", &product_id)?;
        let customer = parse_opt_id("customerId", customer_id.as_ref())?;
        let changed = cart::remove_from_cart(ctx.db()?, ctx.actor()?, customer, product)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Cart::new)
    }

    async fn clear_cart(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
    ) -> async_graphql::Result<Cart> {
        let customer = parse_opt_id("customerId", customer_id.as_ref())?;
        let changed = cart::clear_cart(ctx.db()?, ctx.actor()?, customer)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Cart::new)
    }
}
