use super::InvalidInput;
use rust_decimal::Decimal;

/// An exact, non-negative amount with at most two decimals, stored as integer cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Prices above this are refused as input; it keeps every sum of line totals far
/// from overflowing an `i64` of cents.
const MAX_CENTS: i64 = 100_000_000_000; // 1 000 000 000.00

impl Money {
    pub fn parse(field: &'static str, value: Decimal) -> Result<Self, InvalidInput> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(InvalidInput::new(field, "must not be negative"));
        }
        let normalized = value.normalize();
        if normalized.scale() > 2 {
            return Err(InvalidInput::new(field, "must have at most 2 decimals"));
        }
        // Checked: a Decimal near its maximum (79 228 162 514 264 337 593 543 950 335)
        // times 100 overflows, and input must never panic.
        let cents = normalized
            .checked_mul(Decimal::ONE_HUNDRED)
            .map(|c| c.trunc().to_string())
            .and_then(|c| c.parse::<i64>().ok())
            .ok_or_else(|| InvalidInput::new(field, "is too large"))?;
        if cents > MAX_CENTS {
            return Err(InvalidInput::new(field, "is too large"));
        }
        Ok(Self(cents))
    }

    pub fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    pub fn times(self, quantity: i32) -> Self {
        Self(self.0.saturating_mul(i64::from(quantity)))
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|m| m.0).fold(0i64, i64::saturating_add))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    #[test]
    fn parses_exact_cents_and_prints_two_decimals() {
        let m = Money::parse("price", dec("19.99")).map(Money::cents);
        assert_eq!(m, Ok(1999));
        assert_eq!(Money::from_cents(1999).to_decimal().to_string(), "19.99");
        assert_eq!(Money::from_cents(500).to_decimal().to_string(), "5.00");
        assert_eq!(
            Money::parse("price", dec("7.50")).map(Money::cents),
            Ok(750)
        );
    }

    #[test]
    fn refuses_more_than_two_decimals_and_negatives() {
        assert!(Money::parse("price", dec("1.999")).is_err());
        assert!(Money::parse("price", dec("-1")).is_err());
        assert!(Money::parse("price", dec("99999999999")).is_err());
    }

    #[test]
    fn the_largest_decimals_are_refused_not_panicked_on() {
        for huge in [
            "79228162514264337593543950335",
            "1e28",
            "-79228162514264337593543950335",
        ] {
            let value = Decimal::from_str(huge)
                .or_else(|_| Decimal::from_scientific(huge))
                .unwrap_or(Decimal::MAX);
            assert!(Money::parse("price", value).is_err(), "{huge}");
        }
        assert!(Money::parse("price", Decimal::MAX).is_err());
    }
}
