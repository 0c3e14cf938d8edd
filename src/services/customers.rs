//! Customers: anyone may sign up; a customer sees themselves, staff see everyone.
use super::{Changed, Cursor, Page, PageRequest, tags};
use crate::auth::Actor;
use crate::db::entities::{carts, customers, tenants};
use crate::db::in_list::padded;
use crate::domain::{Email, EntityId, PersonName, TenantId};
use crate::error::{AppError, AppResult, DbResultExt, Violation};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn customer(
    db: &DatabaseConnection,
    actor: &Actor,
    id: EntityId,
) -> AppResult<Option<customers::Model>> {
    let principal = actor.require_principal()?;
    if !principal.is_staff() && principal.customer_id() != Some(id) {
        return Err(AppError::Forbidden(
            "customers may only read themselves".into(),
        ));
    }
    Ok(customers::Entity::find_by_id(id.get())
        .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
        .one(db)
        .await?)
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn customers(
    db: &DatabaseConnection,
    actor: &Actor,
    page: &PageRequest,
) -> AppResult<Page<customers::Model>> {
    actor.require_staff()?;
    // Guest rows are shoppers' carts and guest orders, not sign-ups.
    let mut query = customers::Entity::find()
        .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(customers::Column::Guest.eq(false))
        .order_by_asc(customers::Column::Id);
    if let Some(after) = &page.after {
        query = query.filter(customers::Column::Id.gt(after.id));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    Ok(Page::from_rows(rows, page, |c| Cursor::new("", c.id)))
}

pub async fn count_customers(db: &DatabaseConnection, actor: &Actor) -> AppResult<u64> {
    actor.require_staff()?;
    Ok(customers::Entity::find()
        .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(customers::Column::Guest.eq(false))
        .count(db)
        .await?)
}

pub async fn customers_by_ids(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<customers::Model>, sea_orm::DbErr> {
    customers::Entity::find()
        .filter(customers::Column::TenantId.eq(tenant))
        .filter(customers::Column::Id.is_in(padded(ids.iter().copied())))
        .all(db)
        .await
}

pub async fn carts_by_customer_ids(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<carts::Model>, sea_orm::DbErr> {
    carts::Entity::find()
        .filter(carts::Column::TenantId.eq(tenant))
        .filter(carts::Column::CustomerId.is_in(padded(ids.iter().copied())))
        .all(db)
        .await
}

/// Sign-up: open to anonymous callers of an existing tenant.
#[tracing::instrument(skip(db, actor, name, email), fields(tenant = %actor.tenant))]
pub async fn create_customer(
    db: &DatabaseConnection,
    actor: &Actor,
    name: PersonName,
    email: Email,
) -> AppResult<Changed<customers::Model>> {
    let txn = db.begin().await?;
    let model = insert_customer(&txn, actor, name, email, |email| {
        AppError::Conflict(format!("a customer with e-mail '{email}' already exists"))
    })
    .await?;
    let tags = created_tags(&model);
    Changed::commit(txn, &actor.tenant, model, tags).await
}

/// Inserts a customer of the actor's tenant; an e-mail already taken there becomes
/// the error `taken` makes of it.
pub(crate) async fn insert_customer(
    txn: &DatabaseTransaction,
    actor: &Actor,
    name: PersonName,
    email: Email,
    taken: impl FnOnce(&str) -> AppError,
) -> AppResult<customers::Model> {
    let email = email.into_inner();
    customers::ActiveModel {
        tenant_id: Set(actor.tenant.as_str().to_owned()),
        name: Set(name.into_inner()),
        email: Set(email.clone()),
        created_at: Set(Utc::now()),
        guest: Set(false),
        ..Default::default()
    }
    .insert(txn)
    .await
    .on_violation(|violation| {
        Some(match violation {
            Violation::Unique => taken(&email),
            Violation::ForeignKey => {
                AppError::NotFound(format!("tenant '{}' does not exist", actor.tenant))
            }
        })
    })
}

/// What a new customer makes stale.
pub(crate) fn created_tags(customer: &customers::Model) -> Vec<String> {
    vec![
        tags::CUSTOMERS.to_owned(),
        tags::customer(EntityId::from_db(customer.id)),
    ]
}

/// Registers a tenant; used by `seed` and by tests (tenants come from the identity
/// provider's tokens, not from the API).
pub async fn ensure_tenant(
    db: &DatabaseConnection,
    tenant: &TenantId,
    name: &str,
) -> AppResult<()> {
    tenants::Entity::insert(tenants::ActiveModel {
        id: Set(tenant.as_str().to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([tenants::Column::Id])
    .exec(db)
    .await?;
    Ok(())
}
