//! Schema migrations, shared by SQLite (embedded default) and PostgreSQL.
//!
//! Money is stored as integer cents (`BIGINT`): exact on both databases, where SQLite
//! would otherwise read decimals back through `f64`.
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_catalog;
mod m20261122_000002_checkout;
mod m20261130_000003_fenced_sagas;
mod m20261130_000004_cache_outbox;
mod m20261130_000005_sales_aggregates;
mod m20261201_000006_accounts;
mod m20261202_000007_guest_carts;
pub mod sales_aggregates;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_catalog::Migration),
            Box::new(m20261122_000002_checkout::Migration),
            Box::new(m20261130_000003_fenced_sagas::Migration),
            Box::new(m20261130_000004_cache_outbox::Migration),
            Box::new(m20261130_000005_sales_aggregates::Migration),
            Box::new(m20261201_000006_accounts::Migration),
            Box::new(m20261202_000007_guest_carts::Migration),
        ]
    }
}
