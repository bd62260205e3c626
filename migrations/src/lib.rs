//! The releasedesk schema. See the crate README.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_tenancy;
mod m20261127_000002_numbers_and_agents;
mod m20261127_000003_release_requests;
mod m20261127_000004_audit_and_outbox;
mod m20261127_000005_staff;
mod m20261128_000006_sign_in_throttle;
mod m20261128_000007_webhooks;
mod m20261128_000008_idempotency;
mod m20261128_000009_review_policy;
mod m20261128_000010_create_request_function;

pub use m20261128_000010_create_request_function::CREATE_REQUEST_PARAM_TYPES;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_tenancy::Migration),
            Box::new(m20261127_000002_numbers_and_agents::Migration),
            Box::new(m20261127_000003_release_requests::Migration),
            Box::new(m20261127_000004_audit_and_outbox::Migration),
            Box::new(m20261127_000005_staff::Migration),
            Box::new(m20261128_000006_sign_in_throttle::Migration),
            Box::new(m20261128_000007_webhooks::Migration),
            Box::new(m20261128_000008_idempotency::Migration),
            Box::new(m20261128_000009_review_policy::Migration),
            Box::new(m20261128_000010_create_request_function::Migration),
        ]
    }
}
