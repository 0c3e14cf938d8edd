//! The domain's parsers of client input: the first byte picks one (money from text or
//! from a raw decimal, quantities, ids, text, cursors), the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use shopgraph::domain::{
    CategoryName, Email, EntityId, Money, PersonName, ProductName, Quantity, Sku, Slug, Stock,
    TenantId, description, plain_text,
};
use shopgraph::services::{Cursor, PageRequest};
use std::str::FromStr;

/// The largest price accepted, in cents (1 000 000 000.00).
const MAX_CENTS: i64 = 100_000_000_000;
/// The largest page (`first`).
const MAX_PAGE_SIZE: i32 = 100;

fn money(value: Decimal) {
    let parsed = Money::parse("price", value);
    let normalized = value.normalize();
    let acceptable = !(value.is_sign_negative() && !value.is_zero())
        && normalized.scale() <= 2
        && normalized <= Decimal::from(MAX_CENTS / 100);
    match parsed {
        Ok(m) => {
            assert!(acceptable, "{value} accepted");
            assert!(
                (0..=MAX_CENTS).contains(&m.cents()),
                "{value} -> {}",
                m.cents()
            );
            // Exact: no cent is lost or invented, and the amount round-trips.
            assert_eq!(m.to_decimal(), value, "{value}");
            assert_eq!(Money::parse("price", m.to_decimal()), Ok(m));
            assert_eq!(Money::from_cents(m.cents()), m);
        }
        Err(_) => assert!(!acceptable, "{value} refused"),
    }
}

fn i32_of(data: &[u8]) -> i32 {
    let mut bytes = [0u8; 4];
    for (b, d) in bytes.iter_mut().zip(data) {
        *b = *d;
    }
    i32::from_le_bytes(bytes)
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    i32_of(data.get(at..).unwrap_or_default()) as u32
}

/// A text value: trimmed, non-empty, within its length, free of control characters,
/// and parsing it again gives itself.
fn text<T: PartialEq + std::fmt::Debug>(
    parsed: Result<T, shopgraph::domain::InvalidInput>,
    value: impl Fn(&T) -> String,
    again: impl Fn(&str) -> Result<T, shopgraph::domain::InvalidInput>,
    max: usize,
) {
    if let Ok(parsed) = parsed {
        let s = value(&parsed);
        assert!(!s.is_empty() && s.trim() == s, "{s:?}");
        assert!(s.chars().count() <= max, "{} > {max}", s.chars().count());
        assert!(!s.chars().any(char::is_control), "{s:?}");
        assert_eq!(again(&s).ok().as_ref(), Some(&parsed), "{s:?}");
    }
}

fn cursor(input: &str) {
    if let Ok(cursor) = Cursor::decode(input) {
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor.clone()));
        if let Ok(key) = cursor.key_as_i64() {
            assert_eq!(Ok(key), cursor.key.parse::<i64>());
        }
    }
    let built = Cursor::new(input, i64::from(i32_of(input.as_bytes())));
    assert_eq!(Cursor::decode(&built.encode()).ok(), Some(built));
    let first = i32_of(input.as_bytes());
    for first in [first, first & 0x7f] {
        if let Ok(page) = PageRequest::parse(first, Some(input)) {
            assert!((0..=MAX_PAGE_SIZE).contains(&first));
            assert_eq!(i64::try_from(page.first).ok(), Some(i64::from(first)));
            assert!(page.after.is_some());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let input = String::from_utf8_lossy(rest);
    let input = input.as_ref();
    match which % 6 {
        // Money from text, as the `Decimal` scalar reads a string or a number.
        0 => {
            if let Ok(value) = Decimal::from_str(input) {
                money(value);
            }
            if let Ok(value) = Decimal::from_scientific(input) {
                money(value);
            }
            if let Ok(number) = input.parse::<f64>()
                && let Ok(value) = Decimal::try_from(number)
            {
                money(value);
            }
        }
        // Money from any decimal: 96 bits, a sign and a scale.
        1 => {
            let scale = rest.get(12).map_or(0, |s| u32::from(*s & 0x7f) % 29);
            let negative = rest.get(12).is_some_and(|s| s & 0x80 != 0);
            money(Decimal::from_parts(
                u32_at(rest, 0),
                u32_at(rest, 4),
                u32_at(rest, 8),
                negative,
                scale,
            ));
        }
        2 => {
            let raw = i32_of(rest);
            let quantity = Quantity::parse("quantity", raw).map(Quantity::get);
            assert_eq!(quantity.ok(), (1..=10_000).contains(&raw).then_some(raw));
            let stock = Stock::parse(raw).map(Stock::get);
            assert_eq!(
                stock.ok(),
                (0..=1_000_000_000).contains(&raw).then_some(raw)
            );
        }
        3 => {
            if let Ok(id) = EntityId::parse("id", input) {
                assert!(id.get() > 0);
                assert_eq!(input.trim().parse::<i64>().ok(), Some(id.get()));
                assert_eq!(EntityId::parse("id", &id.to_string()).ok(), Some(id));
            }
            if let Ok(tenant) = TenantId::parse(input) {
                assert_eq!(tenant.as_str(), input);
                assert!((1..=64).contains(&input.len()));
                assert!(!input.contains(':'));
            }
        }
        4 => {
            let name = |s: &str| ProductName::parse(s);
            text(name(input), |v| v.clone().into_inner(), name, 200);
            let person = |s: &str| PersonName::parse(s);
            text(person(input), |v| v.clone().into_inner(), person, 200);
            let category = |s: &str| CategoryName::parse(s);
            text(category(input), |v| v.clone().into_inner(), category, 120);
            text(
                Sku::parse(input),
                |v| v.clone().into_inner(),
                Sku::parse,
                64,
            );
            text(
                Slug::parse(input),
                |v| v.clone().into_inner(),
                Slug::parse,
                120,
            );
            text(
                Slug::from_name(input),
                |v| v.clone().into_inner(),
                Slug::parse,
                120,
            );
            text(
                Email::parse(input),
                |v| v.clone().into_inner(),
                Email::parse,
                254,
            );
            if let Ok(Some(d)) = description(Some(input)) {
                assert!(!d.is_empty() && d.trim() == d && d.chars().count() <= 5_000);
                assert!(plain_text("description", &d, true).is_ok());
                assert_eq!(description(Some(&d)).ok(), Some(Some(d.clone())));
            }
            if plain_text("text", input, false).is_ok() {
                assert!(!input.chars().any(char::is_control));
            }
        }
        _ => cursor(input),
    }
});
