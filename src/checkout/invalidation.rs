//! What a saga's work changed in cached reads. The tags are recorded in the cache
//! outbox inside the transaction that makes the change, and invalidated right after
//! its commit: a worker killed in between loses nothing, since every instance replays
//! what the outbox still holds.
use super::model::Payload;
use crate::cache::{Cache, outbox};
use crate::db::entities::sagas;
use crate::domain::{EntityId, TenantId};
use crate::services::tags;
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::{BTreeMap, BTreeSet};

/// One tenant's tags, recorded as outbox row `id`.
#[derive(Debug)]
pub struct Recorded {
    tenant: TenantId,
    tags: Vec<String>,
    id: i64,
}

/// Records the union of the sagas' tags, one outbox row per tenant.
pub async fn record<'a>(
    txn: &impl ConnectionTrait,
    changed: impl IntoIterator<Item = (&'a sagas::Model, Vec<String>)>,
) -> Result<Vec<Recorded>, DbErr> {
    let mut by_tenant: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (saga, tags) in changed {
        by_tenant
            .entry(saga.tenant_id.as_str())
            .or_default()
            .extend(tags);
    }
    let mut recorded = Vec::with_capacity(by_tenant.len());
    for (tenant, tags) in by_tenant {
        let Ok(tenant) = TenantId::parse(tenant) else {
            continue;
        };
        let tags: Vec<String> = tags.into_iter().collect();
        let id = outbox::record(txn, &tenant, &tags).await?;
        recorded.push(Recorded { tenant, tags, id });
    }
    Ok(recorded)
}

/// Invalidates what `record` recorded, once its transaction committed.
pub async fn invalidate(cache: &Cache, recorded: Vec<Recorded>) {
    for Recorded { tenant, tags, id } in recorded {
        cache.invalidate_recorded(&tenant, &tags, Some(id)).await;
    }
}

impl Payload {
    /// Tags of the stock a saga moves: the products' other fields, and which products
    /// an unfiltered list holds, stay as they were.
    pub fn stock_tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .lines
            .iter()
            .map(|l| tags::stock(EntityId::from_db(l.product_id)))
            .collect();
        tags.push(tags::STOCK_LISTS.to_owned());
        tags
    }

    /// Everything a finished saga may have changed: stock, the cart, statistics.
    pub fn lines_tags(&self, saga: &sagas::Model) -> Vec<String> {
        let mut tags = self.stock_tags();
        tags.push(tags::cart(EntityId::from_db(saga.customer_id)));
        tags.push(tags::STATS.to_owned());
        tags
    }
}
