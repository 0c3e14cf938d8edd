//! Tenants, categories, products, customers, carts and cart items.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sea_query::ExprTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The column every tenant-scoped table shares.
#[derive(DeriveIden)]
struct TenantId;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
    TenantId,
    Name,
    Slug,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    TenantId,
    Sku,
    Name,
    Description,
    PriceCents,
    Stock,
    CategoryId,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    TenantId,
    Name,
    Email,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Carts {
    Table,
    CustomerId,
    TenantId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CartItems {
    Table,
    Id,
    TenantId,
    CustomerId,
    ProductId,
    Quantity,
    AddedAt,
}

fn id_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn tenant_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(64).not_null().to_owned()
}

fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn tenant_fk<T: IntoIden + 'static>(table: T, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, TenantId)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(
                        ColumnDef::new(Tenants::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tenants::Name).string_len(200).not_null())
                    .col(timestamp(Tenants::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .col(id_col(Categories::Id))
                    .col(tenant_col(Categories::TenantId))
                    .col(ColumnDef::new(Categories::Name).string_len(120).not_null())
                    .col(ColumnDef::new(Categories::Slug).string_len(120).not_null())
                    .col(timestamp(Categories::CreatedAt))
                    .foreign_key(&mut tenant_fk(Categories::Table, "fk_categories_tenant"))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_categories_tenant_slug",
            Categories::Table,
            [Categories::TenantId, Categories::Slug],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(id_col(Products::Id))
                    .col(tenant_col(Products::TenantId))
                    .col(ColumnDef::new(Products::Sku).string_len(64).not_null())
                    .col(ColumnDef::new(Products::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Products::Description).text().null())
                    .col(
                        ColumnDef::new(Products::PriceCents)
                            .big_integer()
                            .not_null()
                            .check(Expr::col(Products::PriceCents).gte(0)),
                    )
                    .col(
                        ColumnDef::new(Products::Stock)
                            .integer()
                            .not_null()
                            .check(Expr::col(Products::Stock).gte(0)),
                    )
                    .col(ColumnDef::new(Products::CategoryId).big_integer().null())
                    .col(
                        ColumnDef::new(Products::Active)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(timestamp(Products::CreatedAt))
                    .col(timestamp(Products::UpdatedAt))
                    .foreign_key(&mut tenant_fk(Products::Table, "fk_products_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_category")
                            .from(Products::Table, Products::CategoryId)
                            .to(Categories::Table, Categories::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_products_tenant_sku",
            Products::Table,
            [Products::TenantId, Products::Sku],
        )
        .await?;
        index(
            manager,
            "ix_products_tenant_name",
            Products::Table,
            [Products::TenantId, Products::Name, Products::Id],
        )
        .await?;
        index(
            manager,
            "ix_products_tenant_price",
            Products::Table,
            [Products::TenantId, Products::PriceCents, Products::Id],
        )
        .await?;
        index(
            manager,
            "ix_products_tenant_category",
            Products::Table,
            [Products::TenantId, Products::CategoryId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(id_col(Customers::Id))
                    .col(tenant_col(Customers::TenantId))
                    .col(ColumnDef::new(Customers::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Customers::Email).string_len(254).not_null())
                    .col(timestamp(Customers::CreatedAt))
                    .foreign_key(&mut tenant_fk(Customers::Table, "fk_customers_tenant"))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_customers_tenant_email",
            Customers::Table,
            [Customers::TenantId, Customers::Email],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Carts::Table)
                    .col(
                        ColumnDef::new(Carts::CustomerId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(tenant_col(Carts::TenantId))
                    .col(timestamp(Carts::UpdatedAt))
                    .foreign_key(&mut tenant_fk(Carts::Table, "fk_carts_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_carts_customer")
                            .from(Carts::Table, Carts::CustomerId)
                            .to(Customers::Table, Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CartItems::Table)
                    .col(id_col(CartItems::Id))
                    .col(tenant_col(CartItems::TenantId))
                    .col(
                        ColumnDef::new(CartItems::CustomerId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CartItems::ProductId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CartItems::Quantity)
                            .integer()
                            .not_null()
                            .check(Expr::col(CartItems::Quantity).gt(0)),
                    )
                    .col(timestamp(CartItems::AddedAt))
                    .foreign_key(&mut tenant_fk(CartItems::Table, "fk_cart_items_tenant"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_cart_items_cart")
                            .from(CartItems::Table, CartItems::CustomerId)
                            .to(Carts::Table, Carts::CustomerId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_cart_items_product")
                            .from(CartItems::Table, CartItems::ProductId)
                            .to(Products::Table, Products::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "ux_cart_items_cart_product",
            CartItems::Table,
            [CartItems::CustomerId, CartItems::ProductId],
        )
        .await?;
        index(
            manager,
            "ix_cart_items_product",
            CartItems::Table,
            [CartItems::ProductId],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CartItems::Table.into_iden(),
            Carts::Table.into_iden(),
            Customers::Table.into_iden(),
            Products::Table.into_iden(),
            Categories::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn unique_index<T: IntoIden + 'static, C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    let mut stmt = Index::create().name(name).table(table).unique().to_owned();
    for col in cols {
        stmt.col(col);
    }
    manager.create_index(stmt).await
}

pub(crate) async fn index<T: IntoIden + 'static, C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    for col in cols {
        stmt.col(col);
    }
    manager.create_index(stmt).await
}
