//! Reading orders and sagas: customers see their own, staff see the tenant's.
use super::{Cursor, Page, PageRequest};
use crate::auth::Actor;
use crate::checkout::model::{OrderStatus, SagaStatus};
use crate::db::entities::{order_items, orders, saga_steps, sagas};
use crate::db::in_list::padded;
use crate::domain::EntityId;
use crate::error::AppResult;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

/// Whether the caller may see what `customer` owns. What it may not see reads as
/// missing (null), so ids reveal nothing about other customers' orders and sagas.
/// A guest (its cart token's guest row) sees what its guest checkouts made.
fn may_see(actor: &Actor, guest: Option<EntityId>, customer: i64) -> bool {
    let customer = EntityId::from_db(customer);
    guest == Some(customer)
        || actor.principal.as_ref().is_some_and(|principal| {
            principal.is_staff() || principal.customer_id() == Some(customer)
        })
}

/// The guest an anonymous reader is (by cart token); anyone else must be signed in.
async fn reader(db: &DatabaseConnection, actor: &Actor) -> AppResult<Option<EntityId>> {
    if actor.principal.is_some() {
        return Ok(None);
    }
    match super::cart::guest_from_token(db, actor).await? {
        Some(guest) => Ok(Some(guest)),
        None => actor.require_principal().map(|_| None),
    }
}

pub async fn order(
    db: &DatabaseConnection,
    actor: &Actor,
    id: EntityId,
) -> AppResult<Option<orders::Model>> {
    let guest = reader(db, actor).await?;
    let found = orders::Entity::find_by_id(id.get())
        .filter(orders::Column::TenantId.eq(actor.tenant.as_str()))
        .one(db)
        .await?;
    Ok(found.filter(|order| may_see(actor, guest, order.customer_id)))
}

/// A customer's own orders (naming another customer is `FORBIDDEN`); staff see all.
pub async fn orders(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: Option<EntityId>,
    status: Option<OrderStatus>,
    page: &PageRequest,
) -> AppResult<Page<orders::Model>> {
    let customer = if actor.is_staff() {
        customer
    } else {
        Some(actor.customer_scope(customer)?)
    };
    let mut query = orders::Entity::find()
        .filter(orders::Column::TenantId.eq(actor.tenant.as_str()))
        .order_by_desc(orders::Column::Id);
    if let Some(customer) = customer {
        query = query.filter(orders::Column::CustomerId.eq(customer.get()));
    }
    if let Some(status) = status {
        query = query.filter(orders::Column::Status.eq(status.as_str()));
    }
    if let Some(after) = &page.after {
        query = query.filter(orders::Column::Id.lt(after.id));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    Ok(Page::from_rows(rows, page, |o| Cursor::new("", o.id)))
}

pub async fn saga(
    db: &DatabaseConnection,
    actor: &Actor,
    id: EntityId,
) -> AppResult<Option<sagas::Model>> {
    let guest = reader(db, actor).await?;
    let found = sagas::Entity::find_by_id(id.get())
        .filter(sagas::Column::TenantId.eq(actor.tenant.as_str()))
        .one(db)
        .await?;
    Ok(found.filter(|saga| may_see(actor, guest, saga.customer_id)))
}

/// STAFF/ADMIN: the tenant's sagas, newest first.
pub async fn sagas(
    db: &DatabaseConnection,
    actor: &Actor,
    status: Option<SagaStatus>,
    page: &PageRequest,
) -> AppResult<Page<sagas::Model>> {
    actor.require_staff()?;
    let mut query = sagas::Entity::find()
        .filter(sagas::Column::TenantId.eq(actor.tenant.as_str()))
        .order_by_desc(sagas::Column::Id);
    if let Some(status) = status {
        query = query.filter(sagas::Column::Status.eq(status.as_str()));
    }
    if let Some(after) = &page.after {
        query = query.filter(sagas::Column::Id.lt(after.id));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    Ok(Page::from_rows(rows, page, |s| Cursor::new("", s.id)))
}

pub async fn count_orders(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: Option<EntityId>,
    status: Option<OrderStatus>,
) -> AppResult<u64> {
    let customer = if actor.is_staff() {
        customer
    } else {
        Some(actor.customer_scope(customer)?)
    };
    let mut query =
        orders::Entity::find().filter(orders::Column::TenantId.eq(actor.tenant.as_str()));
    if let Some(customer) = customer {
        query = query.filter(orders::Column::CustomerId.eq(customer.get()));
    }
    if let Some(status) = status {
        query = query.filter(orders::Column::Status.eq(status.as_str()));
    }
    Ok(query.count(db).await?)
}

pub async fn orders_by_ids(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::TenantId.eq(tenant))
        .filter(orders::Column::Id.is_in(padded(ids.iter().copied())))
        .all(db)
        .await
}

pub async fn items_by_orders(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<order_items::Model>, DbErr> {
    order_items::Entity::find()
        .filter(order_items::Column::TenantId.eq(tenant))
        .filter(order_items::Column::OrderId.is_in(padded(ids.iter().copied())))
        .order_by_asc(order_items::Column::Id)
        .all(db)
        .await
}

pub async fn sagas_by_ids(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<sagas::Model>, DbErr> {
    sagas::Entity::find()
        .filter(sagas::Column::TenantId.eq(tenant))
        .filter(sagas::Column::Id.is_in(padded(ids.iter().copied())))
        .all(db)
        .await
}

/// Steps of many sagas (steps carry no tenant; the sagas asked for were tenant-checked).
pub async fn steps_by_sagas(
    db: &DatabaseConnection,
    _tenant: &str,
    ids: &[i64],
) -> Result<Vec<saga_steps::Model>, DbErr> {
    saga_steps::Entity::find()
        .filter(saga_steps::Column::SagaId.is_in(padded(ids.iter().copied())))
        .order_by_asc(saga_steps::Column::Position)
        .all(db)
        .await
}
