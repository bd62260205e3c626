//! The API's one error type and its JSON envelope. Every failure the API reports goes through
//! [`ApiError`]; store errors are mapped to codes in exactly one place ([`From<StoreError>`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use releasedesk_store::{STORAGE_RETRY_AFTER_SECS, StorageFault, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// The seed's own messages, verbatim.
pub const MSG_ALREADY_PENDING: &str = "A release request for this phone number is already pending";
pub const MSG_IN_USE: &str =
    "Phone number is currently assigned to active agents and cannot be released";
pub const MSG_UNAUTHORIZED: &str = "Missing, invalid or revoked API token";

/// `{"success": false, "message": …, "code": …}` plus `errors` on validation failures.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    /// A stable, machine-readable code such as `RELEASE_ALREADY_PENDING`.
    pub code: &'static str,
    /// Field → messages, on `VALIDATION_ERROR` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

/// Marks a response whose message must carry the request id; the request-id middleware fills
/// it in (the handler that failed does not know the id, the middleware does).
#[derive(Debug, Clone, Copy)]
pub struct InternalErrorMarker;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", MSG_UNAUTHORIZED)
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("Request body is not valid JSON of the expected shape: {detail}"),
        )
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "VALIDATION_ERROR",
            message: "The request has invalid fields".into(),
            errors: Some(errors),
        }
    }

    pub fn phone_number_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "PHONE_NUMBER_NOT_FOUND",
            "Phone number not found",
        )
    }

    pub fn request_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "RELEASE_REQUEST_NOT_FOUND",
            "Release request not found",
        )
    }

    pub fn agent_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "AGENT_NOT_FOUND", "Agent not found")
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
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORAGE_UNAVAILABLE",
            message,
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "An internal error occurred",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        use StatusCode as S;
        match err {
            StoreError::PhoneNumberNotFound => Self::phone_number_not_found(),
            StoreError::RequestNotFound => Self::request_not_found(),
            StoreError::AgentNotFound => Self::agent_not_found(),
            StoreError::ReleaseAlreadyPending => {
                Self::new(S::CONFLICT, "RELEASE_ALREADY_PENDING", MSG_ALREADY_PENDING)
            }
            StoreError::ReleaseAlreadyApproved => Self::new(
                S::CONFLICT,
                "RELEASE_ALREADY_APPROVED",
                "A release request for this phone number has already been approved and is being carried out",
            ),
            StoreError::PhoneNumberReleased => Self::new(
                S::CONFLICT,
                "PHONE_NUMBER_RELEASED",
                "Phone number has already been released",
            ),
            StoreError::PhoneNumberInUse { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "PHONE_NUMBER_IN_USE", MSG_IN_USE)
            }
            StoreError::PhoneNumberReleasePending => Self::new(
                S::CONFLICT,
                "PHONE_NUMBER_RELEASE_PENDING",
                "Phone number has an open release request and cannot be assigned to an agent",
            ),
            StoreError::NotPending(status) => Self::new(
                S::CONFLICT,
                "RELEASE_REQUEST_NOT_PENDING",
                format!("Release request is {status} and can no longer be cancelled"),
            ),
            StoreError::Invalid { field, message } => Self::validation(field, message),
            StoreError::StorageUnavailable { fault, ref source } => {
                tracing::warn!(%fault, error = %source, "request refused: storage unavailable");
                Self::storage_unavailable(fault)
            }
            other @ (StoreError::EnvironmentNotFound
            | StoreError::ConfirmationMismatch
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
        let internal = self.status == StatusCode::INTERNAL_SERVER_ERROR;
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let body = ErrorBody {
            success: false,
            message: self.message,
            code: self.code,
            errors: self.errors,
        };
        let mut response = (self.status, Json(body)).into_response();
        if internal {
            response.extensions_mut().insert(InternalErrorMarker);
        }
        if unavailable {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORAGE_RETRY_AFTER_SECS),
            );
        }
        response
    }
}
