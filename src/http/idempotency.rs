//! `Idempotency-Key` on mutation requests: a request runs at most once per tenant,
//! caller and key (24 h); a retry gets the stored response, a different body under
//! the same key gets `CONFLICT`.
use crate::auth::Actor;
use crate::db::entities::idempotency_records;
use crate::error::AppError;
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    SqlErr,
};

const KEEP: Duration = Duration::hours(24);

pub enum Begin {
    /// First time: run the request, then `complete(id, response)`.
    Fresh(i64),
    /// Seen before with the same body: send this stored response.
    Replay(String),
}

pub fn request_hash(request: &async_graphql::Request) -> String {
    let variables = serde_json::to_vec(&request.variables).unwrap_or_default();
    hex::encode(super::digest(&[
        request.query.as_bytes(),
        request
            .operation_name
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
        &variables,
    ]))
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
