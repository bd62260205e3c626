//! Release requests: create, list, read, cancel.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use releasedesk_domain::{PhoneNumberId, Reason, RequestStatus};
use releasedesk_store::{ListFilter, ReleaseRequest, ReleaseRequestObject, Store, StoredResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::page_params;
use crate::ApiError;
use crate::dto::{Envelope, ListEnvelope, RequestReleaseBody};
use crate::error::ErrorBody;
use crate::extract::{Auth, JsonBody, PhoneNumberPath, RequestPath, WriteAuth};
use crate::idempotency::{self, Idempotency};

/// Request the release of a phone number.
///
/// The request enters `pending` and is reviewed by support before the number is released.
/// Detach the number from active agents first (`PUT /agents/{agent_id}/calling`).
#[utoipa::path(
    post,
    path = "/phone-numbers/{phone_number_id}/request-release",
    operation_id = "createReleaseRequest",
    tag = "Release requests",
    params(PhoneNumberPath),
    request_body(content = RequestReleaseBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, status `pending`", body = Envelope<ReleaseRequestObject>),
        (status = 400, description = "`INVALID_JSON`: not JSON, not an object, or a field of the wrong type", body = ErrorBody),
        (status = 404, description = "`PHONE_NUMBER_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`RELEASE_ALREADY_PENDING`, `RELEASE_ALREADY_APPROVED` or `PHONE_NUMBER_RELEASED`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` (the reason) or `PHONE_NUMBER_IN_USE`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn request_release(
    State(store): State<Store>,
    WriteAuth(auth): WriteAuth,
    idem: Idempotency,
    PhoneNumberPath(phone_number_id): PhoneNumberPath,
    JsonBody(body): JsonBody<RequestReleaseBody>,
) -> Result<Response, ApiError> {
    let reason = body
        .reason
        .ok_or_else(|| ApiError::validation("reason", "is required"))?;
    let reason =
        Reason::parse(&reason).map_err(|e| ApiError::validation("reason", e.to_string()))?;
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
    #[param(value_type = Option<RequestStatus>, inline, nullable = false)]
    status: Option<String>,
    /// Only requests for this phone number.
    #[param(value_type = Option<PhoneNumberId>, inline, nullable = false)]
    phone_number_id: Option<String>,
    /// Page size.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100, default = 50, nullable = false)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
}

/// List the environment's release requests, newest first.
#[utoipa::path(
    get,
    path = "/phone-numbers/release-requests",
    operation_id = "listReleaseRequests",
    tag = "Release requests",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of requests", body = ListEnvelope<ReleaseRequestObject>),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `status`, `limit`, `cursor` or `phone_number_id`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(store): State<Store>,
    Auth(auth): Auth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListEnvelope<ReleaseRequestObject>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<RequestStatus>().map_err(|_| {
            let names: Vec<&str> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::validation("status", format!("must be one of {}", names.join(", ")))
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
    Ok(Json(ListEnvelope::page(page, ReleaseRequestObject::from)))
}

/// Get one release request.
#[utoipa::path(
    get,
    path = "/phone-numbers/release-requests/{request_id}",
    operation_id = "getReleaseRequest",
    tag = "Release requests",
    params(RequestPath),
    responses(
        (status = 200, description = "The request", body = Envelope<ReleaseRequestObject>),
        (status = 404, description = "`RELEASE_REQUEST_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(store): State<Store>,
    Auth(auth): Auth,
    RequestPath(id): RequestPath,
) -> Result<Json<Envelope<ReleaseRequestObject>>, ApiError> {
    let request = store.get_request(&auth, id).await?;
    Ok(Json(Envelope::new(request)))
}

/// Cancel a pending release request.
///
/// Only `pending` requests can be cancelled; an approved request is irreversible. A body, if
/// any, is ignored.
#[utoipa::path(
    post,
    path = "/phone-numbers/release-requests/{request_id}/cancel",
    operation_id = "cancelReleaseRequest",
    tag = "Release requests",
    params(RequestPath),
    responses(
        (status = 200, description = "Cancelled", body = Envelope<ReleaseRequestObject>),
        (status = 404, description = "`RELEASE_REQUEST_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`RELEASE_REQUEST_NOT_PENDING`: the message names its status", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(store): State<Store>,
    Auth(auth): Auth,
    idem: Idempotency,
    RequestPath(id): RequestPath,
) -> Result<Response, ApiError> {
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
        &Envelope::<ReleaseRequestObject>::new(request.clone()),
    )
}
