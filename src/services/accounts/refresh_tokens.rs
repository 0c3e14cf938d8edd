//! Refresh tokens: 32 random bytes (base64url) handed to the client once; the database
//! keeps only their SHA-256. Each is single-use: refreshing marks it used with a
//! conditional update and issues the next token of the same family (one family per
//! signed-in device). A used, revoked or unknown token is refused alike, and a used
//! one revokes its whole family: whoever holds the family's newest token (the
//! customer, or a thief who replayed an old one first) must sign in again.
use crate::db::entities::refresh_tokens;
use crate::domain::TenantId;
use crate::error::{AppError, AppResult};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, TransactionTrait,
};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The one refusal of a refresh token, whatever was wrong with it.
const INVALID: &str = "the refresh token is invalid, used or revoked: sign in again";

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    // Settings bound the TTL to a year, far inside chrono's range.
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(365))
}

/// Stores a new token of `family` (a new family when `None`) and returns it.
pub(super) async fn issue(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    customer: i64,
    family: Option<String>,
    ttl: Duration,
) -> AppResult<String> {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let family = family.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    refresh_tokens::ActiveModel {
        tenant_id: Set(tenant.as_str().to_owned()),
        customer_id: Set(customer),
        family: Set(family),
        token_hash: Set(digest(&token)),
        created_at: Set(Utc::now()),
        expires_at: Set(expiry(ttl)),
        used_at: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(token)
}

async fn find(
    db: &DatabaseConnection,
    tenant: &TenantId,
    token: &str,
) -> AppResult<Option<refresh_tokens::Model>> {
    Ok(refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(digest(token)))
        .filter(refresh_tokens::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?)
}

/// Revokes every token of `family` that is not revoked yet; how many were live.
async fn revoke_family(db: &DatabaseConnection, tenant: &TenantId, family: &str) -> AppResult<u64> {
    let result = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::TenantId.eq(tenant.as_str()))
        .filter(refresh_tokens::Column::Family.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// A used token came back: the family is revoked and the caller refused.
async fn reused(db: &DatabaseConnection, row: &refresh_tokens::Model) -> AppError {
    tracing::warn!(
        tenant = %row.tenant_id,
        customer = row.customer_id,
        "a used refresh token was presented again: its family is revoked"
    );
    match TenantId::parse(&row.tenant_id) {
        Ok(tenant) => match revoke_family(db, &tenant, &row.family).await {
            Ok(_) => AppError::Unauthenticated(INVALID.into()),
            Err(err) => err,
        },
        Err(_) => AppError::Unauthenticated(INVALID.into()),
    }
}

/// Spends `token` and returns its customer and the family's next token. Of two
/// refreshes racing with one token, the conditional update lets exactly one through;
/// the other is a reuse.
pub(super) async fn rotate(
    db: &DatabaseConnection,
    tenant: &TenantId,
    token: &str,
    ttl: Duration,
) -> AppResult<(i64, String)> {
    let Some(row) = find(db, tenant, token).await? else {
        return Err(AppError::Unauthenticated(INVALID.into()));
    };
    if row.revoked_at.is_some() {
        return Err(AppError::Unauthenticated(INVALID.into()));
    }
    if row.used_at.is_some() {
        return Err(reused(db, &row).await);
    }
    if row.expires_at <= Utc::now() {
        return Err(AppError::Unauthenticated(
            "the refresh token has expired: sign in again".into(),
        ));
    }
    let txn = db.begin().await?;
    let spent = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::Id.eq(row.id))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected != 1 {
        txn.rollback().await?;
        return Err(reused(db, &row).await);
    }
    let next = issue(&txn, tenant, row.customer_id, Some(row.family.clone()), ttl).await?;
    txn.commit().await?;
    Ok((row.customer_id, next))
}

/// Ends the session `token` belongs to (its whole family). False when the token named
/// no live session.
pub(super) async fn revoke(
    db: &DatabaseConnection,
    tenant: &TenantId,
    token: &str,
) -> AppResult<bool> {
    match find(db, tenant, token).await? {
        Some(row) => Ok(revoke_family(db, tenant, &row.family).await? > 0),
        None => Ok(false),
    }
}
