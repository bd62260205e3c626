use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Environments::Table)
                    .col(pk_uuid(Environments::Id))
                    .col(string(Environments::Name))
                    .col(string(Environments::NotifyEmail))
                    .col(timestamp_with_time_zone(Environments::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(pk_uuid(ApiTokens::Id))
                    .col(uuid(ApiTokens::EnvironmentId))
                    .col(string_uniq(ApiTokens::TokenHash))
                    .col(string(ApiTokens::Prefix))
                    .col(string_null(ApiTokens::Label))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::EnvironmentId)
                            .to(Environments::Table, Environments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_api_tokens_prefix")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::Prefix)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Environments::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Environments {
    Table,
    Id,
    Name,
    NotifyEmail,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    EnvironmentId,
    TokenHash,
    Prefix,
    Label,
    CreatedAt,
    RevokedAt,
}
