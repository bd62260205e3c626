use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StaffUsers::Table)
                    .col(pk_uuid(StaffUsers::Id))
                    .col(string_uniq(StaffUsers::Email))
                    .col(string(StaffUsers::Name))
                    .col(string(StaffUsers::PasswordHash))
                    .col(timestamp_with_time_zone(StaffUsers::CreatedAt))
                    .col(timestamp_with_time_zone_null(StaffUsers::DisabledAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StaffSessions::Table)
                    .col(string(StaffSessions::IdHash).primary_key())
                    .col(uuid(StaffSessions::StaffId))
                    .col(string(StaffSessions::CsrfToken))
                    .col(timestamp_with_time_zone(StaffSessions::CreatedAt))
                    .col(timestamp_with_time_zone(StaffSessions::LastSeenAt))
                    .col(timestamp_with_time_zone(StaffSessions::ExpiresAt))
                    .col(string_null(StaffSessions::RemoteAddr))
                    .col(string_null(StaffSessions::UserAgent))
                    .foreign_key(
                        ForeignKey::create()
                            .from(StaffSessions::Table, StaffSessions::StaffId)
                            .to(StaffUsers::Table, StaffUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginThrottle::Table)
                    .col(string(LoginThrottle::Key).primary_key())
                    .col(integer(LoginThrottle::Failures))
                    .col(timestamp_with_time_zone(LoginThrottle::WindowStartedAt))
                    .col(timestamp_with_time_zone_null(LoginThrottle::LockedUntil))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginThrottle::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(StaffSessions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(StaffUsers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum StaffUsers {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum StaffSessions {
    Table,
    IdHash,
    StaffId,
    CsrfToken,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    RemoteAddr,
    UserAgent,
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    WindowStartedAt,
    LockedUntil,
}
