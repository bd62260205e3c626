//! releasedesk storage: sea-orm entities and the use cases.
//!
//! Every use case is one transaction: load, ask the domain, guarded update, audit event, outbox
//! rows. Every customer-facing query is scoped to the caller's environment; another
//! environment's ids behave exactly like ids that do not exist.
//!
//! Backends: SQLite (the embedded default) and PostgreSQL. See [`Store::connect`] for how each is
//! tuned. On SQLite, writes arriving together are committed together (group commit): each use
//! case still succeeds or fails as a whole, and is answered only once its COMMIT is durable.

mod agents;
mod approvals;
mod audit;
mod connect;
pub mod entities;
mod environments;
mod error;
mod guards;
mod health;
mod idempotency;
mod notifications;
mod numbers;
mod one_statement;
mod outbox;
mod paging;
mod preflight;
mod requests;
mod service_levels;
mod sign_in;
mod staff;
mod staff_admin;
pub mod stats;
mod time;
mod tokens;
mod transitions;
mod views;
mod webhooks;
pub mod wire;

pub use approvals::Approval;
pub use audit::{Actor, AuditAction, AuditEntry, AuditFilter};
pub use connect::{Backend, Store, StoreOptions};
pub use environments::EnvironmentInfo;
pub use error::{AgentRef, ErrorChain, STORAGE_RETRY_AFTER_SECS, StorageFault, StoreError};
pub use idempotency::{
    Completion, IDEMPOTENCY_LOCK, IDEMPOTENCY_RETENTION, IdempotencyClaim, KeyClaim, Render,
    StoredResponse,
};
pub use outbox::{Audience, EmailKind, OutboxKind, OutboxPayload, OutboxRow, OutboxState};
pub use paging::{Cursor, Page};
pub use preflight::{DatabaseUnavailable, POSTGRES_CONNECT_TIMEOUT, preflight};
pub use requests::{ListFilter, OPEN_COUNT_CAP, QueueFilter, QueueItem, RequestDetail};
pub use service_levels::SweepReport;
pub use sign_in::{Reservation, SignInAttempt, SignInThrottle, SignInTicket};
pub use staff::{NewStaffSession, StaffAccount, StaffSession};
pub use staff_admin::StaffMember;
pub use time::now;
pub use tokens::{AuthContext, IssuedToken, TokenInfo};
pub use transitions::{CarrierReceipt, ReleaseOutcome};
pub use views::{AgentView, AssignedAgent, PhoneNumberView, ReleaseRequest};
pub use webhooks::{
    DeliveryState, MAX_WEBHOOK_ENDPOINTS, NewWebhookEndpoint, PREVIOUS_SECRET_VALID_FOR,
    STOPPED_ENDPOINT_DELETED, STOPPED_ENDPOINT_GONE, WebhookDelivery, WebhookEndpoint,
    WebhookEndpointWithSecret, WebhookTarget, webhook_message_id,
};
pub use wire::ReleaseRequestObject;

pub use releasedesk_migration::{Migrator, MigratorTrait};
