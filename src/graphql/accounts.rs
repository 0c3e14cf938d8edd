//! Customer accounts: sign-up, sign-in, refresh, sign-out, and ADMIN setting a
//! password. Mutations only (nothing here is cached); the tenant is the caller's, as
//! for anonymous catalog reads (`X-Tenant`).
use super::context::ContextExt;
use super::mutation::finish;
use super::types::{Customer, parse_id};
use crate::domain::{Email, Password, PersonName};
use crate::error::{AppResult, GqlResultExt};
use crate::services::accounts;
use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};

#[derive(Debug, InputObject)]
pub struct SignUpInput {
    email: String,
    name: String,
    /// 8 characters or more, at most 1024 bytes.
    password: String,
}

/// A signed-in customer: send `accessToken` as `Authorization: Bearer …` until
/// `accessTokenExpiresAt`, then trade `refreshToken` for a new session with
/// `refreshSession` (each refresh token works once).
pub struct Session(accounts::Session);

#[Object]
impl Session {
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }
    async fn access_token_expires_at(&self) -> DateTime<Utc> {
        self.0.access_token_expires_at
    }
    async fn refresh_token(&self) -> &str {
        &self.0.refresh_token
    }
    async fn customer(&self) -> Customer {
        Customer::new(self.0.customer.clone())
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// A new customer with a password, signed in. An e-mail a customer of the shop
    /// already has is refused (`CONFLICT`), with or without a password. With
    /// `X-Cart-Token`, the guest cart becomes the new customer's; orders placed as a
    /// guest with this e-mail become theirs too.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        input: SignUpInput,
    ) -> async_graphql::Result<Session> {
        let parse = || -> AppResult<(PersonName, Email, Password)> {
            Ok((
                PersonName::parse(&input.name)?,
                Email::parse(&input.email)?,
                Password::new_choice("password", &input.password)?,
            ))
        };
        let account = parse().gql()?;
        let request = ctx.request()?;
        let changed = ctx
            .accounts()?
            .sign_up(ctx.db()?, &request.actor, request.client, account)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Session)
    }

    /// With `X-Cart-Token`, the guest cart is merged into the customer's (quantities
    /// added, each capped by stock) and the token stops working; an unknown or expired
    /// token is refused (`UNAUTHENTICATED`) before the password is checked.
    /// `UNAUTHENTICATED` "email or password is wrong" for any failure; `RATE_LIMITED`
    /// (HTTP 429, `Retry-After`) after too many attempts for the account or from the
    /// client.
    async fn sign_in(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<Session> {
        let parse = || -> AppResult<(Email, Password)> {
            Ok((
                Email::parse(&email)?,
                Password::attempt("password", &password)?,
            ))
        };
        let (email, password) = parse().gql()?;
        let request = ctx.request()?;
        let changed = ctx
            .accounts()?
            .sign_in(ctx.db()?, &request.actor, request.client, email, password)
            .await
            .gql()?;
        finish(ctx, changed).await.map(Session)
    }

    /// Trades a refresh token (once) for a new session. A token used before is
    /// refused and ends its session: every token rotated from the same sign-in.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<Session> {
        let session = ctx
            .accounts()?
            .refresh(ctx.db()?, ctx.actor()?, &refresh_token)
            .await
            .gql()?;
        Ok(Session(session))
    }

    /// Ends the session the refresh token belongs to. False when it named no live
    /// session. An access token already issued stays valid until it expires.
    async fn sign_out(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        ctx.accounts()?
            .sign_out(ctx.db()?, ctx.actor()?, &refresh_token)
            .await
            .gql()
    }

    /// ADMIN: sets a customer's password (customers created without one can then sign
    /// in). No e-mail is sent.
    async fn set_customer_password(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        password: String,
    ) -> async_graphql::Result<bool> {
        let customer = parse_id("customerId", &customer_id)?;
        let password = Password::new_choice("password", &password)
            .map_err(Into::into)
            .gql()?;
        ctx.accounts()?
            .set_password(ctx.db()?, ctx.actor()?, customer, password)
            .await
            .gql()?;
        Ok(true)
    }
}
