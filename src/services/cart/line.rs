//! Writes a cart line with its checks as conditions of the upsert itself: the customer
//! and an active product of the tenant exist, and the line's new quantity is within the
//! product's stock and `MAX_QUANTITY`; otherwise no row is written. Row locks are held
//! for that one statement.
//!
//! On PostgreSQL the cart's `updated_at` and the cache outbox row ride in the same
//! statement (a data-modifying `WITH`), which commits by itself: one round trip. The
//! line is written before the cart row there, as removals do, so two writers of one cart
//! always lock in the same order. SQLite has no data-modifying `WITH`: there the
//! statements run in a transaction on its single, in-process writer.
//!
//! A write that wrote nothing is explained afterwards by reads (`refusal`), in the order
//! the checks are listed in SPEC: customer, product, most units per line, stock.
use super::{CartView, active_product, changed, check_line, require_customer, stale, touch_cart};
use crate::auth::Actor;
use crate::cache::outbox;
use crate::db::dialect::Dialect;
use crate::db::entities::cart_items;
use crate::domain::{EntityId, MAX_QUANTITY, Quantity};
use crate::error::{AppError, AppResult};
use crate::services::Changed;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait, Value,
};

/// Writes tried when the reason a write was refused is gone by the time it is read
/// (stock raised meanwhile, say).
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy)]
pub(super) enum NewQuantity {
    /// Adds to what the line holds (evaluated by the database: concurrent adds accumulate).
    Add(Quantity),
    Set(Quantity),
}

impl NewQuantity {
    /// The line's quantity after the write, in the upsert's terms.
    fn sql(self) -> &'static str {
        match self {
            Self::Add(_) => "cart_items.quantity + excluded.quantity",
            Self::Set(_) => "excluded.quantity",
        }
    }

    fn given(self) -> i32 {
        match self {
            Self::Add(q) | Self::Set(q) => q.get(),
        }
    }

    fn after(self, held: i32) -> i32 {
        match self {
            Self::Add(q) => held + q.get(),
            Self::Set(q) => q.get(),
        }
    }
}

/// One write of a line: whose cart, which product, what quantity.
struct LineWrite<'a> {
    actor: &'a Actor,
    customer: EntityId,
    product: EntityId,
    quantity: NewQuantity,
}

pub(super) async fn write(
    db: &DatabaseConnection,
    actor: &Actor,
    customer: EntityId,
    product: EntityId,
    quantity: NewQuantity,
) -> AppResult<Changed<CartView>> {
    let write = LineWrite {
        actor,
        customer,
        product,
        quantity,
    };
    for _ in 0..ATTEMPTS {
        let written = match db.get_database_backend() {
            DatabaseBackend::Postgres => write.in_one_statement(db).await?,
            _ => write.in_transaction(db).await?,
        };
        if let Some(changed) = written {
            return Ok(changed);
        }
        write.refusal(db).await?;
    }
    Err(AppError::Conflict(format!(
        "the cart line of product {product} kept changing; try again"
    )))
}

impl LineWrite<'_> {
    async fn in_one_statement(
        &self,
        db: &DatabaseConnection,
    ) -> AppResult<Option<Changed<CartView>>> {
        let now = Utc::now();
        let tags = stale(self.customer);
        let (line, mut values) = self.upsert(now);
        let (record, recorded) = outbox::record_from("cart", &self.actor.tenant, &tags)?;
        let sql = format!(
            "WITH line AS ({line}), \
             cart AS (INSERT INTO carts (customer_id, tenant_id, updated_at) SELECT customer_id, ?, ? FROM line \
               ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at RETURNING customer_id), \
             recorded AS ({record}) \
             SELECT id FROM recorded"
        );
        values.extend([self.actor.tenant.as_str().into(), now.into()]);
        values.extend(recorded);
        let Some(row) = crate::db::rows::one(db, Dialect::of(db).statement(&sql, values)).await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("", "id")?;
        let view = CartView::of(self.customer, now);
        Ok(Some(Changed::committed(view, tags, id)))
    }

    async fn in_transaction(
        &self,
        db: &DatabaseConnection,
    ) -> AppResult<Option<Changed<CartView>>> {
        let txn = db.begin().await?;
        // SQLite checks the line's foreign key to its cart at once: the cart row comes first.
        require_customer(&txn, self.actor, self.customer).await?;
        let now = touch_cart(&txn, self.actor, self.customer).await?;
        let (line, values) = self.upsert(now);
        let written = txn
            .query_one_raw(Dialect::of(&txn).statement(&line, values))
            .await?;
        if written.is_none() {
            return Ok(None); // dropping `txn` rolls the cart's touch back
        }
        changed(txn, self.actor, self.customer, now).await.map(Some)
    }

    /// The checked upsert (`RETURNING customer_id`, no row when refused) and its values.
    fn upsert(&self, now: DateTime<Utc>) -> (String, Vec<Value>) {
        let after = self.quantity.sql();
        let sql = format!(
            "INSERT INTO cart_items (tenant_id, customer_id, product_id, quantity, added_at) \
             SELECT c.tenant_id, c.id, p.id, ?, ? FROM customers c JOIN products p ON p.tenant_id = c.tenant_id \
             WHERE c.id = ? AND c.tenant_id = ? AND p.id = ? AND p.active AND ? <= p.stock \
             ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = {after} \
             WHERE {after} <= ? AND {after} <= (SELECT stock FROM products WHERE products.id = excluded.product_id) \
             RETURNING customer_id"
        );
        let values = vec![
            self.quantity.given().into(),
            now.into(),
            self.customer.get().into(),
            self.actor.tenant.as_str().into(),
            self.product.get().into(),
            self.quantity.given().into(),
            MAX_QUANTITY.into(),
        ];
        (sql, values)
    }

    /// The error of a write that wrote nothing, read now; `Ok` when its reason is gone.
    async fn refusal(&self, db: &DatabaseConnection) -> AppResult<()> {
        require_customer(db, self.actor, self.customer).await?;
        let product = active_product(db, self.actor, self.product).await?;
        let held: Option<i32> = cart_items::Entity::find()
            .select_only()
            .column(cart_items::Column::Quantity)
            .filter(cart_items::Column::TenantId.eq(self.actor.tenant.as_str()))
            .filter(cart_items::Column::CustomerId.eq(self.customer.get()))
            .filter(cart_items::Column::ProductId.eq(product.id))
            .into_tuple()
            .one(db)
            .await?;
        check_line(&product, self.quantity.after(held.unwrap_or(0)))
    }
}
