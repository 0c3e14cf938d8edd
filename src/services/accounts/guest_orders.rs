//! Orders placed as a guest with an e-mail become the customer's who signs up with it.
//!
//! The shop sends no e-mail, so sign-up cannot prove the address is the shopper's:
//! whoever signs up first with an address sees the guest orders placed with it. What
//! it can never do is reach a real customer: a guest checkout with a real customer's
//! e-mail stays on its guest row (that customer already exists, so nobody signs up
//! with the address again), and guest rows hold no password.
use crate::checkout::model::SagaStatus;
use crate::db::entities::{customers, guest_carts, orders, sagas};
use crate::domain::{Email, EntityId, TenantId};
use crate::error::AppResult;
use crate::services::tags;
use sea_orm::sea_query::{Expr, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

/// Guest rows of the tenant with this e-mail.
fn guests_with(tenant: &TenantId, email: &Email) -> SelectStatement {
    Query::select()
        .column(customers::Column::Id)
        .from(customers::Entity)
        .and_where(customers::Column::TenantId.eq(tenant.as_str()))
        .and_where(customers::Column::Guest.eq(true))
        .and_where(customers::Column::Email.eq(email.as_str()))
        .to_owned()
}

/// Moves the orders and sagas of guest rows with `email` to `customer`, and drops
/// those guest rows that no guest cart still needs. The tags it makes stale.
pub(super) async fn attach(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    email: &Email,
    customer: EntityId,
) -> AppResult<Vec<String>> {
    let moved = orders::Entity::update_many()
        .col_expr(orders::Column::CustomerId, Expr::value(customer.get()))
        .filter(orders::Column::TenantId.eq(tenant.as_str()))
        .filter(orders::Column::CustomerId.in_subquery(guests_with(tenant, email)))
        .exec(conn)
        .await?;
    // A saga still running stays with its guest (its steps act on the guest's cart).
    let finished = [
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Failed,
    ]
    .map(SagaStatus::as_str);
    sagas::Entity::update_many()
        .col_expr(sagas::Column::CustomerId, Expr::value(customer.get()))
        .filter(sagas::Column::TenantId.eq(tenant.as_str()))
        .filter(sagas::Column::Status.is_in(finished))
        .filter(sagas::Column::CustomerId.in_subquery(guests_with(tenant, email)))
        .exec(conn)
        .await?;
    let named_by = |column: SelectStatement| customers::Column::Id.not_in_subquery(column);
    customers::Entity::delete_many()
        .filter(customers::Column::Id.in_subquery(guests_with(tenant, email)))
        .filter(named_by(
            Query::select()
                .column(guest_carts::Column::CustomerId)
                .from(guest_carts::Entity)
                .and_where(guest_carts::Column::TenantId.eq(tenant.as_str()))
                .to_owned(),
        ))
        .filter(named_by(
            Query::select()
                .column(orders::Column::CustomerId)
                .from(orders::Entity)
                .and_where(orders::Column::TenantId.eq(tenant.as_str()))
                .to_owned(),
        ))
        .filter(named_by(
            Query::select()
                .column(sagas::Column::CustomerId)
                .from(sagas::Entity)
                .and_where(sagas::Column::TenantId.eq(tenant.as_str()))
                .to_owned(),
        ))
        .exec(conn)
        .await?;
    Ok(if moved.rows_affected > 0 {
        // Customer statistics count orders per customer.
        vec![tags::STATS.to_owned(), tags::customer(customer)]
    } else {
        Vec::new()
    })
}
