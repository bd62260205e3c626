//! The environment's phone numbers.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use releasedesk_store::Store;

use super::{PageQuery, page_params};
use crate::ApiError;
use crate::dto::{Envelope, ListEnvelope, PhoneNumberDto};
use crate::error::ErrorBody;
use crate::extract::{Auth, PhoneNumberPath};

/// List the environment's phone numbers with their agents and open request, oldest first.
#[utoipa::path(
    get,
    path = "/phone-numbers",
    operation_id = "listPhoneNumbers",
    tag = "Phone numbers",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of numbers", body = ListEnvelope<PhoneNumberDto>),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `limit` or `cursor`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(store): State<Store>,
    Auth(auth): Auth,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListEnvelope<PhoneNumberDto>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = store
        .list_phone_numbers(auth.environment_id, limit, cursor)
        .await?;
    Ok(Json(ListEnvelope::page(page, PhoneNumberDto::from)))
}

/// Get one phone number.
#[utoipa::path(
    get,
    path = "/phone-numbers/{phone_number_id}",
    operation_id = "getPhoneNumber",
    tag = "Phone numbers",
    params(PhoneNumberPath),
    responses(
        (status = 200, description = "The number", body = Envelope<PhoneNumberDto>),
        (status = 404, description = "`PHONE_NUMBER_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(store): State<Store>,
    Auth(auth): Auth,
    PhoneNumberPath(id): PhoneNumberPath,
) -> Result<Json<Envelope<PhoneNumberDto>>, ApiError> {
    let number = store.get_phone_number(auth.environment_id, id).await?;
    Ok(Json(Envelope::new(number)))
}
