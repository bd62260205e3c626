//! Extractors: the bearer token, JSON bodies with the API's own rejections, and ids in paths.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use releasedesk_domain::{AgentId, ApiToken, PhoneNumberId, RequestId, WebhookEndpointId};
use releasedesk_store::{AuthContext, Store};
use serde::de::{DeserializeOwned, IgnoredAny};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::{IntoParams, PartialSchema};

use crate::ApiError;
use crate::error::ErrorCode;

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
        caller(parts, Store::from_ref(state), false).await.map(Auth)
    }
}

/// [`Auth`] for a write that checks the token again itself (the create): the identity may come
/// from the store's short cache ([`Store::authenticate_for_write`]), and a token revoked since
/// is refused by the write with the same 401.
pub struct WriteAuth(pub AuthContext);

impl<S> FromRequestParts<S> for WriteAuth
where
    Store: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        caller(parts, Store::from_ref(state), true)
            .await
            .map(WriteAuth)
    }
}

/// The bearer token of the request, well-formed, or the 401.
fn bearer(parts: &Parts) -> Result<ApiToken, ApiError> {
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
    ApiToken::parse(credentials.trim()).map_err(|_| ApiError::unauthorized())
}

/// The caller of the request's bearer token, recorded in the request's span, or the 401.
/// `for_write`: the identity may come from the store's cache ([`WriteAuth`]).
async fn caller(parts: &Parts, store: Store, for_write: bool) -> Result<AuthContext, ApiError> {
    let hash = bearer(parts)?.hash();
    let ctx = if for_write {
        store.authenticate_for_write(&hash).await?
    } else {
        store.authenticate(&hash).await?
    }
    .ok_or_else(ApiError::unauthorized)?;
    tracing::Span::current().record(
        "environment_id",
        tracing::field::display(ctx.environment_id),
    );
    Ok(ctx)
}

/// A JSON body: 415 without `Content-Type: application/json` (parameters such as `charset` are
/// fine), 413 over [`MAX_BODY_BYTES`], 400 when it is not JSON of the expected shape.
///
/// The body must be a JSON *object*: serde would otherwise read a struct from an array of its
/// fields in order (`["…"]` as `{"reason": "…"}`), which is not what any client means.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Content-Type must be application/json",
            ));
        }
        let bytes = body_bytes(req).await?;
        if !starts_an_object(&bytes) {
            // Say what is wrong: broken JSON, or well-formed JSON that is not an object.
            return Err(match serde_json::from_slice::<IgnoredAny>(&bytes) {
                Ok(_) => ApiError::invalid_json("the body must be a JSON object"),
                Err(e) => ApiError::invalid_json(e),
            });
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(ApiError::invalid_json)
    }
}

/// Whether the first significant byte opens an object. Once the body parses, that is exactly
/// "the body is a JSON object" (JSON white space is these four bytes, RFC 8259 §2).
fn starts_an_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

/// The request's body, buffered: 413 over [`MAX_BODY_BYTES`] (declared or streamed; `Bytes`'
/// own extractor applies the router's body limit), 400 when it cannot be read.
pub(crate) async fn body_bytes(req: Request) -> Result<Bytes, ApiError> {
    let bytes = Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::invalid_json(rejection.body_text())
        }
    })?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

pub fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "Request body must not exceed 16 KiB",
    )
}

/// Declares a typed path extractor for one resource's id: a handler starts with the parsed id,
/// and a segment that is not an id (or not even UTF-8, such as `%ff`) is that resource's 404,
/// written here once. It also describes the parameter for the OpenAPI document.
macro_rules! id_path {
    ($(#[$doc:meta])* $name:ident($id:ty), $param:literal, $description:literal, $not_found:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub $id);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                let raw = match Path::<String>::from_request_parts(parts, state).await {
                    Ok(Path(raw)) => raw,
                    Err(PathRejection::FailedToDeserializePathParams(_)) => return Err($not_found),
                    Err(other) => {
                        // A route without the parameter: a bug in the router, not the caller.
                        tracing::error!(error = %other.body_text(), "path parameter {} missing", $param);
                        return Err(ApiError::internal());
                    }
                };
                <$id>::parse(&raw).map($name).map_err(|_| $not_found)
            }
        }

        impl IntoParams for $name {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![
                    ParameterBuilder::new()
                        .name($param)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .description(Some($description))
                        .schema(Some(<$id as PartialSchema>::schema()))
                        .build(),
                ]
            }
        }
    };
}

id_path!(
    /// `{phone_number_id}`: a malformed id is `PHONE_NUMBER_NOT_FOUND`.
    PhoneNumberPath(PhoneNumberId),
    "phone_number_id",
    "UUID of the phone number.",
    ApiError::phone_number_not_found()
);
id_path!(
    /// `{request_id}`: a malformed id is `RELEASE_REQUEST_NOT_FOUND`.
    RequestPath(RequestId),
    "request_id",
    "UUID of the release request.",
    ApiError::request_not_found()
);
id_path!(
    /// `{agent_id}`: a malformed id is `AGENT_NOT_FOUND`.
    AgentPath(AgentId),
    "agent_id",
    "UUID of the agent.",
    ApiError::agent_not_found()
);

id_path!(
    /// `{webhook_endpoint_id}`: a malformed id is `WEBHOOK_ENDPOINT_NOT_FOUND`.
    WebhookEndpointPath(WebhookEndpointId),
    "webhook_endpoint_id",
    "UUID of the webhook endpoint.",
    ApiError::webhook_endpoint_not_found()
);

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

    #[test]
    fn only_objects_are_bodies() {
        for ok in [&b"{}"[..], b" \r\n\t{\"reason\": \"x\"}"] {
            assert!(starts_an_object(ok));
        }
        for bad in [
            &b""[..],
            b"[]",
            b"[\"a reason\"]",
            b"\"text\"",
            b"null",
            b"1",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(!starts_an_object(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
