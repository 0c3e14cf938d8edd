//! Products and categories: reads for everyone in the tenant, writes for staff.
use super::{Changed, Cursor, Page, PageRequest, tags};
use crate::auth::Actor;
use crate::db::entities::{categories, products};
use crate::db::in_list::padded;
use crate::domain::{CategoryName, EntityId, Money, ProductName, Sku, Slug, Stock};
use crate::error::{AppError, AppResult, DbResultExt};
use chrono::Utc;
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, TransactionTrait,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductSort {
    #[default]
    Newest,
    Name,
    PriceAsc,
    PriceDesc,
}

#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub search: Option<String>,
    pub category_id: Option<EntityId>,
    pub in_stock: Option<bool>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
    /// Staff only: include deactivated products.
    pub include_inactive: bool,
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Option<String>,
    pub price: Money,
    pub stock: Stock,
    pub category_id: Option<EntityId>,
    pub active: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub sku: Option<Sku>,
    pub name: Option<ProductName>,
    pub description: Option<Option<String>>,
    pub price: Option<Money>,
    pub stock: Option<Stock>,
    pub category_id: Option<Option<EntityId>>,
    pub active: Option<bool>,
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn product(
    db: &DatabaseConnection,
    actor: &Actor,
    id: EntityId,
) -> AppResult<Option<products::Model>> {
    let mut query = products::Entity::find_by_id(id.get())
        .filter(products::Column::TenantId.eq(actor.tenant.as_str()));
    // A deactivated product is staff's business: to anyone else it does not exist.
    if !actor.is_staff() {
        query = query.filter(products::Column::Active.eq(true));
    }
    Ok(query.one(db).await?)
}

/// Products by id, for the batch loader: one statement for any number of ids.
pub async fn products_by_ids(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<products::Model>, sea_orm::DbErr> {
    let select = products::Entity::find()
        .filter(products::Column::TenantId.eq(tenant))
        .filter(products::Column::Id.is_in(padded(ids.iter().copied())));
    crate::db::rows::all(db, select).await
}

/// Every category of a tenant, by name.
pub async fn all_categories(
    db: &DatabaseConnection,
    tenant: &str,
) -> Result<Vec<categories::Model>, sea_orm::DbErr> {
    let select = categories::Entity::find()
        .filter(categories::Column::TenantId.eq(tenant))
        .order_by_asc(categories::Column::Name);
    crate::db::rows::all(db, select).await
}

fn filtered(actor: &Actor, filter: &ProductFilter) -> AppResult<Select<products::Entity>> {
    use products::Column;
    if filter.include_inactive {
        actor.require_staff()?;
    }
    let mut query = products::Entity::find().filter(Column::TenantId.eq(actor.tenant.as_str()));
    if !filter.include_inactive {
        query = query.filter(Column::Active.eq(true));
    }
    if let Some(term) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        crate::domain::plain_text("filter.search", term, false)?;
        if term.chars().count() > 100 {
            return Err(AppError::BadInput(
                "filter.search: at most 100 characters".into(),
            ));
        }
        let escaped = term
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        let like = |col: Column| {
            Expr::expr(Func::lower(Expr::col(col)))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        query = query.filter(
            Condition::any()
                .add(like(Column::Name))
                .add(like(Column::Sku)),
        );
    }
    if let Some(category) = filter.category_id {
        query = query.filter(Column::CategoryId.eq(category.get()));
    }
    match filter.in_stock {
        Some(true) => query = query.filter(Column::Stock.gt(0)),
        Some(false) => query = query.filter(Column::Stock.eq(0)),
        None => {}
    }
    if let Some(min) = filter.min_price {
        query = query.filter(Column::PriceCents.gte(min.cents()));
    }
    if let Some(max) = filter.max_price {
        query = query.filter(Column::PriceCents.lte(max.cents()));
    }
    Ok(query)
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn products(
    db: &DatabaseConnection,
    actor: &Actor,
    filter: &ProductFilter,
    sort: ProductSort,
    page: &PageRequest,
) -> AppResult<Page<products::Model>> {
    use products::Column;
    let mut query = filtered(actor, filter)?;
    if let Some(after) = &page.after {
        query = match sort {
            ProductSort::Newest => query.filter(Column::Id.lt(after.id)),
            ProductSort::Name => query.filter(
                Condition::any()
                    .add(Column::Name.gt(after.key.clone()))
                    .add(
                        Column::Name
                            .eq(after.key.clone())
                            .and(Column::Id.gt(after.id)),
                    ),
            ),
            ProductSort::PriceAsc => {
                let key = after.key_as_i64()?;
                query.filter(
                    Condition::any()
                        .add(Column::PriceCents.gt(key))
                        .add(Column::PriceCents.eq(key).and(Column::Id.gt(after.id))),
                )
            }
            ProductSort::PriceDesc => {
                let key = after.key_as_i64()?;
                query.filter(
                    Condition::any()
                        .add(Column::PriceCents.lt(key))
                        .add(Column::PriceCents.eq(key).and(Column::Id.lt(after.id))),
                )
            }
        };
    }
    query = match sort {
        ProductSort::Newest => query.order_by_desc(Column::Id),
        ProductSort::Name => query.order_by_asc(Column::Name).order_by_asc(Column::Id),
        ProductSort::PriceAsc => query
            .order_by_asc(Column::PriceCents)
            .order_by_asc(Column::Id),
        ProductSort::PriceDesc => query
            .order_by_desc(Column::PriceCents)
            .order_by_desc(Column::Id),
    };
    let rows = crate::db::rows::all(db, query.limit(page.first + 1)).await?;
    Ok(Page::from_rows(rows, page, |p| match sort {
        ProductSort::Newest => Cursor::new("", p.id),
        ProductSort::Name => Cursor::new(p.name.clone(), p.id),
        ProductSort::PriceAsc | ProductSort::PriceDesc => {
            Cursor::new(p.price_cents.to_string(), p.id)
        }
    }))
}

pub async fn count_products(
    db: &DatabaseConnection,
    actor: &Actor,
    filter: &ProductFilter,
) -> AppResult<u64> {
    Ok(filtered(actor, filter)?.count(db).await?)
}

async fn require_category<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    id: EntityId,
) -> AppResult<()> {
    categories::Entity::find_by_id(id.get())
        .filter(categories::Column::TenantId.eq(actor.tenant.as_str()))
        .one(conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| AppError::not_found("category", id))
}

#[tracing::instrument(skip(db, actor, input), fields(tenant = %actor.tenant))]
pub async fn create_product(
    db: &DatabaseConnection,
    actor: &Actor,
    input: NewProduct,
) -> AppResult<Changed<products::Model>> {
    actor.require_staff()?;
    let txn = db.begin().await?;
    if let Some(category) = input.category_id {
        require_category(&txn, actor, category).await?;
    }
    let now = Utc::now();
    let sku = input.sku.into_inner();
    let model = products::ActiveModel {
        tenant_id: Set(actor.tenant.as_str().to_owned()),
        sku: Set(sku.clone()),
        name: Set(input.name.into_inner()),
        description: Set(input.description),
        price_cents: Set(input.price.cents()),
        stock: Set(input.stock.get()),
        category_id: Set(input.category_id.map(EntityId::get)),
        active: Set(input.active),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .on_unique(|| format!("a product with SKU '{sku}' already exists"))?;
    let tags = vec![
        tags::PRODUCTS.to_owned(),
        tags::product(EntityId::from_db(model.id)),
    ];
    Changed::commit(txn, &actor.tenant, model, tags).await
}

#[tracing::instrument(skip(db, actor, patch), fields(tenant = %actor.tenant))]
pub async fn update_product(
    db: &DatabaseConnection,
    actor: &Actor,
    id: EntityId,
    patch: ProductPatch,
) -> AppResult<Changed<products::Model>> {
    actor.require_staff()?;
    let txn = db.begin().await?;
    let existing = products::Entity::find_by_id(id.get())
        .filter(products::Column::TenantId.eq(actor.tenant.as_str()))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("product", id))?;
    if let Some(Some(category)) = patch.category_id {
        require_category(&txn, actor, category).await?;
    }
    let mut model: products::ActiveModel = existing.into();
    let mut sku_for_error = None;
    if let Some(sku) = patch.sku {
        let sku = sku.into_inner();
        sku_for_error = Some(sku.clone());
        model.sku = Set(sku);
    }
    if let Some(name) = patch.name {
        model.name = Set(name.into_inner());
    }
    if let Some(description) = patch.description {
        model.description = Set(description);
    }
    if let Some(price) = patch.price {
        model.price_cents = Set(price.cents());
    }
    if let Some(stock) = patch.stock {
        model.stock = Set(stock.get());
    }
    if let Some(category) = patch.category_id {
        model.category_id = Set(category.map(EntityId::get));
    }
    if let Some(active) = patch.active {
        model.active = Set(active);
    }
    model.updated_at = Set(Utc::now());
    let updated = model.update(&txn).await.on_unique(|| {
        format!(
            "a product with SKU '{}' already exists",
            sku_for_error.unwrap_or_default()
        )
    })?;
    // Any field can move a product within a sorted or filtered list.
    Changed::commit(
        txn,
        &actor.tenant,
        updated,
        vec![tags::PRODUCTS.to_owned(), tags::product(id)],
    )
    .await
}

/// Deletes a product and drops it from every cart that held it. A product that an
/// unfinished checkout has reserved cannot be deleted (its order would refer to
/// nothing): CONFLICT, deactivate it instead.
#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn delete_product(
    db: &DatabaseConnection,
    actor: &Actor,
    id: EntityId,
) -> AppResult<Changed<bool>> {
    actor.require_staff()?;
    let in_use = || {
        AppError::Conflict(format!(
            "product {id} appears in orders or in checkouts under way; deactivate it (active: false) instead"
        ))
    };
    let txn = db.begin().await?;
    // Touching the row first locks it: no reservation can take it until this ends,
    // and one that waited finds it gone.
    let touched = products::Entity::update_many()
        .col_expr(products::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(products::Column::Id.eq(id.get()))
        .filter(products::Column::TenantId.eq(actor.tenant.as_str()))
        .exec(&txn)
        .await?;
    if touched.rows_affected == 0 {
        return Err(AppError::not_found("product", id));
    }
    if reserved_by_unfinished_saga(&txn, id).await? {
        return Err(in_use());
    }
    products::Entity::delete_many()
        .filter(products::Column::Id.eq(id.get()))
        .exec(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => in_use(),
            _ => AppError::from(err),
        })?;
    Changed::commit(
        txn,
        &actor.tenant,
        true,
        vec![tags::PRODUCTS.to_owned(), tags::product(id)],
    )
    .await
}

async fn reserved_by_unfinished_saga(
    txn: &sea_orm::DatabaseTransaction,
    product: EntityId,
) -> Result<bool, sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = txn.get_database_backend();
    let param = if backend == sea_orm::DatabaseBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let sql = format!(
        "SELECT 1 AS held FROM stock_movements m JOIN sagas s ON s.id = m.saga_id \
         WHERE m.product_id = {param} AND m.kind = 'RESERVE' \
         AND s.status NOT IN ('COMPLETED', 'COMPENSATED', 'FAILED') LIMIT 1"
    );
    let found = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [product.get().into()],
        ))
        .await?;
    Ok(found.is_some())
}

pub async fn categories(
    db: &DatabaseConnection,
    actor: &Actor,
) -> AppResult<Vec<categories::Model>> {
    Ok(all_categories(db, actor.tenant.as_str()).await?)
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn create_category(
    db: &DatabaseConnection,
    actor: &Actor,
    name: CategoryName,
    slug: Option<Slug>,
) -> AppResult<Changed<categories::Model>> {
    actor.require_staff()?;
    let name = name.into_inner();
    let slug = match slug {
        Some(slug) => slug,
        None => Slug::from_name(&name)?,
    }
    .into_inner();
    let txn = db.begin().await?;
    let model = categories::ActiveModel {
        tenant_id: Set(actor.tenant.as_str().to_owned()),
        name: Set(name),
        slug: Set(slug.clone()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .on_unique(|| format!("a category with slug '{slug}' already exists"))?;
    Changed::commit(txn, &actor.tenant, model, vec![tags::CATEGORIES.to_owned()]).await
}
