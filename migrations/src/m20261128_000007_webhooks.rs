//! Webhook endpoints, and the outbox columns their deliveries need.
//!
//! A delivery is an outbox row (kind `webhook`), written in the transaction of the change it
//! announces and carried out by the same worker as emails and release jobs, so it gets the
//! same lease, retry and `dead` handling. The row keeps the exact body it signs and sends, so
//! every retry sends the same bytes.

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
                    .table(WebhookEndpoints::Table)
                    .col(pk_uuid(WebhookEndpoints::Id))
                    .col(uuid(WebhookEndpoints::EnvironmentId))
                    .col(text(WebhookEndpoints::Url))
                    .col(string_null(WebhookEndpoints::Description))
                    // The subscribed event types, as a JSON array of their names.
                    .col(text(WebhookEndpoints::Events))
                    .col(boolean(WebhookEndpoints::Enabled))
                    // Signing keys, stored as given to the customer (an HMAC key cannot be
                    // hashed and still sign). Cleared when the endpoint is deleted.
                    .col(text_null(WebhookEndpoints::Secret))
                    .col(text_null(WebhookEndpoints::PreviousSecret))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::PreviousSecretExpiresAt,
                    ))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::DisabledAt))
                    .col(text_null(WebhookEndpoints::DisabledReason))
                    // Deleted endpoints stay (their deliveries still name them in the console)
                    // but are gone from the API.
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookEndpoints::Table, WebhookEndpoints::EnvironmentId)
                            .to(Environments::Table, Environments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_endpoints_env_id")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::EnvironmentId)
                    .col(WebhookEndpoints::Id)
                    .to_owned(),
            )
            .await?;
        // SQLite alters one column per statement.
        for column in [
            uuid_null(Outbox::WebhookEndpointId),
            string_null(Outbox::EventType),
            text_null(Outbox::Body),
            integer_null(Outbox::LastStatusCode),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // An endpoint's deliveries, newest first (ids are UUIDv7).
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_webhook_endpoint_id")
                    .table(Outbox::Table)
                    .col(Outbox::WebhookEndpointId)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_webhook_endpoint_id")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Outbox::LastStatusCode,
            Outbox::Body,
            Outbox::EventType,
            Outbox::WebhookEndpointId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    EnvironmentId,
    Url,
    Description,
    Events,
    Enabled,
    Secret,
    PreviousSecret,
    PreviousSecretExpiresAt,
    CreatedAt,
    DisabledAt,
    DisabledReason,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    WebhookEndpointId,
    EventType,
    Body,
    LastStatusCode,
}
