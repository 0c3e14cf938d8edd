//! Value types that parse, not validate: once a value exists it is valid, so services
//! never see a negative quantity or a price with three decimals.
mod cart_token;
mod ids;
mod money;
mod password;
mod quantity;
mod text;

pub use cart_token::CartToken;
pub use ids::{EntityId, TenantId};
pub use money::Money;
pub use password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Password};
pub use quantity::{MAX_QUANTITY, Quantity, Stock};
pub use text::{CategoryName, Email, PersonName, ProductName, Sku, Slug, description, plain_text};

/// Why a value was refused; becomes `BAD_USER_INPUT` at the boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}
