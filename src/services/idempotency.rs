//! `Idempotency-Key` records: a request runs at most once per tenant, caller and key
//! (24 h); a retry gets the stored response, a different body under the same key gets
//! `CONFLICT`. Only final answers are kept: a request that failed inside (INTERNAL,
//! UNAVAILABLE) gives its key back, so a retry runs again. Expired records are purged.
use crate::auth::Actor;
use crate::db::entities::idempotency_records;
use crate::error::AppError;
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    SqlErr,
};
use sha2::{Digest, Sha256};

const KEEP: Duration = Duration::hours(24);

pub enum Begin {
    /// First time: run the request, then `complete(id, response)`.
    Fresh(i64),
    /// Seen before with the same body: send this stored response.
    Replay(String),
}

/// The digest of what a request asks: every operation of a batch, its document (or
/// persisted-query hash), operation name and variables.
pub fn request_hash(requests: &[&async_graphql::Request]) -> String {
    let mut hasher = Sha256::new();
    for request in requests {
        let variables = serde_json::to_vec(&request.variables).unwrap_or_default();
        // Extensions are a hash map: in key order, so that a retry hashes alike.
        let extensions: std::collections::BTreeMap<&String, _> =
            request.extensions.0.iter().collect();
        let extensions = serde_json::to_vec(&extensions).unwrap_or_default();
        for part in [
            request.query.as_bytes(),
            request
                .operation_name
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
            &variables,
            &extensions,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

pub async fn begin(
    db: &DatabaseConnection,
    actor: &Actor,
    key: &str,
    hash: &str,
) -> Result<Begin, AppError> {
    if key.is_empty() || key.len() > 200 {
        return Err(AppError::BadInput(
            "Idempotency-Key: 1 to 200 characters".into(),
        ));
    }
    crate::domain::plain_text("Idempotency-Key", key, false)?;
    let caller = actor.cache_identity();
    let find = || {
        idempotency_records::Entity::find()
            .filter(idempotency_records::Column::TenantId.eq(actor.tenant.as_str()))
            .filter(idempotency_records::Column::Caller.eq(caller.as_str()))
            .filter(idempotency_records::Column::Key.eq(key))
            .one(db)
    };
    if let Some(existing) = find().await? {
        if existing.created_at < Utc::now() - KEEP {
            idempotency_records::Entity::delete_by_id(existing.id)
                .exec(db)
                .await?;
        } else {
            return decide(existing, hash);
        }
    }
    let inserted = idempotency_records::ActiveModel {
        tenant_id: Set(actor.tenant.as_str().to_owned()),
        caller: Set(caller.clone()),
        key: Set(key.to_owned()),
        request_hash: Set(hash.to_owned()),
        response: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await;
    match inserted {
        Ok(record) => Ok(Begin::Fresh(record.id)),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            match find().await? {
                Some(existing) => decide(existing, hash),
                None => Err(AppError::Conflict(
                    "retry: a request with this Idempotency-Key just expired".into(),
                )),
            }
        }
        Err(err) => Err(err.into()),
    }
}

fn decide(existing: idempotency_records::Model, hash: &str) -> Result<Begin, AppError> {
    if existing.request_hash != hash {
        return Err(AppError::Conflict(
            "this Idempotency-Key was used for a different request".into(),
        ));
    }
    existing.response.map(Begin::Replay).ok_or_else(|| {
        AppError::Conflict("a request with this Idempotency-Key is still running".into())
    })
}

/// Gives the key back: the request did not reach a final answer, a retry runs it.
pub async fn abandon(db: &DatabaseConnection, id: i64) -> Result<(), AppError> {
    idempotency_records::Entity::delete_by_id(id)
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes records older than their 24 h; how many.
pub async fn purge_expired(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    // SQLite keeps timestamps as RFC 3339 text and compares them as text: the cutoff
    // goes in that same form (a bound timestamp would be written another way).
    let backend = db.get_database_backend();
    let cutoff = Utc::now() - KEEP;
    let (param, value) = if backend == DatabaseBackend::Postgres {
        ("$1", cutoff.into())
    } else {
        let text = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        ("?", text.into())
    };
    let statement = Statement::from_sql_and_values(
        backend,
        format!("DELETE FROM idempotency_records WHERE created_at < {param}"),
        [value],
    );
    Ok(db.execute_raw(statement).await?.rows_affected())
}

pub async fn complete(db: &DatabaseConnection, id: i64, response: &[u8]) -> Result<(), AppError> {
    idempotency_records::ActiveModel {
        id: Set(id),
        response: Set(Some(String::from_utf8_lossy(response).into_owned())),
        ..Default::default()
    }
    .update(db)
    .await?;
    Ok(())
}
