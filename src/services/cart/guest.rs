//! Guest carts. An anonymous `addToCart` creates a *guest* customer row (so lines,
//! the cart's cache tags and the checkout saga work as for anyone) and a cart token;
//! the token is the only way to that cart. Rules kept here:
//! - A token is 256 bits from the OS random source (`domain::CartToken`), handed out
//!   once; only its SHA-256 is stored. A token names a guest row only, so it can never
//!   reach a signed-in customer's cart; a wrong, forged or expired one is refused.
//! - Creating guest carts is limited per client IP (`GuestCarts::admit`), beside the
//!   general rate limit: a flood of anonymous `addToCart` cannot fill the tables.
//! - A guest cart expires `GUEST_CART_TTL` after its last change and is purged; its
//!   guest row goes with it unless it has orders (a guest checkout's order is kept).
//! - Signing in or up with a token merges the guest's lines into the customer's cart
//!   (quantities added, capped by stock) and retires the guest cart.
use super::super::accounts::Attempts;
use super::{CartView, tags};
use crate::auth::Actor;
use crate::db::dialect::Dialect;
use crate::db::entities::{cart_items, carts, customers, guest_carts, orders, products, sagas};
use crate::db::in_list::padded;
use crate::domain::{CartToken, EntityId, MAX_QUANTITY, TenantId};
use crate::error::{AppError, AppResult, DbResultExt, Violation};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The one refusal of a token that names no live cart.
const UNKNOWN: &str =
    "the cart token is unknown or expired: drop it (the next addToCart starts a new guest cart)";

/// What guest carts are allowed: their lifetime and who may create how many.
#[derive(Clone)]
pub struct GuestCarts {
    ttl: Duration,
    limiter: Attempts,
}

impl GuestCarts {
    pub fn new(ttl: Duration, limiter: Attempts) -> Self {
        Self { ttl, limiter }
    }

    fn expiry(&self) -> DateTime<Utc> {
        // Settings bound the TTL to a year, far inside chrono's range.
        Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(7))
    }

    /// A new guest customer and its cart token, if the client may create one more.
    pub(super) async fn create(
        &self,
        db: &DatabaseConnection,
        tenant: &TenantId,
        client: Option<IpAddr>,
    ) -> AppResult<(EntityId, CartToken)> {
        self.limiter.admit_guest_cart(tenant, client).await?;
        let token = CartToken::generate()
            .map_err(|err| AppError::internal("generate a cart token", err))?;
        let now = Utc::now();
        let txn = db.begin().await?;
        let guest = customers::ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            name: Set("Guest".to_owned()),
            email: Set(String::new()),
            created_at: Set(now),
            guest: Set(true),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .on_violation(|violation| {
            Some(match violation {
                Violation::ForeignKey => {
                    AppError::NotFound(format!("tenant '{tenant}' does not exist"))
                }
                Violation::Unique => return None,
            })
        })?;
        guest_carts::ActiveModel {
            customer_id: Set(guest.id),
            tenant_id: Set(tenant.as_str().to_owned()),
            token_hash: Set(token.digest()),
            created_at: Set(now),
            expires_at: Set(self.expiry()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok((EntityId::from_db(guest.id), token))
    }

    /// A guest cart was changed: it lives `GUEST_CART_TTL` from now.
    pub(super) async fn extend(
        &self,
        db: &DatabaseConnection,
        tenant: &TenantId,
        guest: EntityId,
    ) -> AppResult<()> {
        guest_carts::Entity::update_many()
            .col_expr(guest_carts::Column::ExpiresAt, Expr::value(self.expiry()))
            .filter(guest_carts::Column::TenantId.eq(tenant.as_str()))
            .filter(guest_carts::Column::CustomerId.eq(guest.get()))
            .exec(db)
            .await?;
        Ok(())
    }
}

/// The guest customer the actor's cart token names (`BAD_USER_INPUT` for a malformed
/// token, `UNAUTHENTICATED` for one no live cart of the tenant has); `None` when the
/// actor sent none.
pub async fn from_token(conn: &impl ConnectionTrait, actor: &Actor) -> AppResult<Option<EntityId>> {
    let Some(raw) = actor.cart_token.as_deref() else {
        return Ok(None);
    };
    let token = CartToken::parse(raw)?;
    let found = guest_carts::Entity::find()
        .filter(guest_carts::Column::TokenHash.eq(token.digest()))
        .filter(guest_carts::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(guest_carts::Column::ExpiresAt.gt(Utc::now()))
        .one(conn)
        .await?;
    match found {
        Some(cart) => Ok(Some(EntityId::from_db(cart.customer_id))),
        None => Err(AppError::Unauthenticated(UNKNOWN.into())),
    }
}

/// Adds the guest's lines to `customer`'s cart (each capped by the product's stock and
/// `MAX_QUANTITY`; lines of products gone or out of stock are dropped) and retires
/// the guest cart. The tags it makes stale.
pub async fn merge(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    guest: EntityId,
    customer: EntityId,
) -> AppResult<Vec<String>> {
    // Claiming the token first: of two sign-ins racing with one token, one merges.
    let claimed = guest_carts::Entity::delete_many()
        .filter(guest_carts::Column::TenantId.eq(tenant.as_str()))
        .filter(guest_carts::Column::CustomerId.eq(guest.get()))
        .exec(conn)
        .await?;
    if claimed.rows_affected == 0 {
        return Ok(Vec::new());
    }
    let lines = cart_items::Entity::find()
        .filter(cart_items::Column::TenantId.eq(tenant.as_str()))
        .filter(cart_items::Column::CustomerId.eq(guest.get()))
        .all(conn)
        .await?;
    let products: HashMap<i64, products::Model> = products::Entity::find()
        .filter(products::Column::TenantId.eq(tenant.as_str()))
        .filter(products::Column::Id.is_in(padded(lines.iter().map(|l| l.product_id))))
        .all(conn)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    if !lines.is_empty() {
        touch(conn, tenant, customer).await?;
    }
    let now = Utc::now();
    for line in lines {
        let Some(product) = products.get(&line.product_id).filter(|p| p.active) else {
            continue;
        };
        let cap = product.stock.min(MAX_QUANTITY);
        if cap <= 0 {
            continue;
        }
        let sum = "cart_items.quantity + excluded.quantity";
        let sql = format!(
            "INSERT INTO cart_items (tenant_id, customer_id, product_id, quantity, added_at) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = \
             CASE WHEN {sum} > ? THEN ? ELSE {sum} END"
        );
        let values: Vec<sea_orm::Value> = vec![
            tenant.as_str().into(),
            customer.get().into(),
            product.id.into(),
            line.quantity.min(cap).into(),
            now.into(),
            cap.into(),
            cap.into(),
        ];
        conn.execute_raw(Dialect::of(conn).statement(&sql, values))
            .await?;
    }
    retire(conn, tenant, guest).await?;
    Ok(vec![tags::cart(guest), tags::cart(customer)])
}

/// Deletes a guest's cart and token, and the guest row itself unless orders or sagas
/// name it (a guest checkout's order keeps its customer).
async fn retire(conn: &impl ConnectionTrait, tenant: &TenantId, guest: EntityId) -> AppResult<()> {
    guest_carts::Entity::delete_many()
        .filter(guest_carts::Column::TenantId.eq(tenant.as_str()))
        .filter(guest_carts::Column::CustomerId.eq(guest.get()))
        .exec(conn)
        .await?;
    cart_items::Entity::delete_many()
        .filter(cart_items::Column::TenantId.eq(tenant.as_str()))
        .filter(cart_items::Column::CustomerId.eq(guest.get()))
        .exec(conn)
        .await?;
    carts::Entity::delete_many()
        .filter(carts::Column::TenantId.eq(tenant.as_str()))
        .filter(carts::Column::CustomerId.eq(guest.get()))
        .exec(conn)
        .await?;
    customers::Entity::delete_many()
        .filter(customers::Column::TenantId.eq(tenant.as_str()))
        .filter(customers::Column::Id.eq(guest.get()))
        .filter(customers::Column::Guest.eq(true))
        .filter(
            customers::Column::Id.not_in_subquery(
                Query::select()
                    .column(orders::Column::CustomerId)
                    .from(orders::Entity)
                    .and_where(orders::Column::CustomerId.eq(guest.get()))
                    .to_owned(),
            ),
        )
        .filter(
            customers::Column::Id.not_in_subquery(
                Query::select()
                    .column(sagas::Column::CustomerId)
                    .from(sagas::Entity)
                    .and_where(sagas::Column::CustomerId.eq(guest.get()))
                    .to_owned(),
            ),
        )
        .exec(conn)
        .await?;
    Ok(())
}

/// Creates `customer`'s cart row if it has none and stamps its `updated_at` (lines
/// need their cart first).
async fn touch(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    customer: EntityId,
) -> AppResult<()> {
    carts::Entity::insert(carts::ActiveModel {
        customer_id: Set(customer.get()),
        tenant_id: Set(tenant.as_str().to_owned()),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(carts::Column::CustomerId)
            .update_column(carts::Column::UpdatedAt)
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// One purged guest cart: its tenant and the tags to invalidate.
pub struct Purged {
    pub tenant: TenantId,
    pub tags: Vec<String>,
}

/// How many expired carts one purge round retires at most (the next round goes on).
const PURGE_BATCH: u64 = 500;

/// Retires guest carts whose time is up, oldest first, each in its own transaction.
pub async fn purge_expired(db: &DatabaseConnection) -> AppResult<Vec<Purged>> {
    let expired: Vec<(i64, String)> = guest_carts::Entity::find()
        .select_only()
        .column(guest_carts::Column::CustomerId)
        .column(guest_carts::Column::TenantId)
        .filter(guest_carts::Column::ExpiresAt.lte(Utc::now()))
        .limit(PURGE_BATCH)
        .into_tuple()
        .all(db)
        .await?;
    let mut purged = Vec::with_capacity(expired.len());
    for (guest, tenant) in expired {
        let Ok(tenant) = TenantId::parse(&tenant) else {
            continue;
        };
        let guest = EntityId::from_db(guest);
        let txn = db.begin().await?;
        // Extended by a write since it was listed: not expired any more.
        let still_expired = guest_carts::Entity::find()
            .filter(guest_carts::Column::CustomerId.eq(guest.get()))
            .filter(guest_carts::Column::ExpiresAt.lte(Utc::now()))
            .one(&txn)
            .await?
            .is_some();
        if still_expired {
            retire(&txn, &tenant, guest).await?;
        }
        txn.commit().await?;
        if still_expired {
            purged.push(Purged {
                tenant,
                tags: vec![tags::cart(guest)],
            });
        }
    }
    Ok(purged)
}

/// Deletes a guest cart this request created and could not fill.
pub(super) async fn drop_new(
    db: &DatabaseConnection,
    tenant: &TenantId,
    guest: EntityId,
) -> AppResult<()> {
    let txn = db.begin().await?;
    retire(&txn, tenant, guest).await?;
    txn.commit().await?;
    Ok(())
}

/// The cart as a value, with the token when this request created it.
pub(super) fn view_with_token(mut view: CartView, token: Option<CartToken>) -> CartView {
    view.new_token = token;
    view
}
