//! releasedesk storage: sea-orm entities and the use cases.
//!
//! Every use case is one transaction: load, ask the domain, guarded update, audit event, outbox
//! rows. Every customer-facing query is scoped to the caller's environment; another
//! environment's ids behave exactly like ids that do not exist.
//!
//! Backends: SQLite (the embedded default) and PostgreSQL. See [`Store::connect`] for how each is
//! tuned.

mod audit;
mod connect;
pub mod entities;
mod error;
mod health;
mod outbox;
mod release;
mod requests;
mod review;
mod staff;
mod tenancy;
mod time;
mod views;

pub use audit::{Actor, AuditAction, AuditEntry, AuditFilter};
pub use connect::{Backend, Store, StoreOptions};
pub use error::{AgentRef, ErrorChain, STORAGE_RETRY_AFTER_SECS, StorageFault, StoreError};
pub use outbox::{Audience, EmailKind, OutboxKind, OutboxPayload, OutboxRow, OutboxState};
pub use release::{CarrierReceipt, ReleaseOutcome};
pub use requests::{Cursor, ListFilter, Page};
pub use review::{OPEN_COUNT_CAP, QueueFilter, QueueItem, RequestDetail};
pub use staff::{NewStaffSession, SignInThrottle, StaffAccount, StaffSession};
pub use tenancy::{AuthContext, EnvironmentInfo, IssuedToken, TokenInfo};
pub use time::now;
pub use views::{AgentView, AssignedAgent, PhoneNumberView, ReleaseRequest};

pub use releasedesk_migration::{Migrator, MigratorTrait};
