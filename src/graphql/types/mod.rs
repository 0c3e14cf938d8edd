//! GraphQL output types: thin wrappers over storage models and service values.
mod cart;
mod catalog;
mod customer;
mod order;

pub use cart::Cart;
pub use catalog::{Category, Product, ProductConnection, product_connection};
pub use customer::{Customer, CustomerConnection, customer_connection};
pub use order::{
    Order, OrderConnection, OrderCount, Saga, SagaConnection, order_connection, saga_connection,
};

use crate::domain::EntityId;
use async_graphql::ID;

pub fn id(value: i64) -> ID {
    ID(value.to_string())
}

pub fn parse_id(field: &'static str, id: &ID) -> async_graphql::Result<EntityId> {
    use crate::error::GqlResultExt;
    EntityId::parse(field, id.as_str())
        .map_err(Into::into)
        .gql()
}

pub fn parse_opt_id(
    field: &'static str,
    id: Option<&ID>,
) -> async_graphql::Result<Option<EntityId>> {
    id.map(|id| parse_id(field, id)).transpose()
}

pub fn db_error(err: sea_orm::DbErr) -> async_graphql::Error {
    crate::error::AppError::from(err).to_graphql()
}
