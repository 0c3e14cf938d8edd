//! The tag vocabulary: what a cached result depends on, and what a mutation changes.
//! A cached value carries the tags of everything it embeds; a mutation invalidates the
//! tags of what it changed.
use crate::domain::EntityId;

/// One product's fields (its price, stock, name…).
pub fn product(id: EntityId) -> String {
    format!("product:{id}")
}

/// Which products a list holds and in which order.
pub const PRODUCTS: &str = "products";

/// One product's stock (and `updatedAt`, which a stock move sets): the only part of a
/// product a checkout changes, so entries that show its name or price stay cached
/// through checkouts. An entry showing it also carries `product(id)` (every product
/// value records that), so a product's own mutations need not name this tag.
pub fn stock(id: EntityId) -> String {
    format!("stock:{id}")
}

/// Which products a list filtered by stock (`inStock`) holds.
pub const STOCK_LISTS: &str = "products:stock";

/// The category list and every category's fields.
pub const CATEGORIES: &str = "categories";

/// One customer's cart lines.
pub fn cart(customer: EntityId) -> String {
    format!("cart:{customer}")
}

/// One customer's own fields.
pub fn customer(id: EntityId) -> String {
    format!("customer:{id}")
}

/// Which customers exist.
pub const CUSTOMERS: &str = "customers";

/// Statistics built from orders (top products, sales and customer stats).
pub const STATS: &str = "stats";
