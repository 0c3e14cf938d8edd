//! Invalidations the backend could not take, kept in the database: every instance
//! replays them (oldest first) once the backend answers again, and neither a restart
//! nor a killed instance loses them. A tenant with more than `MAX_PER_TENANT` waiting
//! has them replaced by one invalidation of its whole cache, so the table stays small
//! through a long outage.
use super::ALL_TAG;
use crate::db::entities::cache_outbox;
use crate::domain::TenantId;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

const MAX_PER_TENANT: u64 = 1_000;

/// One waiting invalidation.
pub struct Waiting {
    pub id: i64,
    pub tenant: TenantId,
    pub tags: Vec<String>,
}

pub async fn push(
    db: &DatabaseConnection,
    tenant: &TenantId,
    tags: &[String],
) -> Result<(), DbErr> {
    let waiting = cache_outbox::Entity::find()
        .filter(cache_outbox::Column::TenantId.eq(tenant.as_str()))
        .count(db)
        .await?;
    let tags = if waiting >= MAX_PER_TENANT {
        cache_outbox::Entity::delete_many()
            .filter(cache_outbox::Column::TenantId.eq(tenant.as_str()))
            .exec(db)
            .await?;
        vec![ALL_TAG.to_owned()]
    } else {
        tags.to_vec()
    };
    let encoded = serde_json::to_string(&tags).map_err(|e| DbErr::Custom(e.to_string()))?;
    cache_outbox::ActiveModel {
        tenant_id: Set(tenant.as_str().to_owned()),
        tags: Set(encoded),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The oldest waiting invalidations; rows that cannot be read are dropped from the
/// answer (and stay, harmless, for an operator to look at).
pub async fn oldest(db: &DatabaseConnection, limit: u64) -> Result<Vec<Waiting>, DbErr> {
    let rows = cache_outbox::Entity::find()
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

pub async fn remove(db: &DatabaseConnection, id: i64) -> Result<(), DbErr> {
    cache_outbox::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}
