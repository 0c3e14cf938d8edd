//! Who is calling: JWTs become a `Principal` — our own HS256 tokens and, when an
//! identity provider is configured, its RS256/ES256 tokens; an `Actor` (tenant +
//! optional principal) is what every service receives and checks.
use crate::domain::{EntityId, TenantId};
use crate::error::{AppError, AppResult};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lru::LruCache;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Seconds a token's `exp` and `nbf` may be off by (clock skew between issuers).
const LEEWAY_SECS: i64 = 5;
/// Tokens whose verification is remembered (most recently used first kept).
const VERIFIED_CAPACITY: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(capacity) => capacity,
    None => NonZeroUsize::MIN,
};
/// Longer tokens are verified every time, so the remembered ones stay small.
const MAX_REMEMBERED_TOKEN: usize = 1024;

/// Claim paths and role names of external tokens.
pub mod claims;
/// Tokens of an external identity provider (OIDC).
pub mod external;
/// The provider's signing keys (JWKS), fetched, cached and refreshed within bounds.
pub mod jwks;

pub use external::ExternalIssuer;

/// Verifies every token a request may carry, choosing the verifier by the token's
/// `alg`: HS256 only ever with our secret, RS*/PS*/ES* only ever with a key the
/// provider publishes. A public key is never used as an HMAC secret (algorithm
/// confusion) and `none` is no algorithm at all.
#[derive(Clone)]
pub struct Authenticator {
    own: JwtKeys,
    external: Option<Arc<ExternalIssuer>>,
}

impl Authenticator {
    pub fn new(own: JwtKeys, external: Option<Arc<ExternalIssuer>>) -> Self {
        Self { own, external }
    }

    pub async fn verify(&self, token: &str) -> AppResult<Principal> {
        let invalid = || AppError::Unauthenticated("invalid token".into());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        match (header.alg, &self.external) {
            (Algorithm::HS256, _) => self.own.verify(token),
            (
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384,
                Some(external),
            ) => external.verify(token, &header).await,
            _ => Err(invalid()),
        }
    }

    /// Reads `Bearer <token>` from an `Authorization` value.
    pub async fn from_authorization(&self, value: &str) -> AppResult<Principal> {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AppError::Unauthenticated("expected 'Bearer <token>'".into()))?;
        self.verify(token.trim()).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Customer,
    Staff,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.to_ascii_uppercase().as_str() {
            "CUSTOMER" => Ok(Self::Customer),
            "STAFF" => Ok(Self::Staff),
            "ADMIN" => Ok(Self::Admin),
            _ => Err(format!("unknown role '{raw}' (CUSTOMER, STAFF or ADMIN)")),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    role: Role,
    exp: i64,
    iat: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub subject: String,
    pub role: Role,
    /// When the token stops being valid (Unix seconds): a WebSocket opened with it is
    /// closed then.
    pub expires_at: i64,
}

impl Principal {
    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Staff | Role::Admin)
    }

    /// The customer this principal is, when it is a customer.
    pub fn customer_id(&self) -> Option<EntityId> {
        match self.role {
            Role::Customer => EntityId::parse("sub", &self.subject).ok(),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens these keys verified, with what they said. Verifying is a pure function of
    /// the token and the secret except for the clock, so a token seen before is served
    /// from here after checking only its expiry: the HMAC, the base64 and the JSON of
    /// every authenticated request cost more than a lookup.
    verified: Arc<Mutex<LruCache<String, Principal>>>,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS.unsigned_abs();
        // A token issued for later (`nbf`) is not valid yet.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::new(Mutex::new(LruCache::new(VERIFIED_CAPACITY))),
        }
    }

    pub fn issue(
        &self,
        tenant: &TenantId,
        subject: &str,
        role: Role,
        ttl: chrono::Duration,
    ) -> anyhow::Result<String> {
        self.issue_until(tenant, subject, role, chrono::Utc::now() + ttl)
    }

    /// A token valid until `expires_at` (whole seconds, as `exp` holds them).
    pub fn issue_until(
        &self,
        tenant: &TenantId,
        subject: &str,
        role: Role,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: subject.to_owned(),
            tenant: tenant.as_str().to_owned(),
            role,
            iat: chrono::Utc::now().timestamp(),
            exp: expires_at.timestamp(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> AppResult<Principal> {
        let now = chrono::Utc::now().timestamp();
        if let Some(principal) = self.verified_before(token, now) {
            return Ok(principal);
        }
        let principal = self.verify_signed(token)?;
        if token.len() <= MAX_REMEMBERED_TOKEN
            && let Ok(mut verified) = self.verified.lock()
        {
            verified.put(token.to_owned(), principal.clone());
        }
        Ok(principal)
    }

    /// What `token` said when these keys verified it, if they did and it has not expired
    /// by `now` (it was valid then, so `nbf` is behind it). An expired one is forgotten
    /// and verified again, which refuses it as expired.
    fn verified_before(&self, token: &str, now: i64) -> Option<Principal> {
        let mut verified = self.verified.lock().ok()?;
        let principal = verified.get(token)?;
        if principal.expires_at >= now - LEEWAY_SECS {
            return Some(principal.clone());
        }
        verified.pop(token);
        None
    }

    fn verify_signed(&self, token: &str) -> AppResult<Principal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| {
                let reason = match err.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                    _ => "invalid token",
                };
                AppError::Unauthenticated(reason.to_owned())
            })?;
        let claims = data.claims;
        let tenant = TenantId::parse(&claims.tenant)
            .map_err(|_| AppError::Unauthenticated("invalid token tenant".into()))?;
        if claims.role == Role::Customer && EntityId::parse("sub", &claims.sub).is_err() {
            return Err(AppError::Unauthenticated(
                "a customer token's sub must be a customer id".into(),
            ));
        }
        Ok(Principal {
            tenant,
            subject: claims.sub,
            role: claims.role,
            expires_at: claims.exp,
        })
    }
}

/// The caller of one request: always a tenant, sometimes a principal.
#[derive(Debug, Clone)]
pub struct Actor {
    pub tenant: TenantId,
    pub principal: Option<Principal>,
    /// The `X-Cart-Token` an anonymous shopper sent, as sent: the cart services parse
    /// and look it up (`services::cart::guest`) only when a cart is asked for.
    pub cart_token: Option<String>,
}

impl Actor {
    pub fn anonymous(tenant: TenantId) -> Self {
        Self {
            tenant,
            principal: None,
            cart_token: None,
        }
    }

    pub fn authenticated(principal: Principal) -> Self {
        Self {
            tenant: principal.tenant.clone(),
            principal: Some(principal),
            cart_token: None,
        }
    }

    /// The same caller, carrying a guest cart token (`X-Cart-Token`).
    pub fn with_cart_token(mut self, token: Option<&str>) -> Self {
        self.cart_token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        self
    }

    pub fn require_principal(&self) -> AppResult<&Principal> {
        self.principal
            .as_ref()
            .ok_or_else(|| AppError::Unauthenticated("sign in to do this".into()))
    }

    pub fn require_staff(&self) -> AppResult<&Principal> {
        let principal = self.require_principal()?;
        if principal.is_staff() {
            Ok(principal)
        } else {
            Err(AppError::Forbidden("staff or admin role required".into()))
        }
    }

    pub fn require_admin(&self) -> AppResult<&Principal> {
        let principal = self.require_principal()?;
        if principal.role == Role::Admin {
            Ok(principal)
        } else {
            Err(AppError::Forbidden("admin role required".into()))
        }
    }

    pub fn is_staff(&self) -> bool {
        self.principal.as_ref().is_some_and(Principal::is_staff)
    }

    /// Which customer a customer-scoped operation acts on: a customer acts on
    /// themselves (naming anyone else is `FORBIDDEN`); staff must name one.
    pub fn customer_scope(&self, requested: Option<EntityId>) -> AppResult<EntityId> {
        let principal = self.require_principal()?;
        match (principal.customer_id(), requested) {
            (Some(own), None) => Ok(own),
            (Some(own), Some(id)) if own == id => Ok(own),
            (Some(_), Some(_)) => Err(AppError::Forbidden(
                "customers may only access their own data".into(),
            )),
            (None, Some(id)) if principal.is_staff() => Ok(id),
            (None, _) => Err(AppError::BadInput(
                "customerId is required for staff".into(),
            )),
        }
    }

    /// A stable name for private cache entries: role and subject; for a guest, a
    /// digest of their cart token, so that no two guests share an entry.
    pub fn cache_identity(&self) -> String {
        use sha2::{Digest, Sha256};
        match (&self.principal, &self.cart_token) {
            (Some(p), _) => format!("{:?}:{}", p.role, p.subject).to_ascii_lowercase(),
            (None, Some(token)) => {
                format!(
                    "guest:{}",
                    hex::encode(&Sha256::digest(token.as_bytes())[..16])
                )
            }
            (None, None) => "anon".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("default").unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn issued_tokens_verify_and_forged_ones_do_not() {
        let keys = JwtKeys::new(b"secret-one");
        let token = keys
            .issue(&tenant(), "7", Role::Customer, chrono::Duration::hours(1))
            .unwrap_or_default();
        let principal = keys.verify(&token).map(|p| p.customer_id());
        assert_eq!(principal.ok().flatten().map(EntityId::get), Some(7));
        let forged = JwtKeys::new(b"other-secret");
        assert!(forged.verify(&token).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = JwtKeys::new(b"secret");
        let token = keys
            .issue(&tenant(), "1", Role::Admin, chrono::Duration::hours(-1))
            .unwrap_or_default();
        assert!(
            matches!(keys.verify(&token), Err(AppError::Unauthenticated(m)) if m == "token expired")
        );
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let keys = JwtKeys::new(b"secret");
        let expires = chrono::Utc::now() + chrono::Duration::hours(1);
        let token = keys
            .issue_until(&tenant(), "1", Role::Admin, expires)
            .unwrap_or_default();
        let first = keys.verify(&token).ok();
        assert!(first.is_some());
        let now = chrono::Utc::now().timestamp();
        assert_eq!(keys.verified_before(&token, now), first);
        // An hour and a minute later it has expired: forgotten, and refused as expired.
        let later = expires.timestamp() + LEEWAY_SECS + 60;
        assert_eq!(keys.verified_before(&token, later), None);
        assert_eq!(keys.verified_before(&token, now), None, "forgotten");
        let forged = format!("{token}x");
        assert!(keys.verify(&forged).is_err());
        assert_eq!(
            keys.verified_before(&forged, now),
            None,
            "refused ones are not kept"
        );
    }

    #[test]
    fn customers_are_scoped_to_themselves() {
        let keys = JwtKeys::new(b"s");
        let token = keys
            .issue(&tenant(), "3", Role::Customer, chrono::Duration::hours(1))
            .unwrap_or_default();
        let actor = keys.verify(&token).map(Actor::authenticated);
        let Ok(actor) = actor else {
            panic!("token should verify")
        };
        let other = EntityId::parse("id", "4").ok();
        assert!(matches!(
            actor.customer_scope(other),
            Err(AppError::Forbidden(_))
        ));
        assert_eq!(actor.customer_scope(None).map(EntityId::get).ok(), Some(3));
    }
}
