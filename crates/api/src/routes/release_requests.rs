//! Release requests: create, list, read, cancel.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use releasedesk_domain::{PhoneNumberId, Reason, RequestId, RequestStatus};
use releasedesk_store::{ListFilter, ReleaseRequest, Store, StoredResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::page_params;
use crate::ApiError;
use crate::dto::{Envelope, ReleaseRequestDto, RequestReleaseBody};
use crate::error::ErrorBody;
use crate::extract::{Auth, JsonBody};
use crate::idempotency::{self, Idempotency};

/// Request the release of a phone number.
///
/// The request enters `pending` and is reviewed by support before the number is released.
/// Detach the number from active agents first (`PUT /agents/{agent_id}/calling`).
#[utoipa::path(
    post,
    path = "/phone-numbers/{phone_number_id}/request-release",
    tag = "Release requests",
    params(("phone_number_id" = String, Path, description = "UUID of the phone number to release.")),
    request_body(content = RequestReleaseBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, status `pending`", body = Envelope<ReleaseRequestDto>),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 404, description = "`PHONE_NUMBER_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`RELEASE_ALREADY_PENDING`, `RELEASE_ALREADY_APPROVED` or `PHONE_NUMBER_RELEASED`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` or `PHONE_NUMBER_IN_USE`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn request_release(
    State(store): State<Store>,
    Auth(auth): Auth,
    idem: Idempotency,
    Path(phone_number_id): Path<String>,
    JsonBody(body): JsonBody<RequestReleaseBody>,
) -> Result<Response, ApiError> {
    let reason = body
        .reason
        .ok_or_else(|| ApiError::validation("reason", "is required"))?;
    let reason =
        Reason::parse(&reason).map_err(|e| ApiError::validation("reason", e.to_string()))?;
    let phone_number_id =
        PhoneNumberId::parse(&phone_number_id).map_err(|_| ApiError::phone_number_not_found())?;
    let render = |r: &ReleaseRequest| request_json(StatusCode::CREATED, r);
    let request = store
        .request_release_idempotent(&auth, phone_number_id, reason, idem.completion(&render))
        .await?;
    tracing::info!(request_id = %request.id, "release requested");
    Ok(idem.respond(&request, &render))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only requests in this status.
    status: Option<String>,
    /// Only requests for this phone number.
    phone_number_id: Option<String>,
    /// Page size, 1–100 (default 50).
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List the environment's release requests, newest first.
#[utoipa::path(
    get,
    path = "/phone-numbers/release-requests",
    tag = "Release requests",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of requests", body = Envelope<Vec<ReleaseRequestDto>>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` (bad status, limit, cursor or phone_number_id)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(store): State<Store>,
    Auth(auth): Auth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Envelope<Vec<ReleaseRequestDto>>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<RequestStatus>().map_err(|_| {
            ApiError::validation(
                "status",
                "must be one of pending, approved, released, cancelled, rejected",
            )
        })?),
    };
    let phone_number_id = match q.phone_number_id.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            PhoneNumberId::parse(s)
                .map_err(|_| ApiError::validation("phone_number_id", "is not a valid id"))?,
        ),
    };
    let filter = ListFilter {
        status,
        phone_number_id,
        limit,
        cursor,
    };
    let page = store.list_requests(&auth, &filter).await?;
    Ok(Json(Envelope::page(page, ReleaseRequestDto::from)))
}

/// Get one release request.
#[utoipa::path(
    get,
    path = "/phone-numbers/release-requests/{request_id}",
    tag = "Release requests",
    params(("request_id" = String, Path, description = "UUID of the release request.")),
    responses(
        (status = 200, description = "The request", body = Envelope<ReleaseRequestDto>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 404, description = "`RELEASE_REQUEST_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(store): State<Store>,
    Auth(auth): Auth,
    Path(request_id): Path<String>,
) -> Result<Json<Envelope<ReleaseRequestDto>>, ApiError> {
    let id = RequestId::parse(&request_id).map_err(|_| ApiError::request_not_found())?;
    let request = store.get_request(&auth, id).await?;
    Ok(Json(Envelope::new(request.into())))
}

/// Cancel a pending release request.
///
/// Only `pending` requests can be cancelled; an approved request is irreversible.
#[utoipa::path(
    post,
    path = "/phone-numbers/release-requests/{request_id}/cancel",
    tag = "Release requests",
    params(("request_id" = String, Path, description = "UUID of the release request.")),
    responses(
        (status = 200, description = "Cancelled", body = Envelope<ReleaseRequestDto>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 404, description = "`RELEASE_REQUEST_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`RELEASE_REQUEST_NOT_PENDING`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(store): State<Store>,
    Auth(auth): Auth,
    idem: Idempotency,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = RequestId::parse(&request_id).map_err(|_| ApiError::request_not_found())?;
    let render = |r: &ReleaseRequest| request_json(StatusCode::OK, r);
    let request = store
        .cancel_request_idempotent(&auth, id, idem.completion(&render))
        .await?;
    tracing::info!(request_id = %request.id, "release request cancelled");
    Ok(idem.respond(&request, &render))
}

/// A release request in the success envelope, as the client receives it.
fn request_json(status: StatusCode, request: &ReleaseRequest) -> StoredResponse {
    idempotency::json(
        status,
        &Envelope::new(ReleaseRequestDto::from(request.clone())),
    )
}
