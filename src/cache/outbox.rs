//! The invalidation outbox: a mutation's transaction records the tags it makes stale
//! (`record`), so an invalidation survives whatever happens after the commit. The
//! instance that committed invalidates at once and then deletes the row (in batches);
//! a row that stays (the backend refused it, or the instance was killed before it got
//! there) is replayed by every instance, oldest first, once it is older than `GRACE`
//! (at once by the instance the backend refused). A tenant with more than
//! `MAX_PER_TENANT` rows waiting has them replaced by one invalidation of its whole
//! cache, so the table stays small through a long outage.
use crate::db::entities::cache_outbox;
use crate::db::in_list::padded;
use crate::domain::TenantId;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, Value,
};

pub const MAX_PER_TENANT: i64 = 1_000;

/// How old a row must be before any instance replays it: far longer than the
/// invalidation and the batched delete of the instance that recorded it take.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// One waiting invalidation.
pub struct Waiting {
    pub id: i64,
    pub tenant: TenantId,
    pub tags: Vec<String>,
}

/// Records, inside the change's own transaction, the tags it makes stale.
pub async fn record(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    tags: &[String],
) -> Result<i64, DbErr> {
    let row = cache_outbox::ActiveModel {
        tenant_id: Set(tenant.as_str().to_owned()),
        tags: Set(encode(tags)?),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(row.id)
}

/// `record` as a part of a larger statement (a data-modifying `WITH` on PostgreSQL):
/// an `INSERT … SELECT` that writes the row once per row of `source` (name a one-row
/// source), so that a change and its record commit together even as one autocommitted
/// statement. Returns its SQL (with `?` placeholders, `RETURNING id`) and its values.
pub fn record_from(
    source: &str,
    tenant: &TenantId,
    tags: &[String],
) -> Result<(String, Vec<Value>), DbErr> {
    let sql = format!(
        "INSERT INTO cache_outbox (tenant_id, tags, created_at) SELECT ?, ?, ? FROM {source} RETURNING id"
    );
    let values = vec![
        tenant.as_str().into(),
        encode(tags)?.into(),
        Utc::now().into(),
    ];
    Ok((sql, values))
}

fn encode(tags: &[String]) -> Result<String, DbErr> {
    serde_json::to_string(tags).map_err(|e| DbErr::Custom(e.to_string()))
}

/// The oldest rows older than `before`, or among `also` (whatever their age); rows that
/// cannot be read are left out of the answer (and stay, harmless, for an operator).
pub async fn waiting(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
    also: &[i64],
    limit: u64,
) -> Result<Vec<Waiting>, DbErr> {
    let mut due = Condition::any().add(cache_outbox::Column::CreatedAt.lt(before));
    if !also.is_empty() {
        due = due.add(cache_outbox::Column::Id.is_in(padded(also.iter().copied())));
    }
    let rows = cache_outbox::Entity::find()
        .filter(due)
        .order_by_asc(cache_outbox::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(Waiting {
                id: row.id,
                tenant: TenantId::parse(&row.tenant_id).ok()?,
                tags: serde_json::from_str(&row.tags).ok()?,
            })
        })
        .collect())
}

/// Tenants with more than `MAX_PER_TENANT` rows older than `before`.
pub async fn crowded(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
) -> Result<Vec<TenantId>, DbErr> {
    let tenants: Vec<String> = cache_outbox::Entity::find()
        .select_only()
        .column(cache_outbox::Column::TenantId)
        .filter(cache_outbox::Column::CreatedAt.lt(before))
        .group_by(cache_outbox::Column::TenantId)
        .having(
            Expr::col(cache_outbox::Column::Id)
                .count()
                .gt(MAX_PER_TENANT),
        )
        .into_tuple()
        .all(db)
        .await?;
    Ok(tenants
        .iter()
        .filter_map(|t| TenantId::parse(t).ok())
        .collect())
}

/// Deletes a tenant's rows older than `before` (its whole cache was invalidated).
pub async fn remove_tenant(
    db: &DatabaseConnection,
    tenant: &TenantId,
    before: DateTime<Utc>,
) -> Result<(), DbErr> {
    cache_outbox::Entity::delete_many()
        .filter(cache_outbox::Column::TenantId.eq(tenant.as_str()))
        .filter(cache_outbox::Column::CreatedAt.lt(before))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn remove(db: &DatabaseConnection, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    cache_outbox::Entity::delete_many()
        .filter(cache_outbox::Column::Id.is_in(padded(ids.iter().copied())))
        .exec(db)
        .await?;
    Ok(())
}
