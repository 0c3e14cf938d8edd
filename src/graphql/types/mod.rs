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

/// The GraphQL names of the types that declare their cache tags (`CacheTags`); the
/// field-policy test fails when a type with an `id` reachable from a cached field is not
/// among them.
#[cfg(test)]
pub fn tagged_types() -> Vec<String> {
    use crate::cache::CacheTags;
    use async_graphql::OutputType;
    fn name<T: CacheTags + OutputType>() -> String {
        T::type_name().into_owned()
    }
    vec![
        name::<Product>(),
        name::<ProductConnection>(),
        name::<Category>(),
        name::<Customer>(),
        name::<Cart>(),
        name::<cart::CartLine>(),
        name::<Order>(),
        name::<Saga>(),
        name::<OrderConnection>(),
        name::<SagaConnection>(),
    ]
}

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
