//! Orders, payments, stock movements, sagas with their steps, and idempotency records.
//! The saga row is the durable record of an accepted checkout (the queue itself).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sea_query::ExprTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
struct TenantId;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Sagas {
    Table,
    Id,
    Kind,
    Status,
    CustomerId,
    OrderId,
    Payload,
    Error,
    IdempotencyKey,
    LeaseUntil,
    Attempts,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SagaSteps {
    Table,
    Id,
    SagaId,
    Position,
    Name,
    Status,
    Attempts,
    Error,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    CustomerId,
    SagaId,
    Status,
    TotalCents,
    PaymentMethod,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    Id,
    OrderId,
    ProductId,
    Quantity,
    UnitPriceCents,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    SagaId,
    AmountCents,
    Method,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StockMovements {
    Table,
    Id,
    SagaId,
    ProductId,
    Kind,
    Quantity,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecords {
    Table,
    Id,
    Caller,
    Key,
    RequestHash,
    Response,
    CreatedAt,
}

pub(crate) fn id<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

pub(crate) fn tenant() -> ColumnDef {
    ColumnDef::new(TenantId)
        .string_len(64)
        .not_null()
        .to_owned()
}

pub(crate) fn text<T: IntoIden>(name: T, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).not_null().to_owned()
}

pub(crate) fn bigint<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

pub(crate) fn at<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

pub(crate) fn fk<
    F: IntoIden + 'static,
    C: IntoIden + 'static,
    T: IntoIden + 'static,
    P: IntoIden + 'static,
>(
    name: &str,
    from: F,
    col: C,
    to: T,
    pk: P,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from, col)
        .to(to, pk)
        .on_delete(on_delete)
        .to_owned()
}

pub(crate) async fn index<T: IntoIden + 'static, C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: impl IntoIterator<Item = C>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    if unique {
        stmt.unique();
    }
    for col in cols {
        stmt.col(col);
    }
    manager.create_index(stmt).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::{Cascade, Restrict};
        manager
            .create_table(
                Table::create()
                    .table(Sagas::Table)
                    .col(id(Sagas::Id))
                    .col(tenant())
                    .col(text(Sagas::Kind, 20))
                    .col(text(Sagas::Status, 20))
                    .col(bigint(Sagas::CustomerId))
                    .col(ColumnDef::new(Sagas::OrderId).big_integer().null())
                    .col(ColumnDef::new(Sagas::Payload).text().not_null())
                    .col(ColumnDef::new(Sagas::Error).string_len(500).null())
                    .col(ColumnDef::new(Sagas::IdempotencyKey).string_len(200).null())
                    // Epoch milliseconds: compared in SQL on both databases.
                    .col(ColumnDef::new(Sagas::LeaseUntil).big_integer().null())
                    .col(
                        ColumnDef::new(Sagas::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(at(Sagas::CreatedAt))
                    .col(at(Sagas::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_sagas_tenant",
                        Sagas::Table,
                        TenantId,
                        Tenants::Table,
                        Tenants::Id,
                        Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_sagas_customer",
                        Sagas::Table,
                        Sagas::CustomerId,
                        Customers::Table,
                        Customers::Id,
                        Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        // The queue: workers claim by status and lease, oldest first.
        index(
            manager,
            "ix_sagas_status",
            Sagas::Table,
            [Sagas::Status, Sagas::Id],
            false,
        )
        .await?;
        index(
            manager,
            "ix_sagas_tenant_customer",
            Sagas::Table,
            [TenantId.into_iden(), Sagas::CustomerId.into_iden()],
            false,
        )
        .await?;
        index(
            manager,
            "ux_sagas_idempotency",
            Sagas::Table,
            [
                TenantId.into_iden(),
                Sagas::CustomerId.into_iden(),
                Sagas::IdempotencyKey.into_iden(),
            ],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(SagaSteps::Table)
                    .col(id(SagaSteps::Id))
                    .col(bigint(SagaSteps::SagaId))
                    .col(ColumnDef::new(SagaSteps::Position).integer().not_null())
                    .col(text(SagaSteps::Name, 30))
                    .col(text(SagaSteps::Status, 20))
                    .col(
                        ColumnDef::new(SagaSteps::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(SagaSteps::Error).string_len(500).null())
                    .col(
                        ColumnDef::new(SagaSteps::StartedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(SagaSteps::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut fk(
                        "fk_saga_steps_saga",
                        SagaSteps::Table,
                        SagaSteps::SagaId,
                        Sagas::Table,
                        Sagas::Id,
                        Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_saga_steps_saga_name",
            SagaSteps::Table,
            [SagaSteps::SagaId, SagaSteps::Name],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(id(Orders::Id))
                    .col(tenant())
                    .col(bigint(Orders::CustomerId))
                    .col(bigint(Orders::SagaId))
                    .col(text(Orders::Status, 20))
                    .col(
                        ColumnDef::new(Orders::TotalCents)
                            .big_integer()
                            .not_null()
                            .check(Expr::col(Orders::TotalCents).gte(0)),
                    )
                    .col(text(Orders::PaymentMethod, 20))
                    .col(at(Orders::CreatedAt))
                    .col(at(Orders::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_orders_tenant",
                        Orders::Table,
                        TenantId,
                        Tenants::Table,
                        Tenants::Id,
                        Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_orders_customer",
                        Orders::Table,
                        Orders::CustomerId,
                        Customers::Table,
                        Customers::Id,
                        Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_orders_saga",
                        Orders::Table,
                        Orders::SagaId,
                        Sagas::Table,
                        Sagas::Id,
                        Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        // One order per checkout saga: CREATE_ORDER is idempotent.
        index(
            manager,
            "ux_orders_saga",
            Orders::Table,
            [Orders::SagaId],
            true,
        )
        .await?;
        index(
            manager,
            "ix_orders_tenant_customer",
            Orders::Table,
            [
                TenantId.into_iden(),
                Orders::CustomerId.into_iden(),
                Orders::Id.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "ix_orders_tenant_status_created",
            Orders::Table,
            [
                TenantId.into_iden(),
                Orders::Status.into_iden(),
                Orders::CreatedAt.into_iden(),
            ],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(id(OrderItems::Id))
                    .col(tenant())
                    .col(bigint(OrderItems::OrderId))
                    .col(bigint(OrderItems::ProductId))
                    .col(
                        ColumnDef::new(OrderItems::Quantity)
                            .integer()
                            .not_null()
                            .check(Expr::col(OrderItems::Quantity).gt(0)),
                    )
                    .col(bigint(OrderItems::UnitPriceCents))
                    .foreign_key(&mut fk(
                        "fk_order_items_order",
                        OrderItems::Table,
                        OrderItems::OrderId,
                        Orders::Table,
                        Orders::Id,
                        Cascade,
                    ))
                    // Ordered products cannot be deleted (deactivate them instead).
                    .foreign_key(&mut fk(
                        "fk_order_items_product",
                        OrderItems::Table,
                        OrderItems::ProductId,
                        Products::Table,
                        Products::Id,
                        Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_order_items_order",
            OrderItems::Table,
            [OrderItems::OrderId],
            false,
        )
        .await?;
        index(
            manager,
            "ix_order_items_product",
            OrderItems::Table,
            [OrderItems::ProductId],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(id(Payments::Id))
                    .col(tenant())
                    .col(bigint(Payments::SagaId))
                    .col(bigint(Payments::AmountCents))
                    .col(text(Payments::Method, 20))
                    .col(text(Payments::Status, 20))
                    .col(at(Payments::CreatedAt))
                    .col(at(Payments::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_payments_saga",
                        Payments::Table,
                        Payments::SagaId,
                        Sagas::Table,
                        Sagas::Id,
                        Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        // One charge per saga: CHARGE_PAYMENT is idempotent.
        index(
            manager,
            "ux_payments_saga",
            Payments::Table,
            [Payments::SagaId],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(StockMovements::Table)
                    .col(id(StockMovements::Id))
                    .col(tenant())
                    .col(bigint(StockMovements::SagaId))
                    .col(bigint(StockMovements::ProductId))
                    .col(text(StockMovements::Kind, 20))
                    .col(
                        ColumnDef::new(StockMovements::Quantity)
                            .integer()
                            .not_null(),
                    )
                    .col(at(StockMovements::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_stock_movements_saga",
                        StockMovements::Table,
                        StockMovements::SagaId,
                        Sagas::Table,
                        Sagas::Id,
                        Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        // A reservation or release happens once per saga and product.
        index(
            manager,
            "ux_stock_movements_once",
            StockMovements::Table,
            [
                StockMovements::SagaId,
                StockMovements::ProductId,
                StockMovements::Kind,
            ],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecords::Table)
                    .col(id(IdempotencyRecords::Id))
                    .col(tenant())
                    .col(text(IdempotencyRecords::Caller, 200))
                    .col(text(IdempotencyRecords::Key, 200))
                    .col(text(IdempotencyRecords::RequestHash, 64))
                    .col(ColumnDef::new(IdempotencyRecords::Response).text().null())
                    .col(at(IdempotencyRecords::CreatedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_idempotency_records",
            IdempotencyRecords::Table,
            [
                TenantId.into_iden(),
                IdempotencyRecords::Caller.into_iden(),
                IdempotencyRecords::Key.into_iden(),
            ],
            true,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyRecords::Table.into_iden(),
            StockMovements::Table.into_iden(),
            Payments::Table.into_iden(),
            OrderItems::Table.into_iden(),
            Orders::Table.into_iden(),
            SagaSteps::Table.into_iden(),
            Sagas::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
