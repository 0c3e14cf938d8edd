//! Catalog operations: products and categories.
use super::context::ContextExt;
use super::mutation::finish;
use super::types::{Category, Product, ProductConnection, parse_id, product_connection};
use crate::cache::{ArgumentTag, FieldCache, FieldDeclarations, Scope};
use crate::domain::{self, CategoryName, Money, ProductName, Sku, Slug, Stock};
use crate::error::{AppResult, GqlResultExt};
use crate::services::{PageRequest, catalog, tags};
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
pub enum ProductSort {
    #[default]
    Newest,
    Name,
    PriceAsc,
    PriceDesc,
}

impl From<ProductSort> for catalog::ProductSort {
    fn from(sort: ProductSort) -> Self {
        match sort {
            ProductSort::Newest => Self::Newest,
            ProductSort::Name => Self::Name,
            ProductSort::PriceAsc => Self::PriceAsc,
            ProductSort::PriceDesc => Self::PriceDesc,
        }
    }
}

#[derive(Debug, Clone, InputObject, Default)]
pub struct ProductFilter {
    /// Case-insensitive match on name or SKU.
    search: Option<String>,
    category_id: Option<ID>,
    in_stock: Option<bool>,
    min_price: Option<Decimal>,
    max_price: Option<Decimal>,
    /// Staff only: include deactivated products.
    #[graphql(default = false)]
    include_inactive: bool,
}

impl ProductFilter {
    fn parse(self) -> async_graphql::Result<catalog::ProductFilter> {
        let parse = || -> AppResult<catalog::ProductFilter> {
            Ok(catalog::ProductFilter {
                search: self.search,
                category_id: self
                    .category_id
                    .map(|id| domain::EntityId::parse("filter.categoryId", id.as_str()))
                    .transpose()?,
                in_stock: self.in_stock,
                min_price: self
                    .min_price
                    .map(|p| Money::parse("filter.minPrice", p))
                    .transpose()?,
                max_price: self
                    .max_price
                    .map(|p| Money::parse("filter.maxPrice", p))
                    .transpose()?,
                include_inactive: self.include_inactive,
            })
        };
        parse().gql()
    }
}

#[derive(Debug, InputObject)]
pub struct CreateProductInput {
    sku: String,
    name: String,
    description: Option<String>,
    price: Decimal,
    stock: i32,
    category_id: Option<ID>,
    #[graphql(default = true)]
    active: bool,
}

impl CreateProductInput {
    fn parse(self) -> AppResult<catalog::NewProduct> {
        Ok(catalog::NewProduct {
            sku: Sku::parse(&self.sku)?,
            name: ProductName::parse(&self.name)?,
            description: domain::description(self.description.as_deref())?,
            price: Money::parse("price", self.price)?,
            stock: Stock::parse(self.stock)?,
            category_id: self
                .category_id
                .map(|id| domain::EntityId::parse("categoryId", id.as_str()))
                .transpose()?,
            active: self.active,
        })
    }
}

#[derive(Debug, InputObject)]
pub struct UpdateProductInput {
    sku: Option<String>,
    name: Option<String>,
    /// `null` clears the description.
    description: MaybeUndefined<String>,
    price: Option<Decimal>,
    stock: Option<i32>,
    /// `null` removes the product from its category.
    category_id: MaybeUndefined<ID>,
    active: Option<bool>,
}

impl UpdateProductInput {
    fn parse(self) -> AppResult<catalog::ProductPatch> {
        Ok(catalog::ProductPatch {
            sku: self.sku.as_deref().map(Sku::parse).transpose()?,
            name: self.name.as_deref().map(ProductName::parse).transpose()?,
            description: match self.description {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(text) => Some(domain::description(Some(&text))?),
            },
            price: self.price.map(|p| Money::parse("price", p)).transpose()?,
            stock: self.stock.map(Stock::parse).transpose()?,
            category_id: match self.category_id {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(id) => {
                    Some(Some(domain::EntityId::parse("categoryId", id.as_str())?))
                }
            },
            active: self.active,
        })
    }
}

#[derive(Debug, InputObject)]
pub struct CreateCategoryInput {
    name: String,
    slug: Option<String>,
}

#[derive(Default)]
pub struct CatalogQuery;

/// `product(id: 5)` that resolved to null is tagged `product:5`, so creating it shows it.
const PRODUCT_BY_ID: &[ArgumentTag] = &[ArgumentTag {
    argument: "id",
    tag: tags::product,
}];

impl FieldDeclarations for CatalogQuery {
    const FIELDS: &'static [FieldCache] = &[
        FieldCache::cached("product", "products", 60, Scope::Public).argument_tags(PRODUCT_BY_ID),
        FieldCache::cached("products", "products", 60, Scope::Public).tags(&[tags::PRODUCTS]),
        FieldCache::cached("categories", "categories", 300, Scope::Public)
            .tags(&[tags::CATEGORIES]),
    ];
}

#[Object]
impl CatalogQuery {
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = parse_id("id", &id)?;
        let product = catalog::product(ctx.db()?, ctx.actor()?, id).await.gql()?;
        Ok(product.map(Product::new))
    }

    #[graphql(complexity = "super::limits::weighted(first, 20, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        filter: Option<ProductFilter>,
        sort: Option<ProductSort>,
    ) -> async_graphql::Result<ProductConnection> {
        let page = PageRequest::parse(first.unwrap_or(20), after.as_deref()).gql()?;
        let filter = filter.unwrap_or_default().parse()?;
        let rows = catalog::products(
            ctx.db()?,
            ctx.actor()?,
            &filter,
            sort.unwrap_or_default().into(),
            &page,
        )
        .await
        .gql()?;
        Ok(product_connection(rows, filter))
    }

    async fn categories(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Category>> {
        let rows = catalog::categories(ctx.db()?, ctx.actor()?).await.gql()?;
        Ok(rows.into_iter().map(Category::new).collect())
    }
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// STAFF/ADMIN.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<Product> {
        let actor = ctx.actor()?;
        actor.require_staff().gql()?;
        let input = input.parse().gql()?;
        let changed = catalog::create_product(ctx.db()?, actor, input)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Product::new)
    }

    /// STAFF/ADMIN: price, stock, name, category, active…
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> async_graphql::Result<Product> {
        let actor = ctx.actor()?;
        actor.require_staff().gql()?;
        let id = parse_id("id", &id)?;
        let patch = input.parse().gql()?;
        let changed = catalog::update_product(ctx.db()?, actor, id, patch)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Product::new)
    }

    /// STAFF/ADMIN. Refused with CONFLICT when orders reference the product.
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let actor = ctx.actor()?;
        actor.require_staff().gql()?;
        let id = parse_id("id", &id)?;
        let changed = catalog::delete_product(ctx.db()?, actor, id).await.gql()?;
        finish(ctx, changed).await
    }

    /// STAFF/ADMIN. The slug defaults to one derived from the name.
    async fn create_category(
        &self,
        ctx: &Context<'_>,
        input: CreateCategoryInput,
    ) -> async_graphql::Result<Category> {
        let actor = ctx.actor()?;
        actor.require_staff().gql()?;
        let name = CategoryName::parse(&input.name).map_err(Into::into).gql()?;
        let slug = input
            .slug
            .as_deref()
            .map(Slug::parse)
            .transpose()
            .map_err(Into::into)
            .gql()?;
        let changed = catalog::create_category(ctx.db()?, actor, name, slug)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Category::new)
    }
}
