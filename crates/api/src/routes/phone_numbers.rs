//! The environment's phone numbers.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use releasedesk_domain::PhoneNumberId;
use releasedesk_store::Store;
use serde::Deserialize;
use utoipa::IntoParams;

use super::page_params;
use crate::ApiError;
use crate::dto::{Envelope, PhoneNumberDto};
use crate::error::ErrorBody;
use crate::extract::Auth;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 50).
    pub(crate) limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// List the environment's phone numbers with their agents and open request, oldest first.
#[utoipa::path(
    get,
    path = "/phone-numbers",
    tag = "Phone numbers",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of numbers", body = Envelope<Vec<PhoneNumberDto>>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(store): State<Store>,
    Auth(auth): Auth,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Envelope<Vec<PhoneNumberDto>>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = store
        .list_phone_numbers(auth.environment_id, limit, cursor)
        .await?;
    Ok(Json(Envelope::page(page, PhoneNumberDto::from)))
}

/// Get one phone number.
#[utoipa::path(
    get,
    path = "/phone-numbers/{phone_number_id}",
    tag = "Phone numbers",
    params(("phone_number_id" = String, Path, description = "UUID of the phone number.")),
    responses(
        (status = 200, description = "The number", body = Envelope<PhoneNumberDto>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 404, description = "`PHONE_NUMBER_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(store): State<Store>,
    Auth(auth): Auth,
    Path(id): Path<String>,
) -> Result<Json<Envelope<PhoneNumberDto>>, ApiError> {
    let id = PhoneNumberId::parse(&id).map_err(|_| ApiError::phone_number_not_found())?;
    let number = store.get_phone_number(auth.environment_id, id).await?;
    Ok(Json(Envelope::new(number.into())))
}
