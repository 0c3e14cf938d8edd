//! A guest cart's token: 32 bytes from the operating system's random source, written
//! as `gct_` and 43 base64url characters. The database keeps only its SHA-256.
use super::InvalidInput;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "gct_";
const RANDOM_BYTES: usize = 32;
/// 32 bytes in base64url without padding.
const ENCODED_LEN: usize = 43;

/// A token of the right shape (whether a cart has it is for the database to say).
#[derive(Clone, PartialEq, Eq)]
pub struct CartToken(String);

impl std::fmt::Debug for CartToken {
    // A token is a credential: logs show only that there was one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CartToken(…)")
    }
}

impl CartToken {
    /// A new token; fails only when the OS has no randomness to give.
    pub fn generate() -> Result<Self, rand::rand_core::OsError> {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
        Ok(Self(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// The `X-Cart-Token` header's value.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let raw = raw.trim();
        let well_formed = raw.strip_prefix(PREFIX).is_some_and(|body| {
            body.len() == ENCODED_LEN
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidInput::new(
                "X-Cart-Token",
                "not a cart token (send the cartToken addToCart returned)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks tokens up by.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = CartToken::generate().unwrap_or_else(|e| panic!("{e}"));
        let b = CartToken::generate().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, b);
        assert_eq!(CartToken::parse(a.as_str()).ok(), Some(a.clone()));
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for raw in [
            "",
            "gct_",
            "gct_short",
            "abc",
            &format!("gct_{}", "*".repeat(43)),
        ] {
            assert!(CartToken::parse(raw).is_err(), "{raw}");
        }
    }
}
