use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261127_000001_tenancy::Environments;
use crate::m20261127_000002_numbers_and_agents::PhoneNumbers;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReleaseRequests::Table)
                    .col(pk_uuid(ReleaseRequests::Id))
                    .col(uuid(ReleaseRequests::EnvironmentId))
                    .col(uuid(ReleaseRequests::PhoneNumberId))
                    .col(string(ReleaseRequests::PhoneNumber))
                    .col(text(ReleaseRequests::Reason))
                    .col(string(ReleaseRequests::Status))
                    .col(timestamp_with_time_zone(ReleaseRequests::RequestedAt))
                    .col(timestamp_with_time_zone_null(ReleaseRequests::ResolvedAt))
                    .col(timestamp_with_time_zone_null(ReleaseRequests::ReleasedAt))
                    .col(text_null(ReleaseRequests::ReviewNote))
                    .col(uuid_null(ReleaseRequests::ReviewedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ReleaseRequests::Table, ReleaseRequests::EnvironmentId)
                            .to(Environments::Table, Environments::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ReleaseRequests::Table, ReleaseRequests::PhoneNumberId)
                            .to(PhoneNumbers::Table, PhoneNumbers::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Ids are UUIDv7 (time-ordered): "newest first" pages walk these indexes by id.
        for (name, cols) in [
            (
                "ix_release_requests_env_id",
                vec![ReleaseRequests::EnvironmentId, ReleaseRequests::Id],
            ),
            (
                "ix_release_requests_env_status_id",
                vec![
                    ReleaseRequests::EnvironmentId,
                    ReleaseRequests::Status,
                    ReleaseRequests::Id,
                ],
            ),
            (
                "ix_release_requests_phone_id",
                vec![ReleaseRequests::PhoneNumberId, ReleaseRequests::Id],
            ),
            (
                "ix_release_requests_status_requested",
                vec![ReleaseRequests::Status, ReleaseRequests::RequestedAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(ReleaseRequests::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        // At most one open request per number, enforced by the database (docs/workflow.md).
        // Partial indexes: same statement on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_release_requests_one_open_per_number \
                 ON release_requests (phone_number_id) \
                 WHERE status IN ('pending', 'approved')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReleaseRequests::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum ReleaseRequests {
    Table,
    Id,
    EnvironmentId,
    PhoneNumberId,
    PhoneNumber,
    Reason,
    Status,
    RequestedAt,
    ResolvedAt,
    ReleasedAt,
    ReviewNote,
    ReviewedBy,
}
