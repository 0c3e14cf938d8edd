//! Per-request loaders: every entity lookup by id and every one-to-many edge is one
//! batched statement per level of a response, whatever the list sizes (see `batch`).
//! Created per request with the request's tenant, so batches stay tenant-scoped. Batches
//! run on the request's own task, so its statement counter counts them.
use super::batch::{Batcher, Fetch};
use crate::db::entities::{
    cart_items, carts, categories, customers, order_items, orders, products, saga_steps, sagas,
};
use crate::services::{cart, catalog, customers as customer_service, orders as order_service};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};
use std::collections::HashMap;
use tokio::sync::OnceCell;

/// A loader's shared part: the database and the tenant every batch is filtered by.
#[derive(Clone)]
pub struct Scope {
    db: DatabaseConnection,
    tenant: String,
}

macro_rules! by_id_loader {
    ($(#[$doc:meta])* $name:ident, $model:ty, $fetch:path, $key:ident) => {
        $(#[$doc])*
        pub struct $name(Scope);

        impl Fetch for $name {
            type Value = $model;

            fn fetch(&self, keys: Vec<i64>) -> BoxFuture<'static, Result<HashMap<i64, $model>, DbErr>> {
                let scope = self.0.clone();
                async move {
                    let rows = $fetch(&scope.db, &scope.tenant, &keys).await?;
                    Ok(rows.into_iter().map(|row| (row.$key, row)).collect())
                }
                .boxed()
            }
        }
    };
}

by_id_loader!(
    /// Products by id.
    ProductLoader, products::Model, catalog::products_by_ids, id
);
by_id_loader!(
    /// Customers by id.
    CustomerLoader, customers::Model, customer_service::customers_by_ids, id
);
by_id_loader!(
    /// Cart rows by customer id.
    CartLoader, carts::Model, customer_service::carts_by_customer_ids, customer_id
);

by_id_loader!(
    /// Orders by id.
    OrderLoader, orders::Model, order_service::orders_by_ids, id
);
by_id_loader!(
    /// Sagas by id.
    SagaLoader, sagas::Model, order_service::sagas_by_ids, id
);

macro_rules! grouped_loader {
    ($(#[$doc:meta])* $name:ident, $model:ty, $fetch:path, $key:ident) => {
        $(#[$doc])*
        pub struct $name(Scope);

        impl Fetch for $name {
            type Value = Vec<$model>;

            fn fetch(&self, keys: Vec<i64>) -> BoxFuture<'static, Result<HashMap<i64, Vec<$model>>, DbErr>> {
                let scope = self.0.clone();
                async move {
                    let mut grouped: HashMap<i64, Vec<$model>> = HashMap::new();
                    for row in $fetch(&scope.db, &scope.tenant, &keys).await? {
                        grouped.entry(row.$key).or_default().push(row);
                    }
                    Ok(grouped)
                }
                .boxed()
            }
        }
    };
}

grouped_loader!(
    /// Cart lines grouped by customer id.
    CartItemsLoader, cart_items::Model, cart::items_by_customers, customer_id
);
grouped_loader!(
    /// Order lines grouped by order id.
    OrderItemsLoader, order_items::Model, order_service::items_by_orders, order_id
);
grouped_loader!(
    /// Saga steps grouped by saga id.
    SagaStepsLoader, saga_steps::Model, order_service::steps_by_sagas, saga_id
);

/// A tenant's categories, loaded whole once per request: they are a short list (the
/// `categories` query returns them unpaginated), so one statement serves every
/// `Product.category` of a response however many products it holds.
pub struct CategoryIndex {
    scope: Scope,
    all: OnceCell<HashMap<i64, categories::Model>>,
}

impl CategoryIndex {
    pub async fn get(&self, id: i64) -> Result<Option<categories::Model>, DbErr> {
        let all = self
            .all
            .get_or_try_init(|| async {
                let rows = catalog::all_categories(&self.scope.db, &self.scope.tenant).await?;
                Ok::<_, DbErr>(rows.into_iter().map(|c| (c.id, c)).collect())
            })
            .await?;
        Ok(all.get(&id).cloned())
    }
}

pub struct Loaders {
    pub products: Batcher<ProductLoader>,
    pub categories: CategoryIndex,
    pub customers: Batcher<CustomerLoader>,
    pub carts: Batcher<CartLoader>,
    pub cart_items: Batcher<CartItemsLoader>,
    pub orders: Batcher<OrderLoader>,
    pub order_items: Batcher<OrderItemsLoader>,
    pub sagas: Batcher<SagaLoader>,
    pub saga_steps: Batcher<SagaStepsLoader>,
}

impl Loaders {
    /// Pairs each line with its product, loading all the products in one batch. A line
    /// whose product vanished between the two loads is dropped, not an error.
    pub async fn with_products<T>(
        &self,
        lines: Vec<T>,
        product_of: impl Fn(&T) -> i64,
    ) -> Result<Vec<(T, products::Model)>, DbErr> {
        let products = self
            .products
            .load_many(lines.iter().map(&product_of))
            .await?;
        Ok(lines
            .into_iter()
            .filter_map(|line| {
                let product = products.get(&product_of(&line))?.clone();
                Some((line, product))
            })
            .collect())
    }
}

impl Loaders {
    pub fn new(db: &DatabaseConnection, tenant: &str) -> Self {
        let scope = Scope {
            db: db.clone(),
            tenant: tenant.to_owned(),
        };
        Self {
            products: Batcher::new(ProductLoader(scope.clone())),
            categories: CategoryIndex {
                scope: scope.clone(),
                all: OnceCell::new(),
            },
            customers: Batcher::new(CustomerLoader(scope.clone())),
            carts: Batcher::new(CartLoader(scope.clone())),
            cart_items: Batcher::new(CartItemsLoader(scope.clone())),
            orders: Batcher::new(OrderLoader(scope.clone())),
            order_items: Batcher::new(OrderItemsLoader(scope.clone())),
            sagas: Batcher::new(SagaLoader(scope.clone())),
            saga_steps: Batcher::new(SagaStepsLoader(scope)),
        }
    }
}
