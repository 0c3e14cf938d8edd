//! Password hashing: Argon2id (RFC 9106) with OWASP's first recommended parameters,
//! stored as a PHC string. Hashing is CPU work of tens of milliseconds, so it runs on
//! the blocking thread pool, and at most `permits` hashes run at once: one core fewer
//! than the machine has (at least one), so a flood of sign-ins always leaves a core
//! to every other request; the rest wait their turn.
use crate::domain::Password;
use crate::error::{AppError, AppResult};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Memory per hash, KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over that memory.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password with the same parameters: an unknown e-mail is
    /// verified against it, so it costs what a wrong password costs.
    dummy: Arc<str>,
}

impl Passwords {
    /// Computes the dummy hash once (one hash's time).
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
            .map_err(|err| anyhow::anyhow!("Argon2 parameters: {err}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let dummy = hash_with(&argon, &rand::random::<[u8; 32]>())
            .map_err(|err| anyhow::anyhow!("Argon2 dummy hash: {err}"))?;
        Ok(Self {
            argon,
            permits: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
            dummy: dummy.into(),
        })
    }

    /// The PHC string to store for `password`.
    pub async fn hash(&self, password: &Password) -> AppResult<String> {
        let argon = self.argon.clone();
        let password = password.clone();
        self.off_thread(move || hash_with(&argon, password.as_bytes()))
            .await?
            .map_err(|err| AppError::internal("hash a password", anyhow::anyhow!("{err}")))
    }

    /// Whether `password` matches `stored`; with no stored hash, the dummy is checked
    /// (and the answer is no) so that the time does not tell.
    pub async fn verify(&self, password: &Password, stored: Option<&str>) -> AppResult<bool> {
        let argon = self.argon.clone();
        let password = password.clone();
        let known = stored.is_some();
        let phc: Arc<str> = stored.map_or_else(|| self.dummy.clone(), Arc::from);
        let matches = self
            .off_thread(move || match PasswordHash::new(&phc) {
                Ok(hash) => argon.verify_password(password.as_bytes(), &hash).is_ok(),
                Err(err) => {
                    tracing::error!(error = %err, "a stored password hash does not parse");
                    false
                }
            })
            .await?;
        Ok(known && matches)
    }

    async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> AppResult<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|err| AppError::internal("wait for a hashing slot", err))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|err| AppError::internal("password hashing task", err))
    }
}

fn hash_with(argon: &Argon2<'_>, password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Ok(argon.hash_password(password, &salt)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(raw: &str) -> Password {
        Password::attempt("password", raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_names_its_parameters() {
        let passwords = Passwords::new().unwrap_or_else(|e| panic!("{e}"));
        let stored = passwords.hash(&password("correct horse")).await;
        let stored = stored.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        let right = passwords
            .verify(&password("correct horse"), Some(&stored))
            .await;
        let wrong = passwords
            .verify(&password("correct horsE"), Some(&stored))
            .await;
        assert!(matches!(right, Ok(true)));
        assert!(matches!(wrong, Ok(false)));
        assert!(matches!(
            passwords.verify(&password("x"), None).await,
            Ok(false)
        ));
    }
}
