//! One boundary error. Services return `AppError` (or convert into it); this is the only
//! place that maps it to a GraphQL error code and an HTTP status. Internal details go to
//! the log, never to the client.
use crate::domain::InvalidInput;
use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    OutOfStock(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooComplex(String),
    /// Too many attempts (sign-in); answered 429 with `Retry-After` over HTTP.
    #[error("too many attempts: retry in {retry_secs} s")]
    RateLimited { retry_secs: u64 },
    /// The database is busy or briefly unreachable: the client may try again.
    #[error("the service is busy; try again shortly")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

/// The extension of a `RATE_LIMITED` error that says when to try again (seconds); the
/// HTTP layer turns it into `Retry-After`.
pub const RETRY_AFTER: &str = "retryAfter";

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadInput(_) => "BAD_USER_INPUT",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::OutOfStock(_) => "OUT_OF_STOCK",
            Self::Conflict(_) => "CONFLICT",
            Self::TooComplex(_) => "QUERY_TOO_COMPLEX",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} {id} not found"))
    }

    pub fn internal(context: &'static str, err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into().context(context))
    }

    /// The error as a client sees it: a safe message plus `extensions.code`.
    pub fn to_graphql(&self) -> async_graphql::Error {
        match self {
            Self::Internal(source) => tracing::error!(error = ?source, "internal error"),
            Self::Unavailable(source) => tracing::warn!(error = ?source, "database busy"),
            _ => {}
        }
        crate::cache::record_failure();
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let Self::RateLimited { retry_secs } = self {
                ext.set(RETRY_AFTER, *retry_secs);
            }
        })
    }
}

impl From<InvalidInput> for AppError {
    fn from(err: InvalidInput) -> Self {
        Self::BadInput(err.to_string())
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        if crate::db::is_transient(&err) {
            Self::Unavailable(anyhow::Error::new(err).context("database"))
        } else {
            Self::Internal(anyhow::Error::new(err).context("database"))
        }
    }
}

/// `async_graphql::Error` converts from anything `Display`, which would drop the code:
/// resolvers call `.gql()` instead of `?` on a service result.
pub trait GqlResultExt<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResultExt<T> for AppResult<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|err| err.to_graphql())
    }
}

/// Which constraint a statement broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Unique,
    ForeignKey,
}

/// Translates constraint violations into client errors in one place, so no service
/// matches database error strings.
pub trait DbResultExt<T> {
    /// A violated constraint becomes the error `translate` returns for it; `None`
    /// keeps it internal.
    fn on_violation(self, translate: impl FnOnce(Violation) -> Option<AppError>) -> AppResult<T>;

    /// A unique violation becomes `CONFLICT` with `message`.
    fn on_unique(self, message: impl FnOnce() -> String) -> AppResult<T>
    where
        Self: Sized,
    {
        self.on_violation(|v| (v == Violation::Unique).then(|| AppError::Conflict(message())))
    }
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn on_violation(self, translate: impl FnOnce(Violation) -> Option<AppError>) -> AppResult<T> {
        self.map_err(|err| {
            let violation = match err.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => Some(Violation::Unique),
                Some(SqlErr::ForeignKeyConstraintViolation(_)) => Some(Violation::ForeignKey),
                _ => None,
            };
            violation
                .and_then(translate)
                .unwrap_or_else(|| AppError::from(err))
        })
    }
}
