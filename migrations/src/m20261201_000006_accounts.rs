//! Accounts: a customer's password (Argon2id PHC string), kept apart from the customer
//! row so that no customer read carries it, and refresh tokens (SHA-256 of the opaque
//! token, never the token) grouped in families: one family per signed-in device.
//!
//! - `used_at`: a refresh token is single-use; rotation sets it with a conditional
//!   update, so of two racing refreshes exactly one wins.
//! - `revoked_at`: sign-out, or a reused token, revokes every token of its family.
use crate::m20261122_000002_checkout::{at, bigint, fk, id, index, tenant, text};
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
    PasswordHash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    CustomerId,
    Family,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

fn moment<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let cascade = ForeignKeyAction::Cascade;
        manager
            .create_table(
                Table::create()
                    .table(CustomerPasswords::Table)
                    .col(bigint(CustomerPasswords::CustomerId).primary_key())
                    .col(tenant())
                    .col(text(CustomerPasswords::PasswordHash, 255))
                    .col(at(CustomerPasswords::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_customer_passwords_customer",
                        CustomerPasswords::Table,
                        CustomerPasswords::CustomerId,
                        Customers::Table,
                        Customers::Id,
                        cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(id(RefreshTokens::Id))
                    .col(tenant())
                    .col(bigint(RefreshTokens::CustomerId))
                    .col(text(RefreshTokens::Family, 32))
                    .col(text(RefreshTokens::TokenHash, 64))
                    .col(at(RefreshTokens::CreatedAt))
                    .col(at(RefreshTokens::ExpiresAt))
                    .col(moment(RefreshTokens::UsedAt))
                    .col(moment(RefreshTokens::RevokedAt))
                    .foreign_key(&mut fk(
                        "fk_refresh_tokens_customer",
                        RefreshTokens::Table,
                        RefreshTokens::CustomerId,
                        Customers::Table,
                        Customers::Id,
                        cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_refresh_tokens_hash",
            RefreshTokens::Table,
            [RefreshTokens::TokenHash],
            true,
        )
        .await?;
        index(
            manager,
            "ix_refresh_tokens_family",
            RefreshTokens::Table,
            [RefreshTokens::Family],
            false,
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
