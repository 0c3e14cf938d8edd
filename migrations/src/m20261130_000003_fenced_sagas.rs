//! Fenced sagas, exactly-once intake, one cancellation per order, dead letters.
//!
//! - `fence`: the token of the claim that owns a saga; every write of a step checks it,
//!   so a worker whose lease was taken over writes nothing.
//! - `request_id`: made by the server for each accepted request, unique, so an intake
//!   retried after an ambiguous error (a lost commit acknowledgement) inserts nothing twice.
//! - `request_hash`: what an idempotency key was first used for; the same key with
//!   another request is a conflict.
//! - `cancels_order_id`: unique, so an order is cancelled at most once.
//! - `dead_lettered_at`: the saga gave up (attempts exhausted or a permanent error); it is
//!   compensated and ends FAILED.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sagas {
    Table,
    Fence,
    RequestId,
    RequestHash,
    CancelsOrderId,
    DeadLetteredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let columns = [
            ColumnDef::new(Sagas::Fence)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Sagas::RequestId)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Sagas::RequestHash)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Sagas::CancelsOrderId)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Sagas::DeadLetteredAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sagas::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ux_sagas_request_id")
                    .table(Sagas::Table)
                    .col(Sagas::RequestId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Partial: only cancellations carry it, and checkouts should not pay for an
        // index entry of NULL on every insert. Both databases read this syntax.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_sagas_cancels_order ON sagas (cancels_order_id) \
                 WHERE cancels_order_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["ux_sagas_request_id", "ux_sagas_cancels_order"] {
            manager
                .drop_index(Index::drop().name(name).table(Sagas::Table).to_owned())
                .await?;
        }
        for column in [
            Sagas::Fence,
            Sagas::RequestId,
            Sagas::RequestHash,
            Sagas::CancelsOrderId,
            Sagas::DeadLetteredAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sagas::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
