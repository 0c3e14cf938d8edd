//! SeaORM entities: storage shapes, never exposed as GraphQL types.
pub mod cart_items;
pub mod carts;
pub mod categories;
pub mod customers;
pub mod products;
pub mod tenants;
