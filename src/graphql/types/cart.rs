use super::{Customer, Product, db_error, id};
use crate::cache::{CacheTags, Embeds, record_entity};
use crate::db::entities::{cart_items, products};
use crate::domain::{EntityId, Money};
use crate::error::AppError;
use crate::graphql::context::ContextExt;
use crate::services::cart::CartView;
use crate::services::tags;
use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::sync::OnceCell;

pub struct Cart(CartView, OnceCell<Vec<CartLine>>);

impl Cart {
    pub fn new(view: CartView) -> Self {
        record_entity(Self(view, OnceCell::new()))
    }

    /// The cart's lines with their products, loaded once per cart object even when
    /// `items`, `itemCount` and `total` are all selected.
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<&[CartLine]> {
        self.1
            .get_or_try_init(|| self.load_lines(ctx))
            .await
            .map(Vec::as_slice)
    }

    async fn load_lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CartLine>> {
        let loaders = ctx.loaders()?;
        let items = loaders
            .cart_items
            .load_one(self.0.customer_id.get())
            .await
            .map_err(db_error)?
            .unwrap_or_default();
        let lines = loaders
            .with_products(items, |item| item.product_id)
            .await
            .map_err(db_error)?;
        Ok(lines
            .into_iter()
            .map(|(item, product)| CartLine::new(item, product))
            .collect())
    }
}

#[Object]
impl Cart {
    /// Carts are one per customer: the id is the customer's.
    async fn id(&self) -> ID {
        id(self.0.customer_id.get())
    }
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Customer> {
        let customer = ctx
            .loaders()?
            .customers
            .load_one(self.0.customer_id.get())
            .await
            .map_err(db_error)?;
        customer
            .map(Customer::new)
            .ok_or_else(|| AppError::not_found("customer", self.0.customer_id).to_graphql())
    }
    async fn items(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CartLine>> {
        Ok(self.lines(ctx).await?.to_vec())
    }
    /// The sum of quantities.
    async fn item_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(self.lines(ctx).await?.iter().map(|l| l.item.quantity).sum())
    }
    async fn total(&self, ctx: &Context<'_>) -> async_graphql::Result<Decimal> {
        let total: Money = self
            .lines(ctx)
            .await?
            .iter()
            .map(CartLine::line_money)
            .sum();
        Ok(total.to_decimal())
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Set only in the answer to the anonymous `addToCart` that created this guest
    /// cart: the token to send back as the `X-Cart-Token` header for `cart`, the cart
    /// mutations, a guest `checkout` (with `email`) and `signIn`/`signUp` (which merge
    /// the guest cart into the customer's). It is shown once and expires
    /// `GUEST_CART_TTL` after the cart was last added to.
    async fn cart_token(&self) -> Option<&str> {
        self.0.new_token.as_ref().map(|t| t.as_str())
    }
}

impl CacheTags for Cart {
    /// The cart's lines. Its `itemCount` and `total` are built from lines and their
    /// products, which record those tags whether or not `items` is selected.
    fn cache_tags(&self) -> Embeds {
        Embeds::Tags(vec![tags::cart(self.0.customer_id)])
    }
}

#[derive(Clone)]
pub struct CartLine {
    item: cart_items::Model,
    product: products::Model,
}

impl CartLine {
    fn new(item: cart_items::Model, product: products::Model) -> Self {
        record_entity(Self { item, product })
    }

    fn line_money(&self) -> Money {
        Money::from_cents(self.product.price_cents).times(self.item.quantity)
    }
}

impl CacheTags for CartLine {
    /// A line's price and total are its product's, whether or not `product` is selected.
    fn cache_tags(&self) -> Embeds {
        Embeds::Tags(vec![tags::product(EntityId::from_db(self.product.id))])
    }
}

#[Object(name = "CartItem")]
impl CartLine {
    async fn product(&self) -> Product {
        Product::new(self.product.clone())
    }
    async fn quantity(&self) -> i32 {
        self.item.quantity
    }
    /// The product's current price.
    async fn unit_price(&self) -> Decimal {
        Money::from_cents(self.product.price_cents).to_decimal()
    }
    async fn line_total(&self) -> Decimal {
        self.line_money().to_decimal()
    }
}
