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
                    .table(PhoneNumbers::Table)
                    .col(pk_uuid(PhoneNumbers::Id))
                    .col(uuid(PhoneNumbers::EnvironmentId))
                    .col(string(PhoneNumbers::E164))
                    .col(string(PhoneNumbers::Status))
                    .col(timestamp_with_time_zone(PhoneNumbers::CreatedAt))
                    .col(timestamp_with_time_zone(PhoneNumbers::UpdatedAt))
                    .col(timestamp_with_time_zone_null(PhoneNumbers::ReleasedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PhoneNumbers::Table, PhoneNumbers::EnvironmentId)
                            .to(Environments::Table, Environments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_phone_numbers_environment_e164")
                    .table(PhoneNumbers::Table)
                    .col(PhoneNumbers::EnvironmentId)
                    .col(PhoneNumbers::E164)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .col(pk_uuid(Agents::Id))
                    .col(uuid(Agents::EnvironmentId))
                    .col(string(Agents::Name))
                    .col(string(Agents::CurrentStatus))
                    .col(string(Agents::Direction))
                    .col(timestamp_with_time_zone(Agents::CreatedAt))
                    .col(timestamp_with_time_zone(Agents::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Agents::Table, Agents::EnvironmentId)
                            .to(Environments::Table, Environments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_agents_environment")
                    .table(Agents::Table)
                    .col(Agents::EnvironmentId)
                    .col(Agents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AgentPhoneNumbers::Table)
                    .col(uuid(AgentPhoneNumbers::AgentId))
                    .col(uuid(AgentPhoneNumbers::PhoneNumberId))
                    .col(timestamp_with_time_zone(AgentPhoneNumbers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(AgentPhoneNumbers::AgentId)
                            .col(AgentPhoneNumbers::PhoneNumberId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AgentPhoneNumbers::Table, AgentPhoneNumbers::AgentId)
                            .to(Agents::Table, Agents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AgentPhoneNumbers::Table, AgentPhoneNumbers::PhoneNumberId)
                            .to(PhoneNumbers::Table, PhoneNumbers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_agent_phone_numbers_phone")
                    .table(AgentPhoneNumbers::Table)
                    .col(AgentPhoneNumbers::PhoneNumberId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AgentPhoneNumbers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Agents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PhoneNumbers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum PhoneNumbers {
    Table,
    Id,
    EnvironmentId,
    E164,
    Status,
    CreatedAt,
    UpdatedAt,
    ReleasedAt,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    EnvironmentId,
    Name,
    CurrentStatus,
    Direction,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AgentPhoneNumbers {
    Table,
    AgentId,
    PhoneNumberId,
    CreatedAt,
}
