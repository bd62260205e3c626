use releasedesk_domain::{AgentId, RequestStatus};
use sea_orm::{DbErr, SqlErr};

/// An agent named in an error ("in use by …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRef {
    pub id: AgentId,
    pub name: String,
}

/// What a use case can answer besides success. The API and the console each map these to
/// their own responses in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("phone number not found")]
    PhoneNumberNotFound,
    #[error("release request not found")]
    RequestNotFound,
    #[error("agent not found")]
    AgentNotFound,
    #[error("environment not found")]
    EnvironmentNotFound,
    #[error("a release request for this phone number is already pending")]
    ReleaseAlreadyPending,
    #[error("a release request for this phone number is already approved")]
    ReleaseAlreadyApproved,
    #[error("the phone number is already released")]
    PhoneNumberReleased,
    #[error("the phone number is in use by active agents")]
    PhoneNumberInUse { agents: Vec<AgentRef> },
    #[error("the phone number has an open release request")]
    PhoneNumberReleasePending,
    /// Cancel, approve or reject of a request that is no longer pending.
    #[error("the release request is {0}")]
    NotPending(RequestStatus),
    #[error("the typed number does not match the request's number")]
    ConfirmationMismatch,
    /// A reviewer's second approval of one request: four eyes need a different reviewer.
    #[error(
        "you already approved this request; the next approval must come from a different reviewer"
    )]
    SameReviewer,
    #[error("staff account not found")]
    StaffNotFound,
    /// The change would leave no enabled admin to manage staff.
    #[error("this would leave no enabled admin account; make another account admin first")]
    LastAdmin,
    #[error("a phone number with this E.164 already exists in the environment")]
    DuplicatePhoneNumber,
    #[error("a staff account with this email already exists")]
    DuplicateStaff,
    #[error("webhook endpoint not found")]
    WebhookEndpointNotFound,
    /// The endpoint answered 410 Gone and was disabled: it receives nothing more.
    #[error("the webhook endpoint is disabled")]
    WebhookEndpointDisabled,
    #[error("no such outbox row, or it is not dead")]
    OutboxRowNotRetryable,
    /// The idempotency key a request claimed is no longer its own (its lock expired and
    /// another request took the key over): its effect must not be applied.
    #[error("the idempotency key is held by another request")]
    IdempotencyKeyTaken,
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("database error")]
    Database(#[from] DbErr),
}

impl StoreError {
    pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
        matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
    }
}
