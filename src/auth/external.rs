//! Tokens from an external identity provider (OIDC: Auth0, Keycloak, Cognito, …):
//! asymmetric signatures checked against the provider's published keys, the issuer
//! and audience required, and the claims mapped to a `Principal`.
use super::Principal;
use super::claims::ClaimMapping;
use super::jwks::KeySet;
use crate::error::{AppError, AppResult};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Clock skew allowed between the provider and this server (`exp`, `nbf`).
const LEEWAY_SECS: u64 = 30;

pub struct ExternalIssuer {
    pub keys: Arc<KeySet>,
    pub issuer: String,
    pub audience: Vec<String>,
    pub claims: ClaimMapping,
}

impl ExternalIssuer {
    /// The provider's verifier; its keys are fetched in the background, so a provider
    /// that is down delays nothing (its tokens are refused until the keys arrive).
    pub fn start(provider: crate::config::Provider) -> anyhow::Result<Arc<Self>> {
        let keys = KeySet::new(provider.keys)?;
        let first = Arc::clone(&keys);
        tokio::spawn(async move { first.prime().await });
        Ok(Arc::new(Self {
            keys,
            issuer: provider.issuer,
            audience: provider.audience,
            claims: provider.claims,
        }))
    }

    /// Verifies `token`, whose header (already decoded) names an asymmetric algorithm.
    pub async fn verify(&self, token: &str, header: &Header) -> AppResult<Principal> {
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| refused("the token names no signing key (kid)"))?;
        let key = self.keys.key(kid).await.ok_or_else(|| {
            refused("the token is signed with a key the identity provider does not publish")
        })?;
        // The key decides which algorithms it verifies, never the token alone.
        if !key.algorithms.contains(&header.alg) {
            return Err(refused("the token's algorithm does not match its key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|err| {
                AppError::Unauthenticated(
                    match err.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::InvalidIssuer => "token refused: wrong issuer",
                        ErrorKind::InvalidAudience => "token refused: wrong audience",
                        ErrorKind::ImmatureSignature => "token not valid yet",
                        _ => "invalid token",
                    }
                    .to_owned(),
                )
            })?;
        self.claims.principal(&data.claims)
    }
}

fn refused(why: &str) -> AppError {
    AppError::Unauthenticated(format!("token refused: {why}"))
}
