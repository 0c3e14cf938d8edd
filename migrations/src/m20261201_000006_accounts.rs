//! Accounts: a customer's password (Argon2id PHC string), kept apart from the customer
//! row so that no customer read carries it, and refresh tokens (SHA-256 of the opaque
//! token, never the token) grouped in families: one family per signed-in device.
//!
//! - `used_at`: a refresh token is single-use; rotation sets it with a conditional
//!   update, so of two racing refreshes exactly one wins.
//! - `revoked_at`: sign-out, or a reused token, revokes every token of its family.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum CustomerPasswords {
    Table,
    CustomerId,
    TenantId,
    PasswordHash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    TenantId,
    CustomerId,
    Family,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

fn timestamp<T: IntoIden>(name: T, required: bool) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    column.timestamp_with_time_zone();
    if required {
        column.not_null();
    } else {
        column.null();
    }
    column
}

fn customer_fk<T: IntoIden + 'static, C: IntoIden + 'static>(
    name: &str,
    table: T,
    column: C,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(Customers::Table, Customers::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CustomerPasswords::Table)
                    .col(
                        ColumnDef::new(CustomerPasswords::CustomerId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CustomerPasswords::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CustomerPasswords::PasswordHash)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(timestamp(CustomerPasswords::UpdatedAt, true))
                    .foreign_key(&mut customer_fk(
                        "fk_customer_passwords_customer",
                        CustomerPasswords::Table,
                        CustomerPasswords::CustomerId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(
                        ColumnDef::new(RefreshTokens::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::CustomerId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::Family)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(timestamp(RefreshTokens::CreatedAt, true))
                    .col(timestamp(RefreshTokens::ExpiresAt, true))
                    .col(timestamp(RefreshTokens::UsedAt, false))
                    .col(timestamp(RefreshTokens::RevokedAt, false))
                    .foreign_key(&mut customer_fk(
                        "fk_refresh_tokens_customer",
                        RefreshTokens::Table,
                        RefreshTokens::CustomerId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_refresh_tokens_hash")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_refresh_tokens_family")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::Family)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RefreshTokens::Table.into_iden(),
            CustomerPasswords::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
