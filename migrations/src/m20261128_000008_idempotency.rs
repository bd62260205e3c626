//! Idempotency keys: one row per (environment, key), claimed by the first request that sends
//! the key and holding its stored response once it is done.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261127_000001_tenancy::Environments;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(pk_uuid(IdempotencyKeys::Id))
                    .col(uuid(IdempotencyKeys::EnvironmentId))
                    .col(string_len(IdempotencyKeys::IdempotencyKey, 255))
                    // SHA-256 of method, target and body, hex.
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    // Set while a request holds the key: who holds it, and until when.
                    .col(uuid_null(IdempotencyKeys::LockToken))
                    .col(timestamp_with_time_zone_null(IdempotencyKeys::LockedUntil))
                    // Set once the response is stored.
                    .col(integer_null(IdempotencyKeys::ResponseStatus))
                    .col(string_null(IdempotencyKeys::ResponseContentType))
                    .col(blob_null(IdempotencyKeys::ResponseBody))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(IdempotencyKeys::CompletedAt))
                    // When the purge may remove it.
                    .col(timestamp_with_time_zone(IdempotencyKeys::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdempotencyKeys::Table, IdempotencyKeys::EnvironmentId)
                            .to(Environments::Table, Environments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The claim: of several requests inserting one key at once, the database lets one in.
        manager
            .create_index(
                Index::create()
                    .name("ux_idempotency_keys_env_key")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::EnvironmentId)
                    .col(IdempotencyKeys::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_idempotency_keys_expires_at")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Id,
    EnvironmentId,
    IdempotencyKey,
    Fingerprint,
    LockToken,
    LockedUntil,
    ResponseStatus,
    ResponseContentType,
    ResponseBody,
    CreatedAt,
    CompletedAt,
    ExpiresAt,
}
