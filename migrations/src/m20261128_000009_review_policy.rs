//! The review policy: staff roles, four-eyes approvals and overdue reminders.
//!
//! - `staff_users.role` (`viewer`, `reviewer`, `admin`). Accounts that exist when this runs
//!   become `admin`: until now every account could do everything, and someone must be able to
//!   manage the others. The column's default for later rows is the least a working reviewer
//!   needs, `reviewer` (the code always sets the role explicitly anyway).
//! - `environments.required_approvals` (1 or 2; 1 for every existing environment).
//! - `request_approvals`: one row per reviewer's approval of a request; the unique index on
//!   (request, reviewer) is what refuses a reviewer's second approval even when two of their
//!   clicks race.
//! - `request_reminders`: one row per request whose overdue reminder was sent; its primary key
//!   is the claim that lets several workers sweep at once and still send each reminder once.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261127_000001_tenancy::Environments;
use crate::m20261127_000003_release_requests::ReleaseRequests;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(StaffUsers::Table)
                    .add_column(string(StaffUsers::Role).default("reviewer"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(StaffUsers::Table)
                    .value(StaffUsers::Role, "admin")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Environments::Table)
                    .add_column(integer(EnvironmentsPolicy::RequiredApprovals).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestApprovals::Table)
                    .col(pk_uuid(RequestApprovals::Id))
                    .col(uuid(RequestApprovals::RequestId))
                    .col(uuid(RequestApprovals::StaffId))
                    .col(string(RequestApprovals::StaffEmail))
                    .col(string(RequestApprovals::StaffName))
                    .col(text_null(RequestApprovals::Note))
                    .col(timestamp_with_time_zone(RequestApprovals::ApprovedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RequestApprovals::Table, RequestApprovals::RequestId)
                            .to(ReleaseRequests::Table, ReleaseRequests::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_request_approvals_request_staff")
                    .table(RequestApprovals::Table)
                    .col(RequestApprovals::RequestId)
                    .col(RequestApprovals::StaffId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestReminders::Table)
                    .col(uuid(RequestReminders::RequestId).primary_key())
                    .col(timestamp_with_time_zone(RequestReminders::RemindedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RequestReminders::Table, RequestReminders::RequestId)
                            .to(ReleaseRequests::Table, ReleaseRequests::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestReminders::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RequestApprovals::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Environments::Table)
                    .drop_column(EnvironmentsPolicy::RequiredApprovals)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(StaffUsers::Table)
                    .drop_column(StaffUsers::Role)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum StaffUsers {
    Table,
    Role,
}

#[derive(DeriveIden)]
enum EnvironmentsPolicy {
    RequiredApprovals,
}

#[derive(DeriveIden)]
enum RequestApprovals {
    Table,
    Id,
    RequestId,
    StaffId,
    StaffEmail,
    StaffName,
    Note,
    ApprovedAt,
}

#[derive(DeriveIden)]
enum RequestReminders {
    Table,
    RequestId,
    RemindedAt,
}
