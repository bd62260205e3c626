//! The sign-in throttle, reshaped so that attempts reserve their failure before the password is
//! checked, and the addresses each staff account has signed in from.
//!
//! `login_throttle` held only transient counts (at most a lock's length plus a window), so it is
//! replaced rather than converted: a deployment loses at most the locks running at the upgrade.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginThrottle::Table).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SignInThrottle::Table)
                    .col(string(SignInThrottle::Key).primary_key())
                    .col(integer(SignInThrottle::Failures))
                    .col(timestamp_with_time_zone_null(SignInThrottle::LockedUntil))
                    .col(timestamp_with_time_zone(SignInThrottle::ForgetAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sign_in_throttle_forget_at")
                    .table(SignInThrottle::Table)
                    .col(SignInThrottle::ForgetAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StaffKnownAddresses::Table)
                    .col(uuid(StaffKnownAddresses::StaffId))
                    .col(string(StaffKnownAddresses::Address))
                    .col(timestamp_with_time_zone(
                        StaffKnownAddresses::LastSignedInAt,
                    ))
                    .primary_key(
                        Index::create()
                            .col(StaffKnownAddresses::StaffId)
                            .col(StaffKnownAddresses::Address),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(StaffKnownAddresses::Table, StaffKnownAddresses::StaffId)
                            .to(StaffUsers::Table, StaffUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StaffKnownAddresses::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SignInThrottle::Table).to_owned())
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
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    WindowStartedAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum SignInThrottle {
    Table,
    Key,
    Failures,
    LockedUntil,
    ForgetAt,
}

#[derive(DeriveIden)]
enum StaffKnownAddresses {
    Table,
    StaffId,
    Address,
    LastSignedInAt,
}

#[derive(DeriveIden)]
enum StaffUsers {
    Table,
    Id,
}
