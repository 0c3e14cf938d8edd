//! Per-request DataLoaders: every entity lookup by id and every one-to-many edge is one
//! batched statement, whatever the list sizes. Created per request with the request's
//! tenant (so batches stay tenant-scoped) and its statement counter (so batched SQL is
//! counted for `extensions.debug.dbStatements`).
use crate::db::entities::{
    cart_items, carts, categories, customers, order_items, orders, products, saga_steps, sagas,
};
use crate::db::{StatementCounter, count_statements};
use crate::services::{cart, catalog, customers as customer_service, orders as order_service};
use async_graphql::dataloader::{DataLoader, Loader};
use futures_util::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

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

        impl Loader<i64> for $name {
            type Value = $model;
            type Error = DbErr;

            async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
                let rows = $fetch(&self.0.db, &self.0.tenant, keys).await?;
                Ok(rows.into_iter().map(|row| (row.$key, row)).collect())
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

        impl Loader<i64> for $name {
            type Value = Vec<$model>;
            type Error = DbErr;

            async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
                let mut grouped: HashMap<i64, Vec<$model>> = HashMap::new();
                for row in $fetch(&self.0.db, &self.0.tenant, keys).await? {
                    grouped.entry(row.$key).or_default().push(row);
                }
                Ok(grouped)
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
    pub products: DataLoader<ProductLoader>,
    pub categories: CategoryIndex,
    pub customers: DataLoader<CustomerLoader>,
    pub carts: DataLoader<CartLoader>,
    pub cart_items: DataLoader<CartItemsLoader>,
    pub orders: DataLoader<OrderLoader>,
    pub order_items: DataLoader<OrderItemsLoader>,
    pub sagas: DataLoader<SagaLoader>,
    pub saga_steps: DataLoader<SagaStepsLoader>,
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

/// Long enough to gather the keys of one level of a response (polling a few hundred
/// resolvers, with yields between them and a busy machine preempting the thread, must
/// fit in it); it is paid only on cache misses.
const BATCH_DELAY: Duration = Duration::from_millis(5);

impl Loaders {
    pub fn new(db: &DatabaseConnection, tenant: &str, counter: Option<StatementCounter>) -> Self {
        let scope = Scope {
            db: db.clone(),
            tenant: tenant.to_owned(),
        };
        fn make<T: Loader<i64>>(loader: T, counter: &Option<StatementCounter>) -> DataLoader<T> {
            DataLoader::new(loader, spawner(counter.clone())).delay(BATCH_DELAY)
        }
        Self {
            products: make(ProductLoader(scope.clone()), &counter),
            categories: CategoryIndex {
                scope: scope.clone(),
                all: OnceCell::new(),
            },
            customers: make(CustomerLoader(scope.clone()), &counter),
            carts: make(CartLoader(scope.clone()), &counter),
            cart_items: make(CartItemsLoader(scope.clone()), &counter),
            orders: make(OrderLoader(scope.clone()), &counter),
            order_items: make(OrderItemsLoader(scope.clone()), &counter),
            sagas: make(SagaLoader(scope.clone()), &counter),
            saga_steps: make(SagaStepsLoader(scope), &counter),
        }
    }
}

fn spawner(
    counter: Option<StatementCounter>,
) -> impl Fn(BoxFuture<'static, ()>) -> JoinHandle<()> + Send + Sync + 'static {
    move |batch| match counter.clone() {
        Some(counter) => tokio::spawn(count_statements(counter, batch)),
        None => tokio::spawn(batch),
    }
}
