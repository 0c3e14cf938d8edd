use super::InvalidInput;

/// Fewest characters a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most bytes a password may have: hashing cost must not grow with what a client sends.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password as the customer typed it (never trimmed: spaces belong to it). Its
/// `Debug` hides it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password being chosen: at least `MIN_PASSWORD_CHARS` characters.
    pub fn new_choice(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        let password = Self::attempt(field, raw)?;
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(InvalidInput::new(
                field,
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(password)
    }

    /// A password offered to sign in: only its size is bounded (a short one is simply
    /// wrong, and saying more would describe the rules of the stored one).
    pub fn attempt(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(InvalidInput::new(
                field,
                format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_have_a_length_between_8_characters_and_1024_bytes() {
        assert!(Password::new_choice("password", "seven77").is_err());
        assert!(Password::new_choice("password", "eight888").is_ok());
        // Eight characters, more bytes: characters are what a person counts.
        assert!(Password::new_choice("password", "éééééééé").is_ok());
        assert!(Password::new_choice("password", &"x".repeat(1024)).is_ok());
        let long = Password::new_choice("password", &"x".repeat(1025));
        assert!(long.is_err_and(|e| e.reason.contains("1024 bytes")));
    }

    #[test]
    fn sign_in_attempts_are_only_bounded_in_size_and_never_printed() {
        assert!(Password::attempt("password", "").is_ok());
        assert!(Password::attempt("password", &"x".repeat(1025)).is_err());
        let shown = format!("{:?}", Password::attempt("password", "secret"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
