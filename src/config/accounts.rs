//! Settings of customer accounts: token lifetimes, the sign-in attempt limits and guest
//! carts.
use anyhow::bail;
use clap::Args;
use std::time::Duration;

/// The longest refresh-token lifetime accepted (a year).
const MAX_REFRESH_TTL_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, Args)]
pub struct AccountSettings {
    /// Seconds an access token (the JWT `signIn` returns) is valid.
    #[arg(
        long,
        env = "ACCESS_TOKEN_TTL",
        value_name = "ACCESS_TOKEN_TTL",
        default_value_t = 900,
        global = true
    )]
    pub access_token_ttl: u64,

    /// Seconds a refresh token is valid after it was issued (each refresh issues a new one).
    #[arg(
        long,
        env = "REFRESH_TOKEN_TTL",
        value_name = "REFRESH_TOKEN_TTL",
        default_value_t = 30 * 24 * 3600,
        global = true
    )]
    pub refresh_token_ttl: u64,

    /// Failed sign-ins one account (e-mail, per tenant) may have within
    /// `SIGNIN_FAILURE_WINDOW`; more are answered 429 until the window ends.
    #[arg(
        long,
        env = "SIGNIN_MAX_FAILURES",
        value_name = "SIGNIN_MAX_FAILURES",
        default_value_t = 5,
        global = true
    )]
    pub signin_max_failures: u32,

    /// Seconds over which an account's failed sign-ins are counted.
    #[arg(
        long,
        env = "SIGNIN_FAILURE_WINDOW",
        value_name = "SIGNIN_FAILURE_WINDOW",
        default_value_t = 900,
        global = true
    )]
    pub signin_failure_window: u64,

    /// Sign-in attempts one client IP may make per minute (per tenant), whatever the
    /// accounts they name.
    #[arg(
        long,
        env = "SIGNIN_IP_PER_MINUTE",
        value_name = "SIGNIN_IP_PER_MINUTE",
        default_value_t = 30,
        global = true
    )]
    pub signin_ip_per_minute: u32,

    /// Seconds a guest cart lives after it was last added to; then it is purged.
    #[arg(
        long,
        env = "GUEST_CART_TTL",
        value_name = "GUEST_CART_TTL",
        default_value_t = 7 * 24 * 3600,
        global = true
    )]
    pub guest_cart_ttl: u64,

    /// Guest carts (anonymous first `addToCart`s) one client IP may create per hour,
    /// per tenant.
    #[arg(
        long,
        env = "GUEST_CARTS_PER_IP_HOUR",
        value_name = "GUEST_CARTS_PER_IP_HOUR",
        default_value_t = 60,
        global = true
    )]
    pub guest_carts_per_ip_hour: u32,
}

impl AccountSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=86_400).contains(&self.access_token_ttl) {
            bail!("ACCESS_TOKEN_TTL must be between 1 and 86400 seconds");
        }
        if !(60..=MAX_REFRESH_TTL_SECS).contains(&self.refresh_token_ttl) {
            bail!("REFRESH_TOKEN_TTL must be between 60 and {MAX_REFRESH_TTL_SECS} seconds");
        }
        if self.signin_max_failures == 0 {
            bail!("SIGNIN_MAX_FAILURES must be at least 1");
        }
        if !(1..=86_400).contains(&self.signin_failure_window) {
            bail!("SIGNIN_FAILURE_WINDOW must be between 1 and 86400 seconds");
        }
        if self.signin_ip_per_minute == 0 {
            bail!("SIGNIN_IP_PER_MINUTE must be at least 1");
        }
        if !(1..=MAX_REFRESH_TTL_SECS).contains(&self.guest_cart_ttl) {
            bail!("GUEST_CART_TTL must be between 1 and {MAX_REFRESH_TTL_SECS} seconds");
        }
        if self.guest_carts_per_ip_hour == 0 {
            bail!("GUEST_CARTS_PER_IP_HOUR must be at least 1");
        }
        Ok(())
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl)
    }

    pub fn guest_cart_ttl(&self) -> Duration {
        Duration::from_secs(self.guest_cart_ttl)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl)
    }
}
