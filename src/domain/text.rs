use super::InvalidInput;

/// The one text policy, for both databases: no NUL or other control characters
/// (PostgreSQL refuses NUL in text; SQLite would store it), except newline and tab
/// where the field is multi-line.
pub fn plain_text(field: &'static str, raw: &str, multiline: bool) -> Result<(), InvalidInput> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\t' | '\r');
    match raw.chars().find(|&c| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(InvalidInput::new(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        )),
    }
}

fn bounded(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidInput> {
    bounded_text(field, raw, max, false)
}

fn bounded_text(
    field: &'static str,
    raw: &str,
    max: usize,
    multiline: bool,
) -> Result<String, InvalidInput> {
    plain_text(field, raw, multiline)?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                bounded($field, raw, $max).map(Self)
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }
    };
}

text_type!(
    /// A product's display name.
    ProductName, "name", 200
);
text_type!(
    /// A customer's name.
    PersonName, "name", 200
);
text_type!(
    /// A category's display name.
    CategoryName, "name", 120
);

/// A stock-keeping unit: letters, digits, `-`, `_` and `.`, up to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let value = bounded("sku", raw, 64)?;
        if value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            Ok(Self(value))
        } else {
            Err(InvalidInput::new(
                "sku",
                "may hold only letters, digits, '-', '_' and '.'",
            ))
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A URL slug: lowercase letters, digits and single dashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let value = bounded("slug", raw, 120)?;
        let ok = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok && !value.starts_with('-') && !value.ends_with('-') {
            Ok(Self(value))
        } else {
            Err(InvalidInput::new(
                "slug",
                "may hold only a-z, 0-9 and inner '-'",
            ))
        }
    }

    /// Derives a slug from a display name ("Home & Garden" -> "home-garden").
    pub fn from_name(name: &str) -> Result<Self, InvalidInput> {
        let mut slug = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('-') && !slug.is_empty() {
                slug.push('-');
            }
        }
        Self::parse(slug.trim_end_matches('-'))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A normalized (trimmed, lowercased) e-mail address with one `@` and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        // Lowercased before it is measured: lowercasing may lengthen it ('İ' becomes two
        // characters), and the column holds 254.
        let value = bounded("email", &raw.to_lowercase(), 254)?;
        let valid = match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !value.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if valid {
            Ok(Self(value))
        } else {
            Err(InvalidInput::new("email", "is not a valid e-mail address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An optional free-text description: empty means none, at most 5 000 characters.
pub fn description(raw: Option<&str>) -> Result<Option<String>, InvalidInput> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => bounded_text("description", text, 5_000, true).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            ProductName::parse("  Mug ").map(ProductName::into_inner),
            Ok("Mug".into())
        );
        assert!(ProductName::parse("   ").is_err());
        assert!(ProductName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn slugs_derive_from_names() {
        assert_eq!(
            Slug::from_name("Home & Garden!").map(Slug::into_inner),
            Ok("home-garden".into())
        );
        assert!(Slug::parse("Bad Slug").is_err());
    }

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            Email::parse(" Ana@Example.COM ").map(Email::into_inner),
            Ok("ana@example.com".into())
        );
        assert!(Email::parse("no-at-sign").is_err());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("a b@c.d").is_err());
    }

    #[test]
    fn control_characters_are_refused_except_line_breaks_in_descriptions() {
        for bad in ["a\0b", "a\u{7}b", "line\nbreak", "tab\there", "a\u{9b}b"] {
            let refused = ProductName::parse(bad);
            assert!(
                refused.as_ref().is_err_and(|e| e.field == "name"),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(description(Some("two\nlines\tand a tab")).is_ok());
        assert!(description(Some("nul\0")).is_err());
        assert!(Email::parse("a\0@b.co").is_err());
    }

    #[test]
    fn emails_fit_their_column_once_lowercased() {
        // Found by fuzzing (domain_parsers): 254 characters, 255 once lowercased.
        let raw = format!("{}@example.com", "\u{130}".repeat(242));
        assert_eq!(raw.chars().count(), 254);
        assert!(Email::parse(&raw).is_err());
        let fits = format!("{}@example.com", "\u{130}".repeat(121));
        let email = Email::parse(&fits).map(Email::into_inner);
        assert!(email.is_ok_and(|e| e.chars().count() <= 254));
    }

    #[test]
    fn skus_refuse_spaces() {
        assert!(Sku::parse("MUG-001").is_ok());
        assert!(Sku::parse("MUG 001").is_err());
    }
}
