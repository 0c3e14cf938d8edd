//! Settings of an external identity provider (OIDC): where its keys are, which issuer
//! and audience its tokens must name, and where their claims hold tenant, role and
//! customer.
use super::{AppEnv, redact_url};
use crate::auth::Role;
use crate::auth::claims::{ClaimMapping, parse_role_map};
use crate::auth::jwks::KeySetConfig;
use anyhow::bail;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct IdentitySettings {
    /// The provider's JWKS document (`https://…/.well-known/jwks.json`); unset = only
    /// our own HS256 tokens are accepted.
    #[arg(long, env = "JWT_JWKS_URL", value_name = "JWT_JWKS_URL", global = true)]
    pub jwt_jwks_url: Option<String>,

    /// The `iss` external tokens must carry (required with `JWT_JWKS_URL`).
    #[arg(long, env = "JWT_ISSUER", value_name = "JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Comma-separated audiences; an external token's `aud` must name one (required
    /// with `JWT_JWKS_URL`).
    #[arg(
        long,
        env = "JWT_AUDIENCE",
        value_name = "JWT_AUDIENCE",
        value_delimiter = ',',
        global = true
    )]
    pub jwt_audience: Vec<String>,

    /// Claim (a dotted path) holding the tenant of an external token.
    #[arg(
        long,
        env = "JWT_CLAIM_TENANT",
        value_name = "JWT_CLAIM_TENANT",
        default_value = "tenant",
        global = true
    )]
    pub jwt_claim_tenant: String,

    /// Claim (a dotted path) holding the role, or an array of roles.
    #[arg(
        long,
        env = "JWT_CLAIM_ROLE",
        value_name = "JWT_CLAIM_ROLE",
        default_value = "role",
        global = true
    )]
    pub jwt_claim_role: String,

    /// Claim (a dotted path) holding a customer's id in this shop.
    #[arg(
        long,
        env = "JWT_CLAIM_CUSTOMER",
        value_name = "JWT_CLAIM_CUSTOMER",
        default_value = "sub",
        global = true
    )]
    pub jwt_claim_customer: String,

    /// Comma-separated `provider-role=ROLE` pairs; unset = the provider's role names
    /// are ours (CUSTOMER, STAFF, ADMIN).
    #[arg(
        long,
        env = "JWT_ROLE_MAP",
        value_name = "JWT_ROLE_MAP",
        value_delimiter = ',',
        global = true
    )]
    pub jwt_role_map: Vec<String>,

    /// The role of an external token that carries no mapped role; unset = refused.
    #[arg(
        long,
        env = "JWT_DEFAULT_ROLE",
        value_name = "JWT_DEFAULT_ROLE",
        global = true
    )]
    pub jwt_default_role: Option<Role>,

    /// Least seconds between two fetches of the key set (bounds what unknown `kid`s
    /// can make us fetch).
    #[arg(
        long,
        env = "JWT_JWKS_MIN_INTERVAL",
        value_name = "JWT_JWKS_MIN_INTERVAL",
        default_value_t = 30,
        global = true
    )]
    pub jwt_jwks_min_interval: u64,

    /// Seconds the key set is kept when the provider sends no `Cache-Control: max-age`.
    #[arg(
        long,
        env = "JWT_JWKS_TTL",
        value_name = "JWT_JWKS_TTL",
        default_value_t = 3600,
        global = true
    )]
    pub jwt_jwks_ttl: u64,

    /// How long a fetch of the key set may take.
    #[arg(
        long,
        env = "JWT_JWKS_TIMEOUT_MS",
        value_name = "JWT_JWKS_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub jwt_jwks_timeout_ms: u64,
}

impl IdentitySettings {
    pub fn validate(&self, env: AppEnv) -> anyhow::Result<()> {
        let Some(url) = &self.jwt_jwks_url else {
            if self.jwt_issuer.is_some() || !self.audiences().is_empty() {
                bail!("JWT_ISSUER and JWT_AUDIENCE need JWT_JWKS_URL (the provider's keys)");
            }
            return Ok(());
        };
        let shown = redact_url(url);
        match url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            // Keys fetched in clear can be swapped by anyone on the path: plain HTTP
            // only to this machine, or outside production (a provider in compose).
            Some(("http", rest)) if env != AppEnv::Production || is_loopback(rest) => {}
            Some(("http", _)) => bail!(
                "JWT_JWKS_URL must be https:// in production (or an address on this machine), got '{shown}'"
            ),
            _ => bail!("JWT_JWKS_URL must be an https:// URL, got '{shown}'"),
        }
        if self
            .jwt_issuer
            .as_deref()
            .is_none_or(|i| i.trim().is_empty())
        {
            bail!("JWT_ISSUER is required with JWT_JWKS_URL (the `iss` of the provider's tokens)");
        }
        if self.audiences().is_empty() {
            bail!(
                "JWT_AUDIENCE is required with JWT_JWKS_URL (this API's identifier at the provider)"
            );
        }
        for (name, path) in [
            ("JWT_CLAIM_TENANT", &self.jwt_claim_tenant),
            ("JWT_CLAIM_ROLE", &self.jwt_claim_role),
            ("JWT_CLAIM_CUSTOMER", &self.jwt_claim_customer),
        ] {
            if path.trim().is_empty() {
                bail!("{name} must name a claim");
            }
        }
        parse_role_map(&self.jwt_role_map).map_err(|e| anyhow::anyhow!("JWT_ROLE_MAP: {e}"))?;
        if !(1..=3600).contains(&self.jwt_jwks_min_interval) {
            bail!("JWT_JWKS_MIN_INTERVAL must be between 1 and 3600 seconds");
        }
        if !(self.jwt_jwks_min_interval..=86_400).contains(&self.jwt_jwks_ttl) {
            bail!("JWT_JWKS_TTL must be between JWT_JWKS_MIN_INTERVAL and 86400 seconds");
        }
        if !(100..=60_000).contains(&self.jwt_jwks_timeout_ms) {
            bail!("JWT_JWKS_TIMEOUT_MS must be between 100 and 60000");
        }
        Ok(())
    }

    fn audiences(&self) -> Vec<String> {
        self.jwt_audience
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// The provider's settings once validated; `None` when no provider is configured.
    pub fn provider(&self) -> anyhow::Result<Option<Provider>> {
        let (Some(url), Some(issuer)) = (&self.jwt_jwks_url, &self.jwt_issuer) else {
            return Ok(None);
        };
        let role_map =
            parse_role_map(&self.jwt_role_map).map_err(|e| anyhow::anyhow!("JWT_ROLE_MAP: {e}"))?;
        Ok(Some(Provider {
            keys: KeySetConfig {
                url: url.clone(),
                timeout: Duration::from_millis(self.jwt_jwks_timeout_ms),
                min_interval: Duration::from_secs(self.jwt_jwks_min_interval),
                default_ttl: Duration::from_secs(self.jwt_jwks_ttl),
            },
            issuer: issuer.trim().to_owned(),
            audience: self.audiences(),
            claims: ClaimMapping {
                tenant: self.jwt_claim_tenant.trim().to_owned(),
                role: self.jwt_claim_role.trim().to_owned(),
                customer: self.jwt_claim_customer.trim().to_owned(),
                role_map,
                default_role: self.jwt_default_role,
            },
        }))
    }
}

/// A configured identity provider.
pub struct Provider {
    pub keys: KeySetConfig,
    pub issuer: String,
    pub audience: Vec<String>,
    pub claims: ClaimMapping,
}

/// Whether the authority of a URL (after `scheme://`) is this machine.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("127.0.0.1:8080/jwks"));
        assert!(is_loopback("localhost/jwks"));
        assert!(is_loopback("[::1]:9/x"));
        assert!(!is_loopback("keycloak:8080/realms/shop"));
        assert!(!is_loopback("127.0.0.1.evil.example/jwks"));
    }
}
