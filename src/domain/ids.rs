use super::InvalidInput;
use std::fmt;

/// A database id as clients see it: a positive integer carried in a GraphQL `ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(i64);

impl EntityId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        match raw.trim().parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id)),
            _ => Err(InvalidInput::new(
                field,
                format!("'{}' is not a valid id", truncate(raw)),
            )),
        }
    }

    pub fn from_db(id: i64) -> Self {
        Self(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant slug: lowercase letters, digits, `-` and `_`, 1 to 64 characters. It is part
/// of every cache key, so anything that could break a key's structure is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidInput::new(
                "tenant",
                "must be 1-64 characters of a-z, 0-9, '-' or '_'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn truncate(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive_integers() {
        assert_eq!(EntityId::parse("id", "42").map(EntityId::get), Ok(42));
        assert!(EntityId::parse("id", "0").is_err());
        assert!(EntityId::parse("id", "-3").is_err());
        assert!(EntityId::parse("id", "abc").is_err());
    }

    #[test]
    fn tenants_cannot_contain_key_separators() {
        assert!(TenantId::parse("acme-shop_2").is_ok());
        assert!(TenantId::parse("a:b").is_err());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("UPPER").is_err());
    }
}
