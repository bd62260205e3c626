//! The API's one error type and its JSON envelope. Every failure the API reports goes through
//! [`ApiError`]; store errors are mapped to codes in exactly one place ([`From<StoreError>`]),
//! and each code has exactly one HTTP status ([`ErrorCode::status`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use releasedesk_store::{STORAGE_RETRY_AFTER_SECS, StorageFault, StoreError};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// The seed's own messages, verbatim.
pub const MSG_ALREADY_PENDING: &str = "A release request for this phone number is already pending";
pub const MSG_IN_USE: &str =
    "Phone number is currently assigned to active agents and cannot be released";
pub const MSG_UNAUTHORIZED: &str = "Missing, invalid or revoked API token";

/// The challenge every 401 carries (RFC 6750 §3). One challenge for every cause, like the one
/// message: a caller learns nothing about why a token was refused.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"releasedesk\"";

/// Declares the error codes once: the enum, its wire names, its statuses and `ALL`.
macro_rules! error_codes {
    ($($variant:ident => $text:literal, $status:ident;)+) => {
        /// A stable, machine-readable error code. Each code always comes with the same HTTP
        /// status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as it appears on the wire (`RELEASE_ALREADY_PENDING`).
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text),+ }
            }

            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status),+ }
            }
        }
    };
}

error_codes! {
    InvalidJson => "INVALID_JSON", BAD_REQUEST;
    Unauthorized => "UNAUTHORIZED", UNAUTHORIZED;
    NotFound => "NOT_FOUND", NOT_FOUND;
    PhoneNumberNotFound => "PHONE_NUMBER_NOT_FOUND", NOT_FOUND;
    ReleaseRequestNotFound => "RELEASE_REQUEST_NOT_FOUND", NOT_FOUND;
    AgentNotFound => "AGENT_NOT_FOUND", NOT_FOUND;
    WebhookEndpointNotFound => "WEBHOOK_ENDPOINT_NOT_FOUND", NOT_FOUND;
    MethodNotAllowed => "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED;
    ReleaseAlreadyPending => "RELEASE_ALREADY_PENDING", CONFLICT;
    ReleaseAlreadyApproved => "RELEASE_ALREADY_APPROVED", CONFLICT;
    PhoneNumberReleased => "PHONE_NUMBER_RELEASED", CONFLICT;
    ReleaseRequestNotPending => "RELEASE_REQUEST_NOT_PENDING", CONFLICT;
    PhoneNumberReleasePending => "PHONE_NUMBER_RELEASE_PENDING", CONFLICT;
    WebhookEndpointDisabled => "WEBHOOK_ENDPOINT_DISABLED", CONFLICT;
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MEDIA_TYPE;
    ValidationError => "VALIDATION_ERROR", UNPROCESSABLE_ENTITY;
    PhoneNumberInUse => "PHONE_NUMBER_IN_USE", UNPROCESSABLE_ENTITY;
    InternalError => "INTERNAL_ERROR", INTERNAL_SERVER_ERROR;
    StorageUnavailable => "STORAGE_UNAVAILABLE", SERVICE_UNAVAILABLE;
    IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE", CONFLICT;
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED", UNPROCESSABLE_ENTITY;
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The document lists every code, from [`ErrorCode::ALL`].
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::ALL.iter().map(|c| c.as_str())))
            .description(Some(
                "A stable, machine-readable error code; each code always comes with the same HTTP status.",
            ))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// `{"success": false, "message": …, "code": …}` plus `errors` on validation failures.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Always `false`.
    #[schema(schema_with = crate::dto::always_false)]
    pub success: bool,
    /// For people; it may change. Match on `code`.
    pub message: String,
    pub code: ErrorCode,
    /// Field (or `query`) → what is wrong with it; on `VALIDATION_ERROR` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

/// Marks a response whose message must carry the request id; the request-id middleware fills
/// it in (the handler that failed does not know the id, the middleware does).
#[derive(Debug, Clone, Copy)]
pub struct InternalErrorMarker;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, MSG_UNAUTHORIZED)
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidJson,
            format!("Request body is not valid JSON of the expected shape: {detail}"),
        )
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self {
            code: ErrorCode::ValidationError,
            message: "The request has invalid fields".into(),
            errors: Some(errors),
        }
    }

    pub fn phone_number_not_found() -> Self {
        Self::new(ErrorCode::PhoneNumberNotFound, "Phone number not found")
    }

    pub fn request_not_found() -> Self {
        Self::new(
            ErrorCode::ReleaseRequestNotFound,
            "Release request not found",
        )
    }

    pub fn webhook_endpoint_not_found() -> Self {
        Self::new(
            ErrorCode::WebhookEndpointNotFound,
            "Webhook endpoint not found",
        )
    }

    pub fn agent_not_found() -> Self {
        Self::new(ErrorCode::AgentNotFound, "Agent not found")
    }

    pub fn idempotency_key_in_use() -> Self {
        Self::new(
            ErrorCode::IdempotencyKeyInUse,
            "A request with this Idempotency-Key is still being carried out; retry shortly to get its response",
        )
    }

    pub fn idempotency_key_reused() -> Self {
        Self::new(
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was already used with another method, path or body; use a new key for a new request",
        )
    }

    /// 503 `STORAGE_UNAVAILABLE`: the database cannot take writes now (full disk, read-only
    /// file, failover); nothing was changed. The response carries `Retry-After`.
    pub fn storage_unavailable(fault: StorageFault) -> Self {
        let message = match fault {
            StorageFault::CommitUnconfirmed => {
                "The database connection was lost while the change was being saved; it may not \
                 have been saved. Check, then retry later"
            }
            StorageFault::Full
            | StorageFault::ReadOnly
            | StorageFault::Io
            | StorageFault::Busy
            | StorageFault::ConnectionLost
            | StorageFault::Unreachable => {
                "The database cannot take changes right now; nothing was saved. Retry later"
            }
        };
        Self::new(ErrorCode::StorageUnavailable, message)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "An internal error occurred")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        use ErrorCode as C;
        match err {
            StoreError::PhoneNumberNotFound => Self::phone_number_not_found(),
            StoreError::RequestNotFound => Self::request_not_found(),
            StoreError::AgentNotFound => Self::agent_not_found(),
            StoreError::WebhookEndpointNotFound => Self::webhook_endpoint_not_found(),
            StoreError::WebhookEndpointDisabled => Self::new(
                C::WebhookEndpointDisabled,
                "The webhook endpoint was disabled after it answered 410 Gone and receives nothing more; delete it and register it again",
            ),
            StoreError::ReleaseAlreadyPending => {
                Self::new(C::ReleaseAlreadyPending, MSG_ALREADY_PENDING)
            }
            StoreError::ReleaseAlreadyApproved => Self::new(
                C::ReleaseAlreadyApproved,
                "A release request for this phone number has already been approved and is being carried out",
            ),
            StoreError::PhoneNumberReleased => Self::new(
                C::PhoneNumberReleased,
                "Phone number has already been released",
            ),
            StoreError::PhoneNumberInUse { .. } => Self::new(C::PhoneNumberInUse, MSG_IN_USE),
            StoreError::PhoneNumberReleasePending => Self::new(
                C::PhoneNumberReleasePending,
                "Phone number has an open release request and cannot be assigned to an agent",
            ),
            StoreError::NotPending(status) => Self::new(
                C::ReleaseRequestNotPending,
                format!("Release request is {status} and can no longer be cancelled"),
            ),
            StoreError::Invalid { field, message } => Self::validation(field, message),
            // The request's claim on its key was taken over (its lock expired): its effect was
            // rolled back, and the key belongs to the request that took it.
            StoreError::IdempotencyKeyTaken => Self::idempotency_key_in_use(),
            // The write re-checked a token the API had accepted from its cache: revoked since.
            StoreError::Unauthenticated => Self::unauthorized(),
            StoreError::StorageUnavailable { fault, ref source } => {
                tracing::warn!(%fault, error = %source, "request refused: storage unavailable");
                Self::storage_unavailable(fault)
            }
            other @ (StoreError::EnvironmentNotFound
            | StoreError::ConfirmationMismatch
            | StoreError::SameReviewer
            | StoreError::StaffNotFound
            | StoreError::LastAdmin
            | StoreError::DuplicatePhoneNumber
            | StoreError::DuplicateStaff
            | StoreError::OutboxRowNotRetryable
            | StoreError::Database(_)) => {
                // The cause goes to the log only, once, here at the boundary.
                tracing::error!(error = ?other, "request failed");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            success: false,
            message: self.message,
            code: self.code,
            errors: self.errors,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            response.extensions_mut().insert(InternalErrorMarker);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BEARER_CHALLENGE));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORAGE_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_serialise_as_their_names() {
        let mut names = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(names.insert(code.as_str()), "{code:?} named twice");
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
    }

    #[test]
    fn a_401_carries_a_bearer_challenge() {
        let response = ApiError::unauthorized().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"releasedesk\""
        );
        let other = ApiError::agent_not_found().into_response();
        assert!(other.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
