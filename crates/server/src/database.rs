//! Opening the database the way a newcomer's mistakes are best explained: `DATABASE_URL` is
//! checked first (a missing folder, a file SQLite may not create, PostgreSQL refusing or
//! silent, a database that does not exist), each with the fix, before the pools open and hide
//! the cause behind their own errors. Migrations are logged as one line.

use anyhow::Context;
use releasedesk_domain::EmailAddress;
use releasedesk_store::{Store, StoreOptions};

use crate::config::ServeConfig;

/// Checks `DATABASE_URL`, then connects with `config`'s options (pool size, support inbox).
pub async fn connect(config: &ServeConfig) -> anyhow::Result<Store> {
    let support_email = config
        .support_email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .context("RELEASEDESK_SUPPORT_EMAIL is not a valid email address")?;
    releasedesk_store::preflight(&config.database_url).await?;
    let options = StoreOptions {
        support_email,
        max_connections: config.max_connections,
        service_levels: config.service_levels,
        webhooks: config.webhooks,
    };
    Store::connect(&config.database_url, options)
        .await
        .with_context(|| {
            format!(
                "connecting to {} (DATABASE_URL)",
                crate::app::redact_url(&config.database_url)
            )
        })
}

/// Applies pending migrations, logging once what was applied.
pub async fn migrate(store: &Store) -> anyhow::Result<()> {
    let applied = store.migrate().await.context("applying migrations")?;
    match applied.last() {
        Some(latest) => tracing::info!(
            applied = applied.len(),
            latest = %latest,
            "database migrated"
        ),
        None => tracing::info!("database schema up to date"),
    }
    Ok(())
}
