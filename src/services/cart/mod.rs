//! Carts: one per customer (a guest shopper is a guest customer, see `guest`). Quantities are checked against stock when added, and
//! concurrent edits of one cart lose nothing (an atomic upsert adds to the stored
//! quantity instead of writing back a value read earlier). Lines are written by `line`,
//! whose one statement checks them.
mod guest;
mod line;

pub use guest::{
    GuestCarts, Purged, from_token as guest_from_token, merge as merge_guest, purge_expired,
};

use super::{Changed, tags};
use crate::auth::Actor;
use crate::db::entities::{cart_items, carts, customers, products};
use crate::db::in_list::padded;
use crate::domain::{CartToken, EntityId, MAX_QUANTITY, Quantity};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use line::NewQuantity;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

/// A cart as a value: whose it is and when it last changed; its lines load separately
/// (batched) because a page of customers can show many carts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    pub customer_id: EntityId,
    pub updated_at: DateTime<Utc>,
    /// The token of a guest cart this request created (shown once).
    pub new_token: Option<CartToken>,
}

impl CartView {
    fn of(customer_id: EntityId, updated_at: DateTime<Utc>) -> Self {
        Self {
            customer_id,
            updated_at,
            new_token: None,
        }
    }
}

/// Whose cart a request acts on: a signed-in caller's (`Actor::customer_scope`), or,
/// for an anonymous one, the guest cart its token names; a guest naming any other
/// customer is `FORBIDDEN`.
pub async fn owner<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    requested: Option<EntityId>,
) -> AppResult<EntityId> {
    if actor.principal.is_some() {
        return actor.customer_scope(requested);
    }
    match (guest::from_token(conn, actor).await?, requested) {
        (Some(guest), None) => Ok(guest),
        (Some(guest), Some(id)) if id == guest => Ok(guest),
        (Some(_), Some(_)) => Err(AppError::Forbidden(
            "a cart token opens its own cart only".into(),
        )),
        (None, _) => Err(AppError::Unauthenticated(
            "sign in, or send the X-Cart-Token of a guest cart".into(),
        )),
    }
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn cart(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: Option<EntityId>,
) -> AppResult<CartView> {
    let customer = owner(db, actor, customer).await?;
    let stored = carts::Entity::find_by_id(customer.get())
        .filter(carts::Column::TenantId.eq(actor.tenant.as_str()))
        .one(db)
        .await?;
    match stored {
        Some(cart) => Ok(CartView::of(customer, cart.updated_at)),
        None => {
            let owner = require_customer(db, actor, customer).await?;
            Ok(CartView::of(customer, owner.created_at))
        }
    }
}

/// Lines of many carts, for the batch loader.
pub async fn items_by_customers(
    db: &DatabaseConnection,
    tenant: &str,
    ids: &[i64],
) -> Result<Vec<cart_items::Model>, sea_orm::DbErr> {
    let select = cart_items::Entity::find()
        .filter(cart_items::Column::TenantId.eq(tenant))
        .filter(cart_items::Column::CustomerId.is_in(padded(ids.iter().copied())))
        .order_by_asc(cart_items::Column::Id);
    crate::db::rows::all(db, select).await
}

/// Adds to the caller's cart. An anonymous caller without a cart token gets a new
/// guest cart (if `guests` admits one more from `client`); its token comes back in the
/// view. When the line is refused, that new guest cart is dropped again.
#[tracing::instrument(skip(db, actor, guests), fields(tenant = %actor.tenant))]
pub async fn add_to_cart(
    db: &DatabaseConnection,
    (actor, guests, client): (&Actor, &GuestCarts, Option<std::net::IpAddr>),
    customer: Option<EntityId>,
    product: EntityId,
    quantity: Quantity,
) -> AppResult<Changed<CartView>> {
    let add = NewQuantity::Add(quantity);
    if actor.principal.is_some() || actor.cart_token.is_some() {
        let customer = owner(db, actor, customer).await?;
        let written = line::write(db, actor, customer, product, add).await?;
        if actor.principal.is_none() {
            guests.extend(db, &actor.tenant, customer).await?;
        }
        return Ok(written);
    }
    if customer.is_some() {
        return Err(AppError::Unauthenticated(
            "sign in to name a customer's cart".into(),
        ));
    }
    // Refused before a guest row exists when the product is not there to be added.
    active_product(db, actor, product).await?;
    let (guest, token) = guests.create(db, &actor.tenant, client).await?;
    match line::write(db, actor, guest, product, add).await {
        Ok(mut written) => {
            written.value = guest::view_with_token(written.value, Some(token));
            Ok(written)
        }
        Err(refused) => {
            guest::drop_new(db, &actor.tenant, guest).await?;
            Err(refused)
        }
    }
}

/// Sets a line's quantity; 0 removes the line.
#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn update_cart_item(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: Option<EntityId>,
    product: EntityId,
    quantity: i32,
) -> AppResult<Changed<CartView>> {
    if quantity == 0 {
        return remove_from_cart(db, actor, customer, product).await;
    }
    let quantity = Quantity::parse("quantity", quantity)?;
    let customer = owner(db, actor, customer).await?;
    line::write(db, actor, customer, product, NewQuantity::Set(quantity)).await
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn remove_from_cart(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: Option<EntityId>,
    product: EntityId,
) -> AppResult<Changed<CartView>> {
    let customer = owner(db, actor, customer).await?;
    let txn = db.begin().await?;
    require_customer(&txn, actor, customer).await?;
    let removed = cart_items::Entity::delete_many()
        .filter(cart_items::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(cart_items::Column::CustomerId.eq(customer.get()))
        .filter(cart_items::Column::ProductId.eq(product.get()))
        .exec(&txn)
        .await?;
    if removed.rows_affected == 0 {
        return Err(AppError::NotFound(format!(
            "product {product} is not in the cart"
        )));
    }
    let now = touch_cart(&txn, actor, customer).await?;
    changed(txn, actor, customer, now).await
}

#[tracing::instrument(skip(db, actor), fields(tenant = %actor.tenant))]
pub async fn clear_cart(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: Option<EntityId>,
) -> AppResult<Changed<CartView>> {
    let customer = owner(db, actor, customer).await?;
    let txn = db.begin().await?;
    require_customer(&txn, actor, customer).await?;
    cart_items::Entity::delete_many()
        .filter(cart_items::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(cart_items::Column::CustomerId.eq(customer.get()))
        .exec(&txn)
        .await?;
    let now = touch_cart(&txn, actor, customer).await?;
    changed(txn, actor, customer, now).await
}

async fn changed(
    txn: DatabaseTransaction,
    actor: &Actor,
    customer: EntityId,
    updated_at: DateTime<Utc>,
) -> AppResult<Changed<CartView>> {
    Changed::commit(
        txn,
        &actor.tenant,
        CartView::of(customer, updated_at),
        stale(customer),
    )
    .await
}

/// What any change of `customer`'s cart makes stale.
fn stale(customer: EntityId) -> Vec<String> {
    vec![tags::cart(customer)]
}

fn check_line(product: &products::Model, quantity: i32) -> AppResult<()> {
    if quantity > MAX_QUANTITY {
        return Err(AppError::BadInput(format!(
            "quantity: a cart line holds at most {MAX_QUANTITY} units"
        )));
    }
    if quantity > product.stock {
        return Err(AppError::OutOfStock(format!(
            "only {} of '{}' in stock, {} requested",
            product.stock, product.sku, quantity
        )));
    }
    Ok(())
}

async fn require_customer<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    id: EntityId,
) -> AppResult<customers::Model> {
    customers::Entity::find_by_id(id.get())
        .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("customer", id))
}

async fn active_product<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    id: EntityId,
) -> AppResult<products::Model> {
    products::Entity::find_by_id(id.get())
        .filter(products::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(products::Column::Active.eq(true))
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("product", id))
}

/// Creates the cart row on first use and stamps its `updated_at`.
async fn touch_cart(
    txn: &DatabaseTransaction,
    actor: &Actor,
    customer: EntityId,
) -> AppResult<DateTime<Utc>> {
    let now = Utc::now();
    carts::Entity::insert(carts::ActiveModel {
        customer_id: Set(customer.get()),
        tenant_id: Set(actor.tenant.as_str().to_owned()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(carts::Column::CustomerId)
            .update_column(carts::Column::UpdatedAt)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(now)
}
