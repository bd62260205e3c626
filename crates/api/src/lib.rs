//! releasedesk's customer REST API (`/api/v1`), on axum 0.8.
//!
//! Conventions: one error type ([`ApiError`]) rendered as the envelope
//! `{"success": false, "message", "code"}`; successes as `{"success": true, "data"}`; every
//! query scoped to the bearer token's environment; the OpenAPI 3.1 document is generated from
//! the handlers themselves (utoipa), so it cannot drift from the routes.

mod dto;
mod error;
mod extract;
mod idempotency;
mod openapi;
mod routes;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use releasedesk_store::Store;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{
    ApiError, BEARER_CHALLENGE, ErrorBody, ErrorCode, MSG_ALREADY_PENDING, MSG_IN_USE,
    MSG_UNAUTHORIZED,
};
pub use extract::{AgentPath, MAX_BODY_BYTES, PhoneNumberPath, RequestPath, WebhookEndpointPath};

fn operations() -> (Router<Store>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::release_requests::request_release))
        .routes(routes!(routes::release_requests::list))
        .routes(routes!(routes::release_requests::get))
        .routes(routes!(routes::release_requests::cancel))
        .routes(routes!(routes::phone_numbers::list))
        .routes(routes!(routes::phone_numbers::get))
        .routes(routes!(routes::agents::list))
        .routes(routes!(routes::agents::update_calling))
        .routes(routes!(routes::webhooks::create, routes::webhooks::list))
        .routes(routes!(routes::webhooks::get, routes::webhooks::delete))
        .routes(routes!(routes::webhooks::rotate_secret))
        .routes(routes!(routes::webhooks::send_test))
        .routes(routes!(routes::webhooks::deliveries))
        .split_for_parts()
}

/// The OpenAPI document as utoipa builds it from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().1
}

/// The OpenAPI document as served at `/api/v1/openapi.json`: utoipa's, plus `required: true`
/// on the response headers the API always sends (utoipa's header object cannot say so).
pub fn openapi_document() -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi()).expect("the OpenAPI document is JSON");
    openapi::mark_required_headers(&mut doc);
    doc
}

fn api_router() -> (Router<Store>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = operations();
    idempotency::document(&mut doc);
    openapi::add_common_responses(&mut doc);
    (router, doc)
}

/// Every `/api/v1/...` route.
pub fn router(store: Store) -> Router {
    let (routes, _) = api_router();
    let doc = std::sync::Arc::new(openapi_document());
    let api = routes
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        // Every POST route, and only the routes (an unknown path is a plain 404).
        .route_layer(middleware::from_fn_with_state(
            store.clone(),
            idempotency::layer,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by `JsonBody`, which turns the limit into a 413 envelope; the extra
        // byte lets it tell "exactly at the limit" from "over".
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .layer(middleware::from_fn(reject_oversized_and_tag_errors))
        .with_state(store);
    // The nested router sees neither `/api/v1` nor `/api/v1/` (its catch-all needs a segment):
    // both are endpoints that do not exist, in the envelope like every other.
    Router::new()
        .nest("/api/v1", api)
        .route("/api/v1", any(not_found))
        .route("/api/v1/", any(not_found))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "No such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this endpoint",
    )
}

/// Refuses a declared `Content-Length` over the limit before anything is read, and puts the
/// request id into 500 messages (the handler that failed does not know it; this layer does).
async fn reject_oversized_and_tag_errors(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return extract::too_large().into_response();
    }
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    if response
        .extensions()
        .get::<error::InternalErrorMarker>()
        .is_none()
    {
        return response;
    }
    let message = match request_id {
        Some(id) => format!("An internal error occurred; quote request id {id} to support"),
        None => "An internal error occurred".to_owned(),
    };
    let mut response = ApiError::new(ErrorCode::InternalError, message).into_response();
    response
        .extensions_mut()
        .remove::<error::InternalErrorMarker>();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
