//! Customer accounts: sign-up and sign-in with a password, sessions of a short-lived
//! access token (the same HS256 JWT the `token` command prints) and a rotating refresh
//! token, sign-out, and ADMIN setting a customer's password.
//!
//! Rules kept here:
//! - No enumeration: an unknown e-mail and a wrong password get the same error and
//!   cost the same time (an unknown e-mail is checked against a dummy hash). Signing
//!   up with an e-mail a customer of the tenant already has gets one refusal, whether
//!   or not that customer has a password (ADMIN gives one to a customer who has not).
//! - Sign-in attempts are limited per client IP and per account (`attempts`).
//! - Guest rows (`customers.guest`) are not accounts: sign-in never finds them, they
//!   never block a sign-up, and ADMIN cannot give them a password. Signing up takes
//!   over the orders guests placed with that e-mail (`guest_orders`), never a real
//!   customer's anything.
//! - Refresh tokens are single-use, stored hashed, and a reused one revokes its family
//!   (`refresh_tokens`).
mod attempts;
mod guest_orders;
mod passwords;
mod refresh_tokens;

pub use attempts::{Attempts, Limits};
pub use passwords::{ITERATIONS, MEMORY_KIB, PARALLELISM};

use super::Changed;
use super::cart::{self, GuestCarts};
use super::customers::{created_tags, insert_customer};
use crate::auth::{Actor, JwtKeys, Role};
use crate::config::AccountSettings;
use crate::db::entities::{customer_passwords, customers};
use crate::domain::{Email, EntityId, Password, PersonName, TenantId};
use crate::error::{AppError, AppResult};
use crate::redis_topology::RedisConn;
use chrono::{DateTime, Utc};
use passwords::Passwords;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
use std::net::IpAddr;
use std::time::Duration;

/// The one answer to a failed sign-in, whatever failed.
const WRONG: &str = "email or password is wrong";

/// A signed-in customer's tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub customer: customers::Model,
}

/// What account operations share: the signing keys, the hasher and the counters.
#[derive(Clone)]
pub struct Accounts {
    jwt: JwtKeys,
    passwords: Passwords,
    attempts: Attempts,
    guests: GuestCarts,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl Accounts {
    /// `redis`: where the sign-in counters live when Redis is configured, and their key
    /// prefix.
    pub fn new(
        settings: &AccountSettings,
        jwt: JwtKeys,
        redis: Option<(RedisConn, &str)>,
    ) -> anyhow::Result<Self> {
        let limits = Limits {
            account_failures: settings.signin_max_failures,
            account_window: Duration::from_secs(settings.signin_failure_window),
            ip_per_minute: settings.signin_ip_per_minute,
            guest_carts_per_ip_hour: settings.guest_carts_per_ip_hour,
        };
        let attempts = Attempts::new(limits, redis);
        Ok(Self {
            jwt,
            passwords: Passwords::new()?,
            guests: GuestCarts::new(settings.guest_cart_ttl(), attempts.clone()),
            attempts,
            access_ttl: settings.access_token_ttl(),
            refresh_ttl: settings.refresh_token_ttl(),
        })
    }

    /// A new customer with a password, signed in. Counts against the client's sign-in
    /// attempts: it costs a hash too. The caller's guest cart (its cart token) becomes
    /// the new customer's cart, and orders placed as a guest with this e-mail become
    /// the new customer's (see `guest_orders`).
    #[tracing::instrument(skip_all, fields(tenant = %actor.tenant))]
    pub async fn sign_up(
        &self,
        db: &DatabaseConnection,
        actor: &Actor,
        client: Option<IpAddr>,
        (name, email, password): (PersonName, Email, Password),
    ) -> AppResult<Changed<Session>> {
        self.attempts.admit_client(&actor.tenant, client).await?;
        let guest = cart::guest_from_token(db, actor).await?;
        let hash = self.passwords.hash(&password).await?;
        let txn = db.begin().await?;
        let customer = insert_customer(&txn, actor, name, email.clone(), |_| {
            AppError::Conflict(
                "this e-mail cannot sign up: sign in, or ask the shop to set a password".into(),
            )
        })
        .await?;
        store_password(&txn, &actor.tenant, customer.id, hash).await?;
        let id = EntityId::from_db(customer.id);
        let mut tags = created_tags(&customer);
        tags.extend(guest_orders::attach(&txn, &actor.tenant, &email, id).await?);
        if let Some(guest) = guest {
            tags.extend(cart::merge_guest(&txn, &actor.tenant, guest, id).await?);
        }
        let refresh =
            refresh_tokens::issue(&txn, &actor.tenant, customer.id, None, self.refresh_ttl).await?;
        let session = self.session(&actor.tenant, customer, refresh)?;
        Changed::commit(txn, &actor.tenant, session, tags).await
    }

    /// A new session for the customer with this e-mail and password; the caller's
    /// guest cart (its cart token) is merged into theirs.
    #[tracing::instrument(skip_all, fields(tenant = %actor.tenant))]
    pub async fn sign_in(
        &self,
        db: &DatabaseConnection,
        actor: &Actor,
        client: Option<IpAddr>,
        email: Email,
        password: Password,
    ) -> AppResult<Changed<Session>> {
        self.attempts.admit(&actor.tenant, client, &email).await?;
        let guest = cart::guest_from_token(db, actor).await?;
        let found = customers::Entity::find()
            .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
            .filter(customers::Column::Email.eq(email.as_str()))
            .filter(customers::Column::Guest.eq(false))
            .find_also_related(customer_passwords::Entity)
            .one(db)
            .await?;
        let (customer, stored) = match found {
            Some((customer, stored)) => (Some(customer), stored.map(|s| s.password_hash)),
            None => (None, None),
        };
        let verified = self.passwords.verify(&password, stored.as_deref()).await?;
        let Some(customer) = customer.filter(|_| verified) else {
            return Err(AppError::Unauthenticated(WRONG.into()));
        };
        self.attempts.succeeded(&actor.tenant, &email).await;
        let txn = db.begin().await?;
        let tags = match guest {
            Some(guest) => {
                cart::merge_guest(&txn, &actor.tenant, guest, EntityId::from_db(customer.id))
                    .await?
            }
            None => Vec::new(),
        };
        let refresh =
            refresh_tokens::issue(&txn, &actor.tenant, customer.id, None, self.refresh_ttl).await?;
        let session = self.session(&actor.tenant, customer, refresh)?;
        Changed::commit(txn, &actor.tenant, session, tags).await
    }

    /// Limits and lifetime of guest carts (their creation is counted per client here).
    pub fn guest_carts(&self) -> &GuestCarts {
        &self.guests
    }

    /// Spends a refresh token for a new session of the same family.
    #[tracing::instrument(skip_all, fields(tenant = %actor.tenant))]
    pub async fn refresh(
        &self,
        db: &DatabaseConnection,
        actor: &Actor,
        refresh_token: &str,
    ) -> AppResult<Session> {
        let (customer, refresh) =
            refresh_tokens::rotate(db, &actor.tenant, refresh_token, self.refresh_ttl).await?;
        let customer = customers::Entity::find_by_id(customer)
            .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
            .one(db)
            .await?
            .ok_or_else(|| AppError::Unauthenticated(WRONG.into()))?;
        self.session(&actor.tenant, customer, refresh)
    }

    /// Ends the session (every refresh token of its family); its access token lives on
    /// until it expires. False when the token named no live session.
    #[tracing::instrument(skip_all, fields(tenant = %actor.tenant))]
    pub async fn sign_out(
        &self,
        db: &DatabaseConnection,
        actor: &Actor,
        refresh_token: &str,
    ) -> AppResult<bool> {
        refresh_tokens::revoke(db, &actor.tenant, refresh_token).await
    }

    /// ADMIN: gives a customer a (new) password, e.g. one created before accounts
    /// existed. Sessions already open stay open.
    #[tracing::instrument(skip_all, fields(tenant = %actor.tenant, customer = %customer))]
    pub async fn set_password(
        &self,
        db: &DatabaseConnection,
        actor: &Actor,
        customer: EntityId,
        password: Password,
    ) -> AppResult<()> {
        actor.require_admin()?;
        // A guest row is no account: it never signs in.
        let exists = customers::Entity::find_by_id(customer.get())
            .filter(customers::Column::TenantId.eq(actor.tenant.as_str()))
            .filter(customers::Column::Guest.eq(false))
            .one(db)
            .await?
            .is_some();
        if !exists {
            return Err(AppError::not_found("customer", customer));
        }
        let hash = self.passwords.hash(&password).await?;
        store_password(db, &actor.tenant, customer.get(), hash).await
    }

    fn session(
        &self,
        tenant: &TenantId,
        customer: customers::Model,
        refresh_token: String,
    ) -> AppResult<Session> {
        let ttl = chrono::Duration::from_std(self.access_ttl)
            .map_err(|err| AppError::internal("access token lifetime", err))?;
        // Whole seconds, as the token's `exp` holds it.
        let expires_at = DateTime::from_timestamp((Utc::now() + ttl).timestamp(), 0)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("access token expiry")))?;
        let access_token = self
            .jwt
            .issue_until(tenant, &customer.id.to_string(), Role::Customer, expires_at)
            .map_err(|err| AppError::internal("sign an access token", err))?;
        Ok(Session {
            access_token,
            access_token_expires_at: expires_at,
            refresh_token,
            customer,
        })
    }
}

async fn store_password(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    customer: i64,
    hash: String,
) -> AppResult<()> {
    customer_passwords::Entity::insert(customer_passwords::ActiveModel {
        customer_id: Set(customer),
        tenant_id: Set(tenant.as_str().to_owned()),
        password_hash: Set(hash),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(customer_passwords::Column::CustomerId)
            .update_columns([
                customer_passwords::Column::PasswordHash,
                customer_passwords::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(conn)
    .await?;
    Ok(())
}
