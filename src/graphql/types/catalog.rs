use super::{db_error, id};
use crate::cache::{CacheTags, Embeds, record_entity};
use crate::db::entities::{categories, products};
use crate::domain::{EntityId, Money};
use crate::error::GqlResultExt;
use crate::graphql::context::ContextExt;
use crate::services::{Page, PageRequest, catalog, tags};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

pub struct Product(products::Model);

impl Product {
    /// Wraps a product, recording that a value being cached embeds it.
    pub fn new(model: products::Model) -> Self {
        record_entity(Self(model))
    }
}

impl CacheTags for Product {
    /// One product's fields.
    fn cache_tags(&self) -> Embeds {
        Embeds::Tags(vec![tags::product(EntityId::from_db(self.0.id))])
    }
}

#[Object]
impl Product {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn price(&self) -> Decimal {
        Money::from_cents(self.0.price_cents).to_decimal()
    }
    async fn stock(&self) -> i32 {
        record_entity(StockOf(self.0.id));
        self.0.stock
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn category(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Category>> {
        let Some(category) = self.0.category_id else {
            return Ok(None);
        };
        let loaded = ctx
            .loaders()?
            .categories
            .get(category)
            .await
            .map_err(db_error)?;
        Ok(loaded.map(Category::new))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        record_entity(StockOf(self.0.id));
        self.0.updated_at
    }
}

/// What a product's `stock` and `updatedAt` show: checkouts move it without touching
/// the rest of the product.
struct StockOf(i64);

impl CacheTags for StockOf {
    fn cache_tags(&self) -> Embeds {
        Embeds::Tags(vec![tags::stock(EntityId::from_db(self.0))])
    }
}

pub struct Category(categories::Model);

impl Category {
    pub fn new(model: categories::Model) -> Self {
        record_entity(Self(model))
    }
}

impl CacheTags for Category {
    /// Categories change together (`categories` covers the list and each one's fields).
    fn cache_tags(&self) -> Embeds {
        Embeds::Tags(vec![tags::CATEGORIES.to_owned()])
    }
}

#[Object]
impl Category {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    #[graphql(complexity = "crate::graphql::limits::weighted(first, 20, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let page = PageRequest::parse(first.unwrap_or(20), after.as_deref()).gql()?;
        let filter = catalog::ProductFilter {
            category_id: Some(EntityId::from_db(self.0.id)),
            ..Default::default()
        };
        let actor = ctx.actor()?;
        let rows = catalog::products(
            ctx.db()?,
            actor,
            &filter,
            catalog::ProductSort::Newest,
            &page,
        )
        .await
        .gql()?;
        Ok(product_connection(rows, filter))
    }
}

/// `totalCount` runs its COUNT only when a client asks for it.
pub struct ProductCount {
    filter: catalog::ProductFilter,
}

#[Object]
impl ProductCount {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let count = catalog::count_products(ctx.db()?, ctx.actor()?, &self.filter)
            .await
            .gql()?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

pub type ProductConnection = Connection<String, Product, ProductCount>;

/// A page of products, wherever it appears (the root list, a category's products): which
/// products it holds changes whenever one is created, deleted, moved or (de)activated.
pub fn product_connection(
    page: Page<products::Model>,
    filter: catalog::ProductFilter,
) -> ProductConnection {
    let mut connection = Connection::with_additional_fields(
        page.has_previous_page,
        page.has_next_page,
        ProductCount { filter },
    );
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|(cursor, row)| Edge::new(cursor.encode(), Product::new(row))),
    );
    record_entity(connection)
}

impl CacheTags for ProductConnection {
    /// Which products a page holds, and its `totalCount`; filtered by stock, also every
    /// stock move.
    fn cache_tags(&self) -> Embeds {
        let mut tags = vec![tags::PRODUCTS.to_owned()];
        if self.additional_fields.filter.in_stock.is_some() {
            tags.push(tags::STOCK_LISTS.to_owned());
        }
        Embeds::Tags(tags)
    }
}
