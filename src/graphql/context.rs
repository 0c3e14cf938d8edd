//! What resolvers read from the request: shared services (schema data) and the
//! per-request context (actor, batch loaders).
use super::loaders::Loaders;
use crate::auth::Actor;
use crate::error::AppError;
use async_graphql::Context;
use sea_orm::DatabaseConnection;

/// Shared by every request; lives in the schema's data.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub cache: crate::cache::Cache,
    pub checkout: std::sync::Arc<crate::checkout::Engine>,
    pub accounts: std::sync::Arc<crate::services::accounts::Accounts>,
}

/// One request's caller and batch loaders.
pub struct RequestContext {
    pub actor: Actor,
    pub loaders: Loaders,
    /// The client's address (its /64 for IPv6), as the rate limit sees it; sign-in
    /// attempts are counted per address.
    pub client: Option<std::net::IpAddr>,
}

pub trait ContextExt {
    fn db(&self) -> async_graphql::Result<&DatabaseConnection>;
    fn accounts(&self) -> async_graphql::Result<&crate::services::accounts::Accounts>;
    fn request(&self) -> async_graphql::Result<&RequestContext>;
    fn actor(&self) -> async_graphql::Result<&Actor> {
        Ok(&self.request()?.actor)
    }
    fn loaders(&self) -> async_graphql::Result<&Loaders> {
        Ok(&self.request()?.loaders)
    }
}

fn missing(what: &'static str) -> async_graphql::Error {
    AppError::Internal(anyhow::anyhow!("{what} missing from the GraphQL context")).to_graphql()
}

impl ContextExt for Context<'_> {
    fn db(&self) -> async_graphql::Result<&DatabaseConnection> {
        self.data::<Services>()
            .map(|s| &s.db)
            .map_err(|_| missing("services"))
    }

    fn accounts(&self) -> async_graphql::Result<&crate::services::accounts::Accounts> {
        self.data::<Services>()
            .map(|s| s.accounts.as_ref())
            .map_err(|_| missing("services"))
    }

    fn request(&self) -> async_graphql::Result<&RequestContext> {
        self.data::<RequestContext>()
            .map_err(|_| missing("request context"))
    }
}
