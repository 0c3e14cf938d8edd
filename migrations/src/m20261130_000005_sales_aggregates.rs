//! Statistics kept up to date by the transactions that change orders, so reading them
//! costs an index lookup instead of a scan of every order line:
//!
//! - `product_sales`: units and revenue per product of completed (not cancelled) orders;
//! - `daily_product_sales`: the same per UTC day the order was placed (ranged top products);
//! - `daily_sales`: per UTC day and payment method, charged orders and their revenue (by
//!   the day placed) and refunds (by the day cancelled);
//! - `customer_sales`: completed orders and spend per customer.
//!
//! `orders.completed_at` tells a charged order (it completed, maybe cancelled later)
//! from a voided one (its checkout failed before completing).
use crate::sales_aggregates;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    CompletedAt,
}

const TABLES: &[&str] = &[
    "CREATE TABLE product_sales (tenant_id VARCHAR(64) NOT NULL, product_id BIGINT NOT NULL, \
     units BIGINT NOT NULL, revenue_cents BIGINT NOT NULL, PRIMARY KEY (tenant_id, product_id))",
    "CREATE INDEX ix_product_sales_rank ON product_sales (tenant_id, units DESC, product_id)",
    "CREATE TABLE daily_product_sales (tenant_id VARCHAR(64) NOT NULL, day CHAR(10) NOT NULL, \
     product_id BIGINT NOT NULL, units BIGINT NOT NULL, revenue_cents BIGINT NOT NULL, \
     PRIMARY KEY (tenant_id, day, product_id))",
    "CREATE TABLE daily_sales (tenant_id VARCHAR(64) NOT NULL, day CHAR(10) NOT NULL, \
     payment_method VARCHAR(20) NOT NULL, orders BIGINT NOT NULL, revenue_cents BIGINT NOT NULL, \
     refunds_cents BIGINT NOT NULL, PRIMARY KEY (tenant_id, day, payment_method))",
    "CREATE TABLE customer_sales (tenant_id VARCHAR(64) NOT NULL, customer_id BIGINT NOT NULL, \
     orders BIGINT NOT NULL, spent_cents BIGINT NOT NULL, PRIMARY KEY (tenant_id, customer_id))",
    "CREATE INDEX ix_customer_sales_rank ON customer_sales (tenant_id, orders DESC, spent_cents DESC, customer_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(
                        ColumnDef::new(Orders::CompletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in TABLES {
            db.execute_unprepared(statement).await?;
        }
        sales_aggregates::rebuild(db).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "product_sales",
            "daily_product_sales",
            "daily_sales",
            "customer_sales",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::CompletedAt)
                    .to_owned(),
            )
            .await
    }
}
