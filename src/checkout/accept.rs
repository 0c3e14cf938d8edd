//! Accepting work: validate, write the saga row and its steps atomically (the saga row
//! *is* the queue entry), wake a worker, return at once.
use super::intake::{NewSaga, Written};
use super::model::{Line, Payload, PaymentMethod, SagaKind, SagaStatus, StepStatus};
use super::worker::Engine;
use crate::auth::Actor;
use crate::db::entities::{cart_items, customers, orders, products, saga_steps, sagas};
use crate::db::in_list::padded;
use crate::domain::{Email, EntityId, MAX_QUANTITY, Quantity};
use crate::error::{AppError, AppResult};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    SqlErr, TransactionTrait,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Request {
    pub customer: Option<EntityId>,
    pub payment_method: PaymentMethod,
    pub payment_token: Option<String>,
    pub idempotency_key: Option<String>,
    /// A guest's e-mail: required for a guest checkout (by cart token), refused
    /// otherwise.
    pub guest_email: Option<Email>,
}

fn check_text(field: &'static str, value: Option<&str>) -> AppResult<()> {
    if let Some(value) = value {
        crate::domain::plain_text(field, value, false)?;
    }
    match value {
        Some(v) if v.is_empty() || v.len() > 200 => {
            Err(AppError::BadInput(format!("{field}: 1 to 200 characters")))
        }
        _ => Ok(()),
    }
}

/// Checks out the customer's cart.
#[tracing::instrument(skip(engine, actor, request), fields(tenant = %actor.tenant))]
pub async fn checkout(engine: &Engine, actor: &Actor, request: Request) -> AppResult<sagas::Model> {
    let customer = crate::services::cart::owner(&engine.db, actor, request.customer).await?;
    let guest_email = match (&actor.principal, &request.guest_email) {
        (None, Some(email)) => Some(email.clone()),
        (None, None) => {
            return Err(AppError::BadInput(
                "email: a guest checkout needs the shopper's e-mail".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(AppError::BadInput(
                "email: only a guest checkout takes an e-mail (a customer's is on file)".into(),
            ));
        }
        (Some(_), None) => None,
    };
    let once = Once::new(
        "checkout",
        request.idempotency_key.as_deref(),
        &[&request.fingerprint()],
    )?;
    if let Some(existing) = once.earlier(&engine.db, actor, customer).await? {
        return Ok(existing);
    }
    require_customer(&engine.db, actor, customer).await?;
    let items = cart_items::Entity::find()
        .filter(cart_items::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(cart_items::Column::CustomerId.eq(customer.get()))
        .all(&engine.db)
        .await?;
    if items.is_empty() {
        return Err(AppError::BadInput("the cart is empty".into()));
    }
    let wanted: Vec<(EntityId, i32)> = items
        .iter()
        .map(|i| (EntityId::from_db(i.product_id), i.quantity))
        .collect();
    let lines = priced_lines(&engine.db, actor, &wanted).await?;
    let saga = NewSagaOf {
        kind: SagaKind::Checkout,
        lines,
        clear_cart: true,
        cancels: None,
    };
    if let Some(email) = guest_email {
        record_guest_email(&engine.db, actor, customer, email).await?;
    }
    accept(engine, actor, customer, request, saga, once).await
}

/// The e-mail a guest checks out with goes on its guest row: the order is the
/// guest's, and a sign-up with that e-mail later takes it over.
async fn record_guest_email(
    db: &DatabaseConnection,
    actor: &Actor,
    guest: EntityId,
    email: Email,
) -> AppResult<()> {
    customers::Entity::update_many()
        .col_expr(
            customers::Column::Email,
            sea_orm::sea_query::Expr::value(email.into_inner()),
        )
        .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(customers::Column::Id.eq(guest.get()))
        .filter(customers::Column::Guest.eq(true))
        .exec(db)
        .await?;
    Ok(())
}

/// Places an order for explicit items (the cart is left alone).
#[tracing::instrument(skip(engine, actor, request, items), fields(tenant = %actor.tenant))]
pub async fn place_order(
    engine: &Engine,
    actor: &Actor,
    request: Request,
    items: Vec<(EntityId, Quantity)>,
) -> AppResult<sagas::Model> {
    let customer = actor.customer_scope(request.customer)?;
    let items_text: Vec<String> = items
        .iter()
        .map(|(product, quantity)| format!("{product}x{}", quantity.get()))
        .collect();
    let once = Once::new(
        "placeOrder",
        request.idempotency_key.as_deref(),
        &[&request.fingerprint(), &items_text.join(",")],
    )?;
    if let Some(existing) = once.earlier(&engine.db, actor, customer).await? {
        return Ok(existing);
    }
    if items.is_empty() || items.len() > 100 {
        return Err(AppError::BadInput("items: 1 to 100 lines".into()));
    }
    // The customer is checked where the saga is written (`accept`).
    let mut merged: BTreeMap<EntityId, i32> = BTreeMap::new();
    for (product, quantity) in items {
        *merged.entry(product).or_default() += quantity.get();
    }
    if merged.values().any(|&q| q > MAX_QUANTITY) {
        return Err(AppError::BadInput(format!(
            "quantity: at most {MAX_QUANTITY} units a product"
        )));
    }
    let wanted: Vec<(EntityId, i32)> = merged.into_iter().collect();
    let lines = priced_lines(&engine.db, actor, &wanted).await?;
    let saga = NewSagaOf {
        kind: SagaKind::Checkout,
        lines,
        clear_cart: false,
        cancels: None,
    };
    accept(engine, actor, customer, request, saga, once).await
}

/// Cancels a completed order: a CANCEL_ORDER saga that refunds and restocks. An order
/// has at most one cancellation (a unique index): asking again, with any key or none,
/// returns it.
#[tracing::instrument(skip(engine, actor), fields(tenant = %actor.tenant))]
pub async fn cancel_order(
    engine: &Engine,
    actor: &Actor,
    order: EntityId,
    idempotency_key: Option<String>,
) -> AppResult<sagas::Model> {
    let principal = actor.require_principal()?;
    let found = orders::Entity::find_by_id(order.get())
        .filter(orders::Column::TenantId.eq(actor.tenant.as_str()))
        .one(&engine.db)
        .await?
        .ok_or_else(|| AppError::not_found("order", order))?;
    let customer = EntityId::from_db(found.customer_id);
    // Another customer's order reads as missing: ids reveal nothing.
    if !principal.is_staff() && principal.customer_id() != Some(customer) {
        return Err(AppError::not_found("order", order));
    }
    let once = Once::new(
        "cancelOrder",
        idempotency_key.as_deref(),
        &[&order.to_string()],
    )?;
    if let Some(existing) = once.earlier(&engine.db, actor, customer).await? {
        return Ok(existing);
    }
    if let Some(existing) = cancellation_of(&engine.db, found.id).await? {
        return Ok(existing);
    }
    if found.status != super::model::OrderStatus::Completed.as_str() {
        return Err(AppError::Conflict(format!(
            "order {order} is {}; only completed orders can be cancelled",
            found.status
        )));
    }
    let checkout = sagas::Entity::find_by_id(found.saga_id)
        .one(&engine.db)
        .await?;
    let original: Option<Payload> = checkout.and_then(|s| serde_json::from_str(&s.payload).ok());
    let lines = original.map(|p| p.lines).unwrap_or_default();
    let request = Request {
        customer: Some(customer),
        payment_method: PaymentMethod::parse(&found.payment_method).unwrap_or(PaymentMethod::Card),
        payment_token: None,
        idempotency_key,
        guest_email: None,
    };
    let saga = NewSagaOf {
        kind: SagaKind::CancelOrder,
        lines,
        clear_cart: false,
        cancels: Some((found.id, found.saga_id)),
    };
    accept(engine, actor, customer, request, saga, once).await
}

async fn cancellation_of(db: &DatabaseConnection, order: i64) -> AppResult<Option<sagas::Model>> {
    Ok(sagas::Entity::find()
        .filter(sagas::Column::CancelsOrderId.eq(order))
        .one(db)
        .await?)
}

impl Request {
    /// What identifies the request for its idempotency key.
    fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}",
            self.customer.map(|c| c.to_string()).unwrap_or_default(),
            self.payment_method.as_str(),
            self.payment_token.as_deref().unwrap_or_default()
        )
    }
}

/// An idempotency key in its operation's namespace (`checkout:`, `placeOrder:`,
/// `cancelOrder:`), with the digest of the request it was first used for: the same key
/// with another request is a conflict, not a replay.
struct Once {
    key: Option<String>,
    request_hash: String,
}

impl Once {
    fn new(operation: &str, key: Option<&str>, request: &[&str]) -> AppResult<Self> {
        check_text("idempotencyKey", key)?;
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        for part in request {
            hasher.update([0]);
            hasher.update(part.as_bytes());
        }
        Ok(Self {
            key: key.map(|key| format!("{operation}:{key}")),
            request_hash: hex::encode(hasher.finalize()),
        })
    }

    /// The saga an earlier request with this key made, if it was the same request.
    async fn earlier(
        &self,
        db: &DatabaseConnection,
        actor: &Actor,
        customer: EntityId,
    ) -> AppResult<Option<sagas::Model>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let found = sagas::Entity::find()
            .filter(sagas::Column::TenantId.eq(actor.tenant.as_str()))
            .filter(sagas::Column::CustomerId.eq(customer.get()))
            .filter(sagas::Column::IdempotencyKey.eq(key.as_str()))
            .one(db)
            .await?;
        found.map(|saga| self.same_request(saga)).transpose()
    }

    fn same_request(&self, saga: sagas::Model) -> AppResult<sagas::Model> {
        match &saga.request_hash {
            Some(hash) if *hash != self.request_hash => Err(AppError::Conflict(
                "this idempotencyKey was already used for a different request".into(),
            )),
            _ => Ok(saga),
        }
    }
}

async fn require_customer(db: &DatabaseConnection, actor: &Actor, id: EntityId) -> AppResult<()> {
    customers::Entity::find_by_id(id.get())
        .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
        .one(db)
        .await?
        .map(|_| ())
        .ok_or_else(|| AppError::not_found("customer", id))
}

/// The lines at today's prices (the snapshot the order will keep). Unknown or
/// inactive products are refused; stock is checked when it is reserved.
async fn priced_lines(
    db: &DatabaseConnection,
    actor: &Actor,
    wanted: &[(EntityId, i32)],
) -> AppResult<Vec<Line>> {
    let found = products::Entity::find()
        .filter(products::Column::TenantId.eq(actor.tenant.as_str()))
        .filter(products::Column::Active.eq(true))
        .filter(products::Column::Id.is_in(padded(wanted.iter().map(|(id, _)| id.get()))))
        .all(db)
        .await?;
    wanted
        .iter()
        .map(|(id, quantity)| {
            let product = found
                .iter()
                .find(|p| p.id == id.get())
                .ok_or_else(|| AppError::not_found("product", id))?;
            if *quantity > product.stock {
                return Err(AppError::OutOfStock(format!(
                    "only {} of '{}' in stock, {} requested",
                    product.stock, product.sku, quantity
                )));
            }
            Ok(Line {
                product_id: product.id,
                quantity: *quantity,
                unit_price_cents: product.price_cents,
            })
        })
        .collect()
}

/// What kind of saga to accept, for what.
struct NewSagaOf {
    kind: SagaKind,
    lines: Vec<Line>,
    clear_cart: bool,
    /// For a cancellation: the order and its checkout saga.
    cancels: Option<(i64, i64)>,
}

async fn accept(
    engine: &Engine,
    actor: &Actor,
    customer: EntityId,
    request: Request,
    of: NewSagaOf,
    once: Once,
) -> AppResult<sagas::Model> {
    check_text("paymentToken", request.payment_token.as_deref())?;
    let payload = Payload {
        lines: of.lines,
        payment_method: request.payment_method,
        payment_token: request.payment_token,
        clear_cart: of.clear_cart,
        cancels_saga: of.cancels.map(|(_, saga)| saga),
        trace: crate::traces::current_traceparent(),
    };
    let payload = serde_json::to_string(&payload)
        .map_err(|e| AppError::internal("encode saga payload", e))?;
    let row = NewSaga {
        tenant: actor.tenant.as_str().to_owned(),
        kind: of.kind,
        customer: customer.get(),
        payload,
        idempotency_key: once.key.clone(),
        request_hash: once.request_hash.clone(),
        request_id: new_request_id(),
        cancels_order: of.cancels.map(|(order, _)| order),
    };
    // Cancellations are rare and carry their own unique index: no group commit.
    let inserted = match &engine.intake {
        Some(intake) if row.cancels_order.is_none() => intake.write(row.clone()).await,
        _ => insert_in_transaction(&engine.db, &row).await,
    };
    let saga = match inserted {
        Ok(Some(saga)) => saga,
        Ok(None) => {
            // Not written: the same key or the same order's cancellation got in first,
            // or the customer is not the tenant's.
            return match earlier_for(&engine.db, &row).await? {
                Some(saga) => once.same_request(saga),
                None => Err(AppError::not_found("customer", customer)),
            };
        }
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return match earlier_for(&engine.db, &row).await? {
                Some(saga) => once.same_request(saga),
                None => Err(AppError::Conflict(
                    "a request with this idempotency key is in progress".into(),
                )),
            };
        }
        Err(err) => return Err(err.into()),
    };
    crate::telemetry::saga_transition(SagaStatus::Pending.as_str());
    // Nobody can be subscribed to a saga that did not exist: no event, just a worker.
    engine.wake.notify_one();
    Ok(saga)
}

/// A request id unique across instances, in time order: new ids land at the right
/// edge of their unique index, as serial ids do, instead of on random pages (each of
/// which PostgreSQL would write whole to its log after a checkpoint).
fn new_request_id() -> String {
    format!(
        "{:013x}-{}",
        Utc::now().timestamp_millis(),
        hex::encode(rand::random::<[u8; 8]>())
    )
}

/// The saga that holds what `row` wanted: the same order's cancellation, or the same
/// idempotency key's saga.
async fn earlier_for(db: &DatabaseConnection, row: &NewSaga) -> AppResult<Option<sagas::Model>> {
    if let Some(order) = row.cancels_order
        && let Some(saga) = cancellation_of(db, order).await?
    {
        return Ok(Some(saga));
    }
    let Some(key) = &row.idempotency_key else {
        return Ok(None);
    };
    Ok(sagas::Entity::find()
        .filter(sagas::Column::TenantId.eq(row.tenant.as_str()))
        .filter(sagas::Column::CustomerId.eq(row.customer))
        .filter(sagas::Column::IdempotencyKey.eq(key.as_str()))
        .one(db)
        .await?)
}

/// Without the intake (SQLite): the customer check, then the saga and its steps in one
/// transaction.
async fn insert_in_transaction(db: &DatabaseConnection, row: &NewSaga) -> Written {
    let known = customers::Entity::find_by_id(row.customer)
        .filter(customers::Column::TenantId.eq(row.tenant.as_str()))
        .one(db)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    let now = Utc::now();
    let txn = db.begin().await?;
    let saga = sagas::ActiveModel {
        tenant_id: Set(row.tenant.to_owned()),
        kind: Set(row.kind.as_str().into()),
        status: Set(SagaStatus::Pending.as_str().into()),
        customer_id: Set(row.customer),
        payload: Set(row.payload.clone()),
        idempotency_key: Set(row.idempotency_key.clone()),
        request_hash: Set(Some(row.request_hash.clone())),
        request_id: Set(Some(row.request_id.clone())),
        cancels_order_id: Set(row.cancels_order),
        attempts: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    saga_steps::Entity::insert_many(row.kind.steps().iter().enumerate().map(|(position, step)| {
        saga_steps::ActiveModel {
            saga_id: Set(saga.id),
            position: Set(position as i32),
            name: Set(step.as_str().into()),
            status: Set(StepStatus::Pending.as_str().into()),
            attempts: Set(0),
            ..Default::default()
        }
    }))
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(Some(saga))
}
