//! Demo and generated data: the embedded default's first run, and larger data sets for
//! benchmarks (`seed --products N --customers M`). Deterministic, so runs compare.
use super::customers::ensure_tenant;
use crate::db::entities::{cart_items, carts, categories, customers, products};
use crate::domain::TenantId;
use crate::error::AppResult;
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

const CATEGORIES: [(&str, &str); 5] = [
    ("Books", "books"),
    ("Electronics", "electronics"),
    ("Home & Garden", "home-garden"),
    ("Sports", "sports"),
    ("Toys", "toys"),
];
const ADJECTIVES: [&str; 10] = [
    "Classic", "Compact", "Deluxe", "Eco", "Handmade", "Pro", "Smart", "Solid", "Vintage",
    "Wireless",
];
const NOUNS: [&str; 10] = [
    "Lamp", "Backpack", "Kettle", "Notebook", "Speaker", "Bottle", "Chair", "Puzzle", "Racket",
    "Mug",
];
const CUSTOMERS: [(&str, &str); 5] = [
    ("Ana García", "ana@example.com"),
    ("Bruno Díaz", "bruno@example.com"),
    ("Carla Méndez", "carla@example.com"),
    ("Diego Romero", "diego@example.com"),
    ("Elena Suárez", "elena@example.com"),
];
const BATCH: usize = 500;

#[derive(Debug, Clone, Copy)]
pub struct SeedSize {
    pub products: usize,
    pub customers: usize,
}

/// Loads the demo shop when the tenant has no products yet. Returns whether it did.
pub async fn seed_demo_if_empty(db: &DatabaseConnection, tenant: &TenantId) -> AppResult<bool> {
    ensure_tenant(db, tenant, "Demo shop").await?;
    let existing = products::Entity::find()
        .filter(products::Column::TenantId.eq(tenant.as_str()))
        .count(db)
        .await?;
    if existing > 0 {
        return Ok(false);
    }
    generate(
        db,
        tenant,
        SeedSize {
            products: 50,
            customers: CUSTOMERS.len(),
        },
    )
    .await?;
    demo_cart(db, tenant).await?;
    Ok(true)
}

/// Adds `size` products and customers (and the categories when missing) to a tenant.
pub async fn generate(db: &DatabaseConnection, tenant: &TenantId, size: SeedSize) -> AppResult<()> {
    ensure_tenant(db, tenant, tenant.as_str()).await?;
    let txn = db.begin().await?;
    let now = Utc::now();
    let existing = categories::Entity::find()
        .filter(categories::Column::TenantId.eq(tenant.as_str()))
        .count(&txn)
        .await?;
    if existing == 0 {
        categories::Entity::insert_many(CATEGORIES.iter().map(|(name, slug)| {
            categories::ActiveModel {
                tenant_id: Set(tenant.as_str().to_owned()),
                name: Set((*name).to_owned()),
                slug: Set((*slug).to_owned()),
                created_at: Set(now),
                ..Default::default()
            }
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    let category_ids: Vec<i64> = categories::Entity::find()
        .filter(categories::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(categories::Column::Id)
        .select_only()
        .column(categories::Column::Id)
        .into_tuple()
        .all(&txn)
        .await?;
    let first_sku = products::Entity::find()
        .filter(products::Column::TenantId.eq(tenant.as_str()))
        .count(&txn)
        .await?;
    let indexes: Vec<u64> = (0..size.products as u64).map(|i| first_sku + i).collect();
    for chunk in indexes.chunks(BATCH) {
        products::Entity::insert_many(chunk.iter().map(|&i| {
            let n = i as usize;
            let category = category_ids.get(n % category_ids.len().max(1)).copied();
            products::ActiveModel {
                tenant_id: Set(tenant.as_str().to_owned()),
                sku: Set(format!("SKU-{:06}", i + 1)),
                name: Set(format!(
                    "{} {} {}",
                    ADJECTIVES[n % 10],
                    NOUNS[(n / 10) % 10],
                    n + 1
                )),
                description: Set(Some(format!(
                    "A {} for every day.",
                    NOUNS[(n / 10) % 10].to_lowercase()
                ))),
                price_cents: Set(499 + ((i * 7_919) % 20_000) as i64),
                stock: Set(((i * 37) % 120) as i32 + 5),
                category_id: Set(category),
                active: Set(true),
                created_at: Set(
                    now - Duration::minutes((size.products as u64 - (i - first_sku)) as i64)
                ),
                updated_at: Set(now),
                ..Default::default()
            }
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    let first_customer = customers::Entity::find()
        .filter(customers::Column::TenantId.eq(tenant.as_str()))
        .count(&txn)
        .await? as usize;
    let people: Vec<usize> = (first_customer..first_customer + size.customers).collect();
    for chunk in people.chunks(BATCH) {
        customers::Entity::insert_many(chunk.iter().map(|&n| {
            let (name, email) = match CUSTOMERS.get(n) {
                Some((name, email)) => ((*name).to_owned(), (*email).to_owned()),
                None => (
                    format!("Customer {}", n + 1),
                    format!("customer{}@example.com", n + 1),
                ),
            };
            customers::ActiveModel {
                tenant_id: Set(tenant.as_str().to_owned()),
                name: Set(name),
                email: Set(email),
                created_at: Set(now - Duration::days((n % 365) as i64)),
                ..Default::default()
            }
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The first customer starts with two products in the cart, so the playground shows one.
async fn demo_cart(txn: &DatabaseConnection, tenant: &TenantId) -> AppResult<()> {
    let customer: Option<i64> = customers::Entity::find()
        .filter(customers::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(customers::Column::Id)
        .select_only()
        .column(customers::Column::Id)
        .into_tuple()
        .one(txn)
        .await?;
    let products: Vec<i64> = products::Entity::find()
        .filter(products::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(products::Column::Id)
        .select_only()
        .column(products::Column::Id)
        .limit(2)
        .into_tuple()
        .all(txn)
        .await?;
    let Some(customer) = customer else {
        return Ok(());
    };
    let now = Utc::now();
    carts::Entity::insert(carts::ActiveModel {
        customer_id: Set(customer),
        tenant_id: Set(tenant.as_str().to_owned()),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    cart_items::Entity::insert_many(products.into_iter().map(|product| cart_items::ActiveModel {
        tenant_id: Set(tenant.as_str().to_owned()),
        customer_id: Set(customer),
        product_id: Set(product),
        quantity: Set(1),
        added_at: Set(now),
        ..Default::default()
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Adds `count` finished orders (1 to 5 lines each, over the last year, one in twenty
/// cancelled) for statistics benchmarks. Each gets the saga row an order belongs to.
pub async fn generate_orders(
    db: &DatabaseConnection,
    tenant: &TenantId,
    count: usize,
) -> AppResult<usize> {
    use crate::db::entities::{order_items, orders, sagas};
    let products: Vec<(i64, i64)> = products::Entity::find()
        .filter(products::Column::TenantId.eq(tenant.as_str()))
        .select_only()
        .column(products::Column::Id)
        .column(products::Column::PriceCents)
        .into_tuple()
        .all(db)
        .await?;
    let customers: Vec<i64> = customers::Entity::find()
        .filter(customers::Column::TenantId.eq(tenant.as_str()))
        .select_only()
        .column(customers::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    if products.is_empty() || customers.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let mut lines_written = 0;
    let indexes: Vec<usize> = (0..count).collect();
    for chunk in indexes.chunks(BATCH) {
        let txn = db.begin().await?;
        let placed = |n: usize| now - Duration::minutes(((n * 7_919) % (365 * 24 * 60)) as i64);
        let sagas = sagas::Entity::insert_many(chunk.iter().map(|&n| sagas::ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            kind: Set("CHECKOUT".into()),
            status: Set("COMPLETED".into()),
            customer_id: Set(customers[n % customers.len()]),
            payload: Set("{}".into()),
            idempotency_key: Set(Some(format!("seed-order-{n}-{}", rand::random::<u32>()))),
            attempts: Set(1),
            created_at: Set(placed(n)),
            updated_at: Set(placed(n)),
            ..Default::default()
        }))
        .exec_with_returning(&txn)
        .await?;
        let lines_of = |n: usize| -> Vec<(i64, i32, i64)> {
            (0..(n % 5 + 1))
                .map(|l| {
                    let (product, price) = products[(n * 31 + l * 17) % products.len()];
                    (product, ((n + l) % 3 + 1) as i32, price)
                })
                .collect()
        };
        let orders = orders::Entity::insert_many(chunk.iter().zip(&sagas).map(|(&n, saga)| {
            let total = lines_of(n)
                .iter()
                .map(|(_, q, p)| i64::from(*q) * p)
                .sum::<i64>();
            orders::ActiveModel {
                tenant_id: Set(tenant.as_str().to_owned()),
                customer_id: Set(saga.customer_id),
                saga_id: Set(saga.id),
                status: Set(if n % 20 == 0 {
                    "CANCELLED"
                } else {
                    "COMPLETED"
                }
                .into()),
                total_cents: Set(total),
                payment_method: Set(["CARD", "PAYPAL", "BANK_TRANSFER"][n % 3].into()),
                created_at: Set(placed(n)),
                updated_at: Set(placed(n)),
                completed_at: Set(Some(placed(n))),
                ..Default::default()
            }
        }))
        .exec_with_returning(&txn)
        .await?;
        let by_saga: std::collections::HashMap<i64, i64> =
            orders.iter().map(|o| (o.saga_id, o.id)).collect();
        let items: Vec<order_items::ActiveModel> = chunk
            .iter()
            .zip(&sagas)
            .flat_map(|(&n, saga)| {
                let order = by_saga.get(&saga.id).copied().unwrap_or_default();
                lines_of(n)
                    .into_iter()
                    .map(move |(product, quantity, price)| order_items::ActiveModel {
                        tenant_id: Set(tenant.as_str().to_owned()),
                        order_id: Set(order),
                        product_id: Set(product),
                        quantity: Set(quantity),
                        unit_price_cents: Set(price),
                        ..Default::default()
                    })
            })
            .collect();
        lines_written += items.len();
        order_items::Entity::insert_many(items)
            .exec_without_returning(&txn)
            .await?;
        // Every order completed; one in twenty was cancelled (refunded) afterwards.
        let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
        crate::services::stats::tally::completed(&txn, &ids).await?;
        let cancelled: Vec<i64> = orders
            .iter()
            .filter(|o| o.status == "CANCELLED")
            .map(|o| o.id)
            .collect();
        crate::services::stats::tally::cancelled(&txn, &cancelled).await?;
        txn.commit().await?;
    }
    Ok(lines_written)
}
