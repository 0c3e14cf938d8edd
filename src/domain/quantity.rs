use super::InvalidInput;

/// How many units a cart line or order line holds: 1 to 10 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i32);

pub const MAX_QUANTITY: i32 = 10_000;

impl Quantity {
    pub fn parse(field: &'static str, raw: i32) -> Result<Self, InvalidInput> {
        if raw <= 0 {
            Err(InvalidInput::new(field, "must be at least 1"))
        } else if raw > MAX_QUANTITY {
            Err(InvalidInput::new(
                field,
                format!("must be at most {MAX_QUANTITY}"),
            ))
        } else {
            Ok(Self(raw))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_negative_and_huge_are_refused() {
        assert!(Quantity::parse("quantity", 0).is_err());
        assert!(Quantity::parse("quantity", -1).is_err());
        assert!(Quantity::parse("quantity", MAX_QUANTITY + 1).is_err());
        assert_eq!(Quantity::parse("quantity", 3).map(Quantity::get), Ok(3));
    }
}

/// Units on hand: 0 to 1 000 000 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock(i32);

impl Stock {
    pub fn parse(raw: i32) -> Result<Self, InvalidInput> {
        if raw < 0 {
            Err(InvalidInput::new("stock", "must not be negative"))
        } else if raw > 1_000_000_000 {
            Err(InvalidInput::new("stock", "must be at most 1000000000"))
        } else {
            Ok(Self(raw))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}
