//! Guest carts: an anonymous shopper's cart belongs to a *guest* customer row (so carts,
//! lines and the checkout saga work unchanged), reached through a cart token of which
//! only the SHA-256 is stored.
//!
//! - `customers.guest`: guest rows never sign in and never hold an e-mail against
//!   sign-up, so the unique (tenant, e-mail) index covers real customers only; a guest
//!   row holds the e-mail given at checkout, and many guests may give one address.
//! - `guest_carts.expires_at`: expired carts are purged (their guest row with them
//!   when it has no order).
use crate::m20261122_000002_checkout::{at, bigint, fk, index, tenant, text};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    Guest,
}

#[derive(DeriveIden)]
enum GuestCarts {
    Table,
    CustomerId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
}

const REAL_CUSTOMERS_UNIQUE: &str = "CREATE UNIQUE INDEX ux_customers_tenant_email \
     ON customers (tenant_id, email) WHERE guest = FALSE";
const ALL_CUSTOMERS_UNIQUE: &str =
    "CREATE UNIQUE INDEX ux_customers_tenant_email ON customers (tenant_id, email)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .add_column(
                        ColumnDef::new(Customers::Guest)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX ux_customers_tenant_email")
            .await?;
        db.execute_unprepared(REAL_CUSTOMERS_UNIQUE).await?;
        manager
            .create_table(
                Table::create()
                    .table(GuestCarts::Table)
                    .col(bigint(GuestCarts::CustomerId).primary_key())
                    .col(tenant())
                    .col(text(GuestCarts::TokenHash, 64))
                    .col(at(GuestCarts::CreatedAt))
                    .col(at(GuestCarts::ExpiresAt))
                    .foreign_key(&mut fk(
                        "fk_guest_carts_customer",
                        GuestCarts::Table,
                        GuestCarts::CustomerId,
                        Customers::Table,
                        Customers::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_guest_carts_token",
            GuestCarts::Table,
            [GuestCarts::TokenHash],
            true,
        )
        .await?;
        index(
            manager,
            "ix_guest_carts_expires",
            GuestCarts::Table,
            [GuestCarts::ExpiresAt],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GuestCarts::Table).to_owned())
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("DELETE FROM customers WHERE guest = TRUE")
            .await?;
        db.execute_unprepared("DROP INDEX ux_customers_tenant_email")
            .await?;
        db.execute_unprepared(ALL_CUSTOMERS_UNIQUE).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .drop_column(Customers::Guest)
                    .to_owned(),
            )
            .await
    }
}
