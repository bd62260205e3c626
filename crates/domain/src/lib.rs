//! The releasedesk domain: identifiers, validated values and the release-request workflow.
//!
//! Everything here is pure: no I/O, no database, no clock except where a caller passes one in.
//! Values are *parsed* at the edge (`Reason::parse`, `E164::parse`, …); past the edge no function
//! takes a raw `String` for a domain value.

mod email;
mod idempotency;
mod ids;
mod phone;
mod review;
mod status;
mod text;
mod token;
mod webhook;

pub use email::{EmailAddress, EmailError};
pub use idempotency::{
    IdempotencyKey, IdempotencyKeyError, MAX_IDEMPOTENCY_KEY_LEN, RequestFingerprint,
};
pub use ids::{
    AgentId, EnvironmentId, IdError, OutboxId, PhoneNumberId, RequestId, StaffId, WebhookEndpointId,
};
pub use phone::{E164, E164Error};
pub use review::{
    ApprovalError, ApprovalOutcome, Permission, RequiredApprovals, RequiredApprovalsError,
    ServiceLevels, StaffRole, decide_approval,
};
pub use status::{
    AgentStatus, Direction, PhoneNumberStatus, RequestAction, RequestEvent, RequestStatus,
    TransitionError, UnknownValue,
};
pub use text::{ApprovalNote, Reason, RejectionNote, TextError};
pub use token::{ApiToken, TokenError, TokenHash};
pub use webhook::{
    MAX_WEBHOOK_DESCRIPTION_CHARS, MAX_WEBHOOK_URL_CHARS, RefusedAddress, WEBHOOK_SECRET_PREFIX,
    WebhookEvent, WebhookHost, WebhookPolicy, WebhookSecret, WebhookSecretError, WebhookUrl,
    WebhookUrlError, parse_webhook_description, why_not_public,
};
