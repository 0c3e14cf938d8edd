//! Cache invalidations Redis could not take: kept in the database, where every instance
//! replays them when Redis is back, and a restart does not lose them.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    Id,
    TenantId,
    Tags,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CacheOutbox::Table)
                    .col(
                        ColumnDef::new(CacheOutbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CacheOutbox::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CacheOutbox::Tags).text().not_null())
                    .col(
                        ColumnDef::new(CacheOutbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CacheOutbox::Table).to_owned())
            .await
    }
}
