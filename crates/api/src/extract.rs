//! Extractors: the bearer token, JSON bodies with the API's own rejections, and ids in paths.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use releasedesk_domain::ApiToken;
use releasedesk_store::{AuthContext, Store};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The environment of the request's `Authorization: Bearer talq_…` token.
///
/// The scheme is matched case-insensitively (RFC 9110 §11.1); a missing, malformed, unknown or
/// revoked token all get the same 401.
pub struct Auth(pub AuthContext);

impl<S> FromRequestParts<S> for Auth
where
    Store: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let (scheme, credentials) = header
            .trim()
            .split_once(' ')
            .ok_or_else(ApiError::unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized());
        }
        let token = ApiToken::parse(credentials.trim()).map_err(|_| ApiError::unauthorized())?;
        let store = Store::from_ref(state);
        let ctx = store
            .authenticate(&token.hash())
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        tracing::Span::current().record(
            "environment_id",
            tracing::field::display(ctx.environment_id),
        );
        Ok(Auth(ctx))
    }
}

/// A JSON body: 415 without `Content-Type: application/json` (parameters such as `charset` are
/// fine), 413 over [`MAX_BODY_BYTES`], 400 when it is not JSON of the expected shape.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::invalid_json(rejection.body_text())
            }
        })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(ApiError::invalid_json)
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "Request body must not exceed 16 KiB",
    )
}

fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types() {
        let ok = [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
        ];
        for v in ok {
            assert!(is_json(Some(&HeaderValue::from_static(v))), "{v}");
        }
        let bad = [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "",
        ];
        for v in bad {
            assert!(!is_json(Some(&HeaderValue::from_static(v))), "{v}");
        }
        assert!(!is_json(None));
    }
}
