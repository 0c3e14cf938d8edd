//! SeaORM entities: storage shapes, never exposed as GraphQL types.
pub mod cache_outbox;
pub mod cart_items;
pub mod carts;
pub mod categories;
pub mod customer_passwords;
pub mod customers;
pub mod guest_carts;
pub mod idempotency_records;
pub mod order_items;
pub mod orders;
pub mod payments;
pub mod products;
pub mod refresh_tokens;
pub mod saga_steps;
pub mod sagas;
pub mod stock_movements;
pub mod tenants;
