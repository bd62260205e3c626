//! Webhook endpoints: register, list, read, delete, rotate the signing secret, send a test
//! event, and list an endpoint's deliveries. Their JSON shapes live here too: nothing else in
//! the API uses them.
//!
//! An endpoint URL is checked twice: its syntax and scheme here, against the server's policy,
//! and its host's addresses (every address the name resolves to must be public, unless the
//! server allows private ones). The worker checks the addresses again at every delivery.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use releasedesk_domain::{
    WebhookEndpointId, WebhookEvent, WebhookHost, WebhookPolicy, WebhookUrl,
    parse_webhook_description,
};
use releasedesk_store::wire::utc_seconds;
use releasedesk_store::{
    DeliveryState, NewWebhookEndpoint, Store, StoredResponse, WebhookDelivery, WebhookEndpoint,
    WebhookEndpointWithSecret,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

use super::{PageQuery, page_params};
use crate::ApiError;
use crate::dto::{Envelope, ListEnvelope, always_true};
use crate::error::ErrorBody;
use crate::extract::{Auth, JsonBody, WebhookEndpointPath};
use crate::idempotency::{self, Idempotency};

/// How long the API waits for DNS when checking a new endpoint's host.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

// ---- JSON shapes ---------------------------------------------------------------------------

/// Body of `POST /webhook-endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhookEndpointBody {
    /// Where deliveries are POSTed: an `https://` URL whose host resolves to public addresses
    /// only; no user name, password or `#fragment`.
    #[schema(schema_with = url_schema, required = true)]
    pub url: Option<String>,
    /// A note for yourself: one line, at most 200 characters.
    #[schema(value_type = String, nullable = false, max_length = 200, example = "Billing system")]
    pub description: Option<String>,
    /// The event types to receive (at least one); left out, all of them.
    #[schema(schema_with = subscribable_events_schema)]
    pub events: Option<Vec<String>>,
}

/// A webhook endpoint. Its signing secret is shown only when created or rotated.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct WebhookEndpointDto {
    pub id: WebhookEndpointId,
    #[schema(schema_with = url_schema)]
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 200)]
    pub description: Option<String>,
    /// The event types this endpoint receives.
    #[schema(schema_with = subscribable_events_schema)]
    pub events: Vec<String>,
    /// `false` once the endpoint answered `410 Gone`: it receives nothing more (delete it and
    /// create it again to resume).
    pub enabled: bool,
    #[serde(serialize_with = "utc_seconds::serialize")]
    pub created_at: DateTime<Utc>,
    /// When it was disabled.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disabled_reason: Option<String>,
}

impl From<WebhookEndpoint> for WebhookEndpointDto {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            description: e.description,
            events: e.events.iter().map(|e| e.as_str().to_owned()).collect(),
            enabled: e.enabled,
            created_at: e.created_at,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason,
        }
    }
}

/// A webhook endpoint with its new signing secret: store the secret now, it is not shown again.
// The endpoint's fields are repeated rather than flattened: the document then describes one
// closed object, as for every other answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpointWithSecret)]
pub struct WebhookEndpointWithSecretDto {
    pub id: WebhookEndpointId,
    #[schema(schema_with = url_schema)]
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 200)]
    pub description: Option<String>,
    #[schema(schema_with = subscribable_events_schema)]
    pub events: Vec<String>,
    pub enabled: bool,
    #[serde(serialize_with = "utc_seconds::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub disabled_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disabled_reason: Option<String>,
    /// The signing secret: `whsec_` and the base64 of 32 random bytes. Verify deliveries with
    /// it (Standard Webhooks).
    #[schema(
        pattern = "^whsec_[A-Za-z0-9+/]{43}=$",
        example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwC3hxdQU4L8Q="
    )]
    pub secret: String,
    /// After a rotation: until when deliveries also carry a signature by the previous secret.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl From<WebhookEndpointWithSecret> for WebhookEndpointWithSecretDto {
    fn from(e: WebhookEndpointWithSecret) -> Self {
        let endpoint = WebhookEndpointDto::from(e.endpoint);
        Self {
            id: endpoint.id,
            url: endpoint.url,
            description: endpoint.description,
            events: endpoint.events,
            enabled: endpoint.enabled,
            created_at: endpoint.created_at,
            disabled_at: endpoint.disabled_at,
            disabled_reason: endpoint.disabled_reason,
            secret: e.secret.expose().to_owned(),
            previous_secret_expires_at: e.previous_secret_expires_at,
        }
    }
}

/// The answer to a deletion.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeletedWebhookEndpoint)]
pub struct DeletedWebhookEndpointDto {
    pub id: WebhookEndpointId,
    #[schema(schema_with = always_true)]
    pub deleted: bool,
}

/// One delivery of one event to the endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct WebhookDeliveryDto {
    /// The `webhook-id` header of every attempt of this delivery.
    #[schema(
        pattern = "^msg_[0-9a-f]{32}$",
        example = "msg_0193a0b27c4e7d2a9f1e2b3c4d5e6f70"
    )]
    pub id: String,
    #[schema(schema_with = event_type_schema)]
    pub event_type: String,
    /// `pending` (retried until acknowledged, at least 24 hours), `delivered` (2xx) or `dead`
    /// (given up).
    #[schema(schema_with = delivery_state_schema)]
    pub state: String,
    /// Attempts made so far.
    #[schema(minimum = 0)]
    pub attempts: i32,
    /// The HTTP status of the last attempt, when it got one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 100, maximum = 599)]
    pub last_status_code: Option<u16>,
    /// What went wrong with the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_error: Option<String>,
    /// When the next attempt is due (only while `pending`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "utc_seconds::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<WebhookDelivery> for WebhookDeliveryDto {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            id: d.message_id(),
            event_type: d.event_type.as_str().to_owned(),
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
        }
    }
}

fn string_enum(values: impl IntoIterator<Item = &'static str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
}

fn url_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uri".into())))
        .max_length(Some(releasedesk_domain::MAX_WEBHOOK_URL_CHARS))
        .into()
}

fn subscribable_events_schema() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(string_enum(
            WebhookEvent::SUBSCRIBABLE.iter().map(|e| e.as_str()),
        ))
        .min_items(Some(1))
        .unique_items(true)
        .into()
}

fn event_type_schema() -> RefOr<Schema> {
    string_enum(WebhookEvent::ALL.iter().map(|e| e.as_str())).into()
}

fn delivery_state_schema() -> RefOr<Schema> {
    string_enum(DeliveryState::ALL.iter().map(|s| s.as_str())).into()
}

// ---- handlers ------------------------------------------------------------------------------

/// Register a webhook endpoint.
///
/// Every change of the environment's release requests that the endpoint subscribes to is then
/// POSTed to it, signed (Standard Webhooks). The answer carries the signing secret: it is shown
/// only here. At most 10 endpoints per environment.
#[utoipa::path(
    post,
    path = "/webhook-endpoints",
    operation_id = "createWebhookEndpoint",
    tag = "Webhooks",
    request_body(content = CreateWebhookEndpointBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, with its secret", body = Envelope<WebhookEndpointWithSecretDto>),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`: a URL that is not https, does not resolve or resolves to a non-public address; an unknown event type; a description too long; or 10 endpoints already", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(store): State<Store>,
    Auth(auth): Auth,
    idem: Idempotency,
    JsonBody(body): JsonBody<CreateWebhookEndpointBody>,
) -> Result<Response, ApiError> {
    let policy = store.options().webhooks;
    let url = body
        .url
        .ok_or_else(|| ApiError::validation("url", "is required"))?;
    let url =
        WebhookUrl::parse(&url, policy).map_err(|e| ApiError::validation("url", e.to_string()))?;
    let description = match body.description.as_deref() {
        None => None,
        Some(d) => {
            parse_webhook_description(d).map_err(|e| ApiError::validation("description", e))?
        }
    };
    let events = match body.events {
        None => Vec::new(),
        Some(names) if names.is_empty() => {
            return Err(ApiError::validation(
                "events",
                "must list at least one event type (leave it out to receive all)",
            ));
        }
        Some(names) => names
            .iter()
            .map(|n| {
                n.parse::<WebhookEvent>()
                    .ok()
                    .filter(|e| e.is_subscribable())
                    .ok_or_else(|| {
                        ApiError::validation(
                            "events",
                            format!("unknown event type {n:?}; one of {}", subscribable_list()),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    check_destination(&url, policy).await?;
    let render = |e: &WebhookEndpointWithSecret| with_secret_json(StatusCode::CREATED, e);
    let created = store
        .create_webhook_endpoint_idempotent(
            &auth,
            NewWebhookEndpoint {
                url,
                description,
                events,
            },
            idem.completion(&render),
        )
        .await?;
    tracing::info!(webhook_endpoint_id = %created.endpoint.id, "webhook endpoint created");
    Ok(idem.respond(&created, &render))
}

/// An endpoint with its secret in the success envelope, as the client receives it (and as a
/// replay of the same `Idempotency-Key` receives it again).
fn with_secret_json(status: StatusCode, e: &WebhookEndpointWithSecret) -> StoredResponse {
    idempotency::json(
        status,
        &Envelope::<WebhookEndpointWithSecretDto>::new(e.clone()),
    )
}

fn subscribable_list() -> String {
    WebhookEvent::SUBSCRIBABLE
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unless non-public addresses are allowed, every address the URL's host resolves to must be
/// public (the worker checks again at each delivery: DNS can change).
async fn check_destination(url: &WebhookUrl, policy: WebhookPolicy) -> Result<(), ApiError> {
    if policy.allow_private {
        return Ok(());
    }
    let refuse = |detail: String| {
        ApiError::validation("url", format!("must point to a public address: {detail}"))
    };
    let (host, addresses): (String, Vec<IpAddr>) = match url.host() {
        WebhookHost::Ip(ip) => (ip.to_string(), vec![ip]),
        WebhookHost::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), url.port()));
            let addresses = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect::<Vec<_>>(),
                Ok(Err(_)) | Err(_) => Vec::new(),
            };
            if addresses.is_empty() {
                return Err(ApiError::validation(
                    "url",
                    format!("the host {name} could not be resolved"),
                ));
            }
            (name, addresses)
        }
    };
    policy.check_addresses(addresses).map_err(|r| {
        if host == r.address.to_string() {
            refuse(format!("{} is {}", r.address, r.why))
        } else {
            refuse(format!("{host} resolves to {}, {}", r.address, r.why))
        }
    })
}

/// List the environment's webhook endpoints, oldest first (without secrets).
#[utoipa::path(
    get,
    path = "/webhook-endpoints",
    operation_id = "listWebhookEndpoints",
    tag = "Webhooks",
    responses(
        (status = 200, description = "Every endpoint of the environment (at most 10)", body = Envelope<Vec<WebhookEndpointDto>>),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(store): State<Store>,
    Auth(auth): Auth,
) -> Result<Json<Envelope<Vec<WebhookEndpointDto>>>, ApiError> {
    let endpoints = store.list_webhook_endpoints(&auth).await?;
    Ok(Json(Envelope::new(
        endpoints
            .into_iter()
            .map(WebhookEndpointDto::from)
            .collect::<Vec<_>>(),
    )))
}

/// Get one webhook endpoint (without its secret).
#[utoipa::path(
    get,
    path = "/webhook-endpoints/{webhook_endpoint_id}",
    operation_id = "getWebhookEndpoint",
    tag = "Webhooks",
    params(WebhookEndpointPath),
    responses(
        (status = 200, description = "The endpoint", body = Envelope<WebhookEndpointDto>),
        (status = 404, description = "`WEBHOOK_ENDPOINT_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(store): State<Store>,
    Auth(auth): Auth,
    WebhookEndpointPath(id): WebhookEndpointPath,
) -> Result<Json<Envelope<WebhookEndpointDto>>, ApiError> {
    let endpoint = store.get_webhook_endpoint(&auth, id).await?;
    Ok(Json(Envelope::new(endpoint)))
}

/// Delete a webhook endpoint.
///
/// It receives nothing more: deliveries to it that are still pending stop (`dead`).
#[utoipa::path(
    delete,
    path = "/webhook-endpoints/{webhook_endpoint_id}",
    operation_id = "deleteWebhookEndpoint",
    tag = "Webhooks",
    params(WebhookEndpointPath),
    responses(
        (status = 200, description = "Deleted", body = Envelope<DeletedWebhookEndpointDto>),
        (status = 404, description = "`WEBHOOK_ENDPOINT_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(store): State<Store>,
    Auth(auth): Auth,
    WebhookEndpointPath(id): WebhookEndpointPath,
) -> Result<Json<Envelope<DeletedWebhookEndpointDto>>, ApiError> {
    store.delete_webhook_endpoint(&auth, id).await?;
    tracing::info!(webhook_endpoint_id = %id, "webhook endpoint deleted");
    Ok(Json(Envelope::new(DeletedWebhookEndpointDto {
        id,
        deleted: true,
    })))
}

/// Rotate the endpoint's signing secret.
///
/// The answer carries the new secret (shown only here). For the next 24 hours every delivery
/// carries two signatures, by the new and by the previous secret, so the receiver can switch
/// secrets without rejecting a delivery.
#[utoipa::path(
    post,
    path = "/webhook-endpoints/{webhook_endpoint_id}/rotate-secret",
    operation_id = "rotateWebhookEndpointSecret",
    tag = "Webhooks",
    params(WebhookEndpointPath),
    responses(
        (status = 200, description = "The endpoint with its new secret", body = Envelope<WebhookEndpointWithSecretDto>),
        (status = 404, description = "`WEBHOOK_ENDPOINT_NOT_FOUND`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_secret(
    State(store): State<Store>,
    Auth(auth): Auth,
    idem: Idempotency,
    WebhookEndpointPath(id): WebhookEndpointPath,
) -> Result<Response, ApiError> {
    let render = |e: &WebhookEndpointWithSecret| with_secret_json(StatusCode::OK, e);
    let rotated = store
        .rotate_webhook_secret_idempotent(&auth, id, idem.completion(&render))
        .await?;
    tracing::info!(webhook_endpoint_id = %rotated.endpoint.id, "webhook secret rotated");
    Ok(idem.respond(&rotated, &render))
}

/// Send a `webhook.test` event to the endpoint.
///
/// Queued at once and delivered like any event (signed, retried); the answer is the delivery,
/// to follow in the endpoint's deliveries.
#[utoipa::path(
    post,
    path = "/webhook-endpoints/{webhook_endpoint_id}/test",
    operation_id = "sendWebhookEndpointTest",
    tag = "Webhooks",
    params(WebhookEndpointPath),
    responses(
        (status = 202, description = "Queued", body = Envelope<WebhookDeliveryDto>),
        (status = 404, description = "`WEBHOOK_ENDPOINT_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`WEBHOOK_ENDPOINT_DISABLED`: it answered 410 Gone and receives nothing more", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send_test(
    State(store): State<Store>,
    Auth(auth): Auth,
    idem: Idempotency,
    WebhookEndpointPath(id): WebhookEndpointPath,
) -> Result<Response, ApiError> {
    let render = |d: &WebhookDelivery| {
        idempotency::json(
            StatusCode::ACCEPTED,
            &Envelope::<WebhookDeliveryDto>::new(d.clone()),
        )
    };
    let delivery = store
        .send_test_webhook_idempotent(&auth, id, idem.completion(&render))
        .await?;
    Ok(idem.respond(&delivery, &render))
}

/// List the endpoint's deliveries, newest first.
#[utoipa::path(
    get,
    path = "/webhook-endpoints/{webhook_endpoint_id}/deliveries",
    operation_id = "listWebhookEndpointDeliveries",
    tag = "Webhooks",
    params(WebhookEndpointPath, PageQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = ListEnvelope<WebhookDeliveryDto>),
        (status = 404, description = "`WEBHOOK_ENDPOINT_NOT_FOUND`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` (bad limit or cursor)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn deliveries(
    State(store): State<Store>,
    Auth(auth): Auth,
    WebhookEndpointPath(id): WebhookEndpointPath,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListEnvelope<WebhookDeliveryDto>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = store
        .list_webhook_deliveries(&auth, id, limit, cursor)
        .await?;
    Ok(Json(ListEnvelope::page(page, WebhookDeliveryDto::from)))
}
