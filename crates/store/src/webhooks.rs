//! Webhook endpoints (per environment) and their deliveries.
//!
//! A delivery is an outbox row of kind [`OutboxKind::Webhook`]: written by
//! [`enqueue_webhooks`] in the transaction of the change it announces, one per enabled endpoint
//! subscribed to the event, and carried out by the outbox worker with the same lease, retries
//! and `dead` state as every other row. The row keeps the exact body it sends, so every retry
//! sends (and signs) the same bytes; its id is the stable `webhook-id`.
//!
//! Secrets are HMAC keys: the worker needs each one in full to sign, so they are stored as they
//! are (a hash could not sign). They leave the store only when created or rotated (to be shown
//! once) and to the worker; a deleted endpoint's secrets are erased.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use releasedesk_domain::{
    EnvironmentId, OutboxId, RequestId, WebhookEndpointId, WebhookEvent, WebhookSecret, WebhookUrl,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::audit::Event;
use crate::entities::{outbox, webhook_endpoint};
use crate::outbox::{mark_failed_in, mark_sent_in, pending_row};
use crate::paging::{Cursor, Page};
use crate::views::parse_column;
use crate::{
    Actor, AuditAction, AuthContext, Backend, Completion, OutboxKind, OutboxState, Store,
    StoreError, now,
};

/// Endpoints an environment may have at once.
pub const MAX_WEBHOOK_ENDPOINTS: u64 = 10;

/// How long the secret replaced by a rotation still signs deliveries.
pub const PREVIOUS_SECRET_VALID_FOR: TimeDelta = TimeDelta::hours(24);

/// A customer's webhook endpoint, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub environment_id: EnvironmentId,
    pub url: String,
    pub description: Option<String>,
    /// The subscribed event types, in their canonical order.
    pub events: Vec<WebhookEvent>,
    /// `false` once the endpoint answered `410 Gone`: it receives nothing more.
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl TryFrom<webhook_endpoint::Model> for WebhookEndpoint {
    type Error = StoreError;
    fn try_from(m: webhook_endpoint::Model) -> Result<Self, StoreError> {
        Ok(Self {
            events: parse_events(&m.events)?,
            id: m.id.into(),
            environment_id: m.environment_id.into(),
            url: m.url,
            description: m.description,
            enabled: m.enabled,
            created_at: m.created_at,
            disabled_at: m.disabled_at,
            disabled_reason: m.disabled_reason,
        })
    }
}

/// What a new endpoint is made of, parsed at the edge.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub url: WebhookUrl,
    pub description: Option<String>,
    /// Subscribable events; empty means all of them.
    pub events: Vec<WebhookEvent>,
}

/// An endpoint with its new signing secret: the answer to a creation or a rotation, the only
/// moments the secret is shown.
#[derive(Debug, Clone)]
pub struct WebhookEndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: WebhookSecret,
    /// After a rotation: until when the replaced secret still signs deliveries.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// A delivery's state as the customer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet acknowledged; retried until it is, or until it gives up.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up (retries exhausted, endpoint deleted or gone).
    Dead,
}

impl DeliveryState {
    pub const ALL: &'static [DeliveryState] = &[
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Dead,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }
}

impl From<OutboxState> for DeliveryState {
    fn from(s: OutboxState) -> Self {
        match s {
            OutboxState::Pending => DeliveryState::Pending,
            OutboxState::Sent => DeliveryState::Delivered,
            OutboxState::Dead => DeliveryState::Dead,
        }
    }
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: OutboxId,
    pub endpoint_id: WebhookEndpointId,
    pub event_type: WebhookEvent,
    pub state: DeliveryState,
    pub attempts: i32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    /// When the next attempt is due; only while `pending`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl WebhookDelivery {
    /// The `webhook-id` header of every attempt of this delivery.
    pub fn message_id(&self) -> String {
        webhook_message_id(self.id)
    }
}

impl TryFrom<outbox::Model> for WebhookDelivery {
    type Error = StoreError;
    fn try_from(m: outbox::Model) -> Result<Self, StoreError> {
        let state: OutboxState = parse_column("outbox.state", &m.state)?;
        let corrupt = |what: &str| {
            StoreError::Database(sea_orm::DbErr::Type(format!(
                "webhook delivery {} has no {what}",
                m.id
            )))
        };
        Ok(Self {
            id: m.id.into(),
            endpoint_id: m
                .webhook_endpoint_id
                .ok_or_else(|| corrupt("endpoint"))?
                .into(),
            event_type: parse_column(
                "outbox.event_type",
                m.event_type
                    .as_deref()
                    .ok_or_else(|| corrupt("event type"))?,
            )?,
            state: state.into(),
            attempts: m.attempts,
            last_status_code: m.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: m.last_error,
            next_attempt_at: (state == OutboxState::Pending).then_some(m.next_attempt_at),
            created_at: m.created_at,
        })
    }
}

/// The `webhook-id` of a delivery: `msg_` and its outbox row id, the same on every retry.
pub fn webhook_message_id(id: OutboxId) -> String {
    format!("msg_{}", id.as_uuid().simple())
}

/// What the worker needs for one attempt at a delivery.
#[derive(Debug, Clone)]
pub enum WebhookTarget {
    /// Deliver `body` to `url`, signed with every secret in `secrets` (the current one first;
    /// during a rotation also the previous one).
    Ready {
        url: String,
        body: String,
        secrets: Vec<WebhookSecret>,
    },
    /// The endpoint was disabled (it answered 410 Gone): nothing more goes to it.
    Disabled { reason: String },
    /// The endpoint was deleted.
    Deleted,
}

/// `last_error` of a delivery stopped because its endpoint was deleted.
pub const STOPPED_ENDPOINT_DELETED: &str =
    "not delivered: the webhook endpoint was deleted before this delivery succeeded";
/// `last_error` of a delivery stopped because its endpoint answered 410 Gone.
pub const STOPPED_ENDPOINT_GONE: &str =
    "not delivered: the webhook endpoint answered 410 Gone to a delivery and was disabled";

impl Store {
    /// `POST /webhook-endpoints`: a new endpoint and its secret (shown once).
    ///
    /// At most [`MAX_WEBHOOK_ENDPOINTS`] per environment; the environment's row is locked while
    /// counting so that concurrent creations cannot pass the limit together.
    pub async fn create_webhook_endpoint(
        &self,
        auth: &AuthContext,
        new: NewWebhookEndpoint,
    ) -> Result<WebhookEndpointWithSecret, StoreError> {
        self.create_webhook_endpoint_idempotent(auth, new, None)
            .await
    }

    /// [`Store::create_webhook_endpoint`], storing the answer with the request's
    /// `Idempotency-Key` in the same transaction.
    pub async fn create_webhook_endpoint_idempotent(
        &self,
        auth: &AuthContext,
        new: NewWebhookEndpoint,
        completion: Option<Completion<'_, WebhookEndpointWithSecret>>,
    ) -> Result<WebhookEndpointWithSecret, StoreError> {
        let events = canonical_events(&new.events);
        let secret = WebhookSecret::generate();
        let model = webhook_endpoint::Model {
            id: WebhookEndpointId::new().as_uuid(),
            environment_id: auth.environment_id.as_uuid(),
            url: new.url.as_str().to_owned(),
            description: new.description.clone(),
            events: events_json(&events),
            enabled: true,
            secret: Some(secret.expose().to_owned()),
            previous_secret: None,
            previous_secret_expires_at: None,
            created_at: now(),
            disabled_at: None,
            disabled_reason: None,
            deleted_at: None,
        };
        let lock = self.stmt(
            match self.backend() {
                Backend::Postgres => "SELECT id FROM environments WHERE id = $1 FOR UPDATE",
                // The write transaction is IMMEDIATE: it holds the database's write lock.
                Backend::Sqlite => "SELECT id FROM environments WHERE id = $1",
            },
            [auth.environment_id.as_uuid().into()],
        );
        let (model_ref, lock, actor, secret_ref) = (&model, &lock, &auth.actor(), &secret);
        self.transact_completing(completion, |tx| async move {
            tx.query_one_raw(lock.clone())
                .await?
                .ok_or(StoreError::EnvironmentNotFound)?;
            let existing = live_endpoints(model_ref.environment_id).count(&tx).await?;
            if existing >= MAX_WEBHOOK_ENDPOINTS {
                return Err(StoreError::Invalid {
                    field: "url",
                    message: format!(
                        "an environment can have at most {MAX_WEBHOOK_ENDPOINTS} webhook endpoints; delete one first"
                    ),
                });
            }
            webhook_endpoint::Entity::insert(webhook_endpoint::ActiveModel::from(
                model_ref.clone(),
            ))
            .exec_without_returning(&tx)
            .await?;
            Event {
                actor,
                action: AuditAction::WebhookEndpointCreated,
                environment_id: Some(model_ref.environment_id.into()),
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({
                    "webhook_endpoint_id": model_ref.id.to_string(),
                    "url": model_ref.url,
                    "events": events_of(&model_ref.events),
                })),
            }
            .record(&tx)
            .await?;
            Ok(WebhookEndpointWithSecret {
                endpoint: model_ref.clone().try_into()?,
                secret: secret_ref.clone(),
                previous_secret_expires_at: None,
            })
        })
        .await
    }

    /// `GET /webhook-endpoints`: the environment's endpoints, oldest first (at most
    /// [`MAX_WEBHOOK_ENDPOINTS`], so one page).
    pub async fn list_webhook_endpoints(
        &self,
        auth: &AuthContext,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        live_endpoints(auth.environment_id.as_uuid())
            .order_by_asc(webhook_endpoint::Column::Id)
            .all(self.reader())
            .await?
            .into_iter()
            .map(WebhookEndpoint::try_from)
            .collect()
    }

    /// `GET /webhook-endpoints/{id}`.
    pub async fn get_webhook_endpoint(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, StoreError> {
        find_live(self.reader(), auth, id).await?.try_into()
    }

    /// `DELETE /webhook-endpoints/{id}`: the endpoint is gone from the API, its secrets are
    /// erased, and its pending deliveries stop (`dead`, saying why).
    pub async fn delete_webhook_endpoint(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
    ) -> Result<(), StoreError> {
        let actor = &auth.actor();
        self.transact(|tx| async move {
            let endpoint = find_live(&tx, auth, id).await?;
            let at = now();
            webhook_endpoint::Entity::update_many()
                .col_expr(webhook_endpoint::Column::DeletedAt, Some(at).into())
                .col_expr(webhook_endpoint::Column::Enabled, false.into())
                .col_expr(
                    webhook_endpoint::Column::Secret,
                    Option::<String>::None.into(),
                )
                .col_expr(
                    webhook_endpoint::Column::PreviousSecret,
                    Option::<String>::None.into(),
                )
                .filter(webhook_endpoint::Column::Id.eq(id.as_uuid()))
                .exec(&tx)
                .await?;
            let stopped = stop_pending_deliveries(&tx, id, STOPPED_ENDPOINT_DELETED).await?;
            Event {
                actor,
                action: AuditAction::WebhookEndpointDeleted,
                environment_id: Some(auth.environment_id),
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({
                    "webhook_endpoint_id": id.to_string(),
                    "url": endpoint.url,
                    "pending_deliveries_stopped": stopped,
                })),
            }
            .record(&tx)
            .await?;
            Ok(())
        })
        .await
    }

    /// `POST /webhook-endpoints/{id}/rotate-secret`: a new secret signs from now on; the one it
    /// replaces also signs for [`PREVIOUS_SECRET_VALID_FOR`], so receivers can switch without
    /// losing deliveries. Rotating again within that time drops the older secret at once.
    pub async fn rotate_webhook_secret(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpointWithSecret, StoreError> {
        self.rotate_webhook_secret_idempotent(auth, id, None).await
    }

    /// [`Store::rotate_webhook_secret`], storing the answer with the request's
    /// `Idempotency-Key` in the same transaction (a retried rotation rotates once).
    pub async fn rotate_webhook_secret_idempotent(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
        completion: Option<Completion<'_, WebhookEndpointWithSecret>>,
    ) -> Result<WebhookEndpointWithSecret, StoreError> {
        let secret = WebhookSecret::generate();
        let (secret_ref, actor) = (&secret, &auth.actor());
        self.transact_completing(completion, |tx| async move {
                let endpoint = find_live(&tx, auth, id).await?;
                let expires_at = now() + PREVIOUS_SECRET_VALID_FOR;
                webhook_endpoint::Entity::update_many()
                    .col_expr(
                        webhook_endpoint::Column::Secret,
                        Some(secret_ref.expose().to_owned()).into(),
                    )
                    .col_expr(
                        webhook_endpoint::Column::PreviousSecret,
                        endpoint.secret.clone().into(),
                    )
                    .col_expr(
                        webhook_endpoint::Column::PreviousSecretExpiresAt,
                        Some(expires_at).into(),
                    )
                    .filter(webhook_endpoint::Column::Id.eq(id.as_uuid()))
                    .exec(&tx)
                    .await?;
                Event {
                    actor,
                    action: AuditAction::WebhookSecretRotated,
                    environment_id: Some(auth.environment_id),
                    request_id: None,
                    phone_number_id: None,
                    detail: Some(serde_json::json!({
                        "webhook_endpoint_id": id.to_string(),
                        "previous_secret_expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    })),
                }
                .record(&tx)
                .await?;
                Ok(WebhookEndpointWithSecret {
                    endpoint: endpoint.try_into()?,
                    secret: secret_ref.clone(),
                    previous_secret_expires_at: Some(expires_at),
                })
            })
            .await
    }

    /// `POST /webhook-endpoints/{id}/test`: one `webhook.test` delivery to this endpoint,
    /// whatever it subscribes to. A disabled endpoint receives nothing, tests included.
    pub async fn send_test_webhook(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
    ) -> Result<WebhookDelivery, StoreError> {
        self.send_test_webhook_idempotent(auth, id, None).await
    }

    /// [`Store::send_test_webhook`], storing the answer with the request's `Idempotency-Key` in
    /// the same transaction (a retried request queues one test event).
    pub async fn send_test_webhook_idempotent(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
        completion: Option<Completion<'_, WebhookDelivery>>,
    ) -> Result<WebhookDelivery, StoreError> {
        self.transact_completing(completion, |tx| async move {
                let endpoint = find_live(&tx, auth, id).await?;
                if !endpoint.enabled {
                    return Err(StoreError::WebhookEndpointDisabled);
                }
                let data = serde_json::json!({
                    "webhook_endpoint_id": id.to_string(),
                    "message": "This is a test event from releasedesk: your endpoint is reachable and can verify our signature.",
                });
                let body = event_body(WebhookEvent::Test, &data);
                let delivery =
                    insert_delivery(&tx, &endpoint, WebhookEvent::Test, &body, None).await?;
                outbox::Entity::find_by_id(delivery.as_uuid())
                    .one(&tx)
                    .await?
                    .ok_or(StoreError::WebhookEndpointNotFound)?
                    .try_into()
            })
            .await
    }

    /// `GET /webhook-endpoints/{id}/deliveries`: newest first, keyset-paginated.
    pub async fn list_webhook_deliveries(
        &self,
        auth: &AuthContext,
        id: WebhookEndpointId,
        limit: u64,
        cursor: Option<Cursor>,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        find_live(self.reader(), auth, id).await?;
        let mut q = outbox::Entity::find()
            .filter(outbox::Column::WebhookEndpointId.eq(id.as_uuid()))
            .filter(outbox::Column::Kind.eq(OutboxKind::Webhook.as_str()));
        if let Some(c) = cursor {
            q = q.filter(outbox::Column::Id.lt(c.0));
        }
        let rows = q
            .order_by_desc(outbox::Column::Id)
            .limit(limit + 1)
            .all(self.reader())
            .await?
            .into_iter()
            .map(WebhookDelivery::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_probe(rows, limit, |d| d.id.as_uuid()))
    }

    /// The worker: where and what to deliver for the webhook row `id`, as things are now (the
    /// endpoint may have been deleted, disabled or rotated since the row was written).
    pub async fn webhook_target(&self, id: OutboxId) -> Result<WebhookTarget, StoreError> {
        let row = outbox::Entity::find_by_id(id.as_uuid())
            .one(self.reader())
            .await?
            .ok_or(StoreError::WebhookEndpointNotFound)?;
        let (Some(endpoint_id), Some(body)) = (row.webhook_endpoint_id, row.body) else {
            return Err(StoreError::Database(sea_orm::DbErr::Type(format!(
                "webhook delivery {id} has no endpoint or body"
            ))));
        };
        let endpoint = webhook_endpoint::Entity::find_by_id(endpoint_id)
            .one(self.reader())
            .await?
            .ok_or(StoreError::WebhookEndpointNotFound)?;
        if endpoint.deleted_at.is_some() {
            return Ok(WebhookTarget::Deleted);
        }
        if !endpoint.enabled {
            return Ok(WebhookTarget::Disabled {
                reason: endpoint
                    .disabled_reason
                    .unwrap_or_else(|| "disabled".to_owned()),
            });
        }
        let at = now();
        let current = endpoint.secret.as_deref().map(WebhookSecret::parse);
        let previous = endpoint
            .previous_secret
            .as_deref()
            .filter(|_| endpoint.previous_secret_expires_at.is_some_and(|t| t > at))
            .map(WebhookSecret::parse);
        let secrets = current
            .into_iter()
            .chain(previous)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                StoreError::Database(sea_orm::DbErr::Type(format!(
                    "webhook endpoint {endpoint_id} holds a malformed secret"
                )))
            })?;
        if secrets.is_empty() {
            return Err(StoreError::Database(sea_orm::DbErr::Type(format!(
                "webhook endpoint {endpoint_id} has no secret"
            ))));
        }
        Ok(WebhookTarget::Ready {
            url: endpoint.url,
            body,
            secrets,
        })
    }

    /// The worker: the endpoint answered 2xx. `false` when the lease was lost.
    pub async fn webhook_delivered(
        &self,
        id: OutboxId,
        owner: &str,
        status_code: u16,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| async move {
            outbox::Entity::update_many()
                .col_expr(
                    outbox::Column::LastStatusCode,
                    Some(i32::from(status_code)).into(),
                )
                .filter(outbox::Column::Id.eq(id.as_uuid()))
                .filter(outbox::Column::LeaseOwner.eq(owner))
                .exec(&tx)
                .await?;
            mark_sent_in(&tx, id, owner).await
        })
        .await
    }

    /// The worker: an attempt failed (a status other than 2xx and 410, or no answer). Like
    /// [`Store::outbox_mark_failed`], and records the status code when there was one.
    pub async fn webhook_attempt_failed(
        &self,
        id: OutboxId,
        owner: &str,
        status_code: Option<u16>,
        error: &str,
        permanent: bool,
        retry_at: DateTime<Utc>,
    ) -> Result<Option<OutboxState>, StoreError> {
        self.transact(|tx| async move {
            mark_failed_in(&tx, id, owner, error, permanent, retry_at, status_code).await
        })
        .await
    }

    /// The worker: the endpoint answered `410 Gone`. In one transaction: this delivery is
    /// `dead`, the endpoint is disabled (with the reason), its other pending deliveries stop,
    /// and the audit log says so. `false` when the lease was lost (nothing changed).
    pub async fn webhook_endpoint_gone(
        &self,
        id: OutboxId,
        owner: &str,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| async move {
            let Some(row) = outbox::Entity::find_by_id(id.as_uuid())
                .filter(outbox::Column::LeaseOwner.eq(owner))
                .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
                .one(&tx)
                .await?
            else {
                return Ok(false);
            };
            let Some(endpoint_id) = row.webhook_endpoint_id else {
                return Ok(false);
            };
            let at = now();
            mark_failed_in(
                &tx,
                id,
                owner,
                "the endpoint answered 410 Gone: it is disabled and receives nothing more",
                true,
                at,
                Some(410),
            )
            .await?;
            let reason = format!(
                "answered 410 Gone to delivery {} at {}",
                webhook_message_id(id),
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            let disabled = webhook_endpoint::Entity::update_many()
                .col_expr(webhook_endpoint::Column::Enabled, false.into())
                .col_expr(webhook_endpoint::Column::DisabledAt, Some(at).into())
                .col_expr(
                    webhook_endpoint::Column::DisabledReason,
                    Some(reason.clone()).into(),
                )
                .filter(webhook_endpoint::Column::Id.eq(endpoint_id))
                .filter(webhook_endpoint::Column::Enabled.eq(true))
                .exec(&tx)
                .await?;
            let endpoint_id = WebhookEndpointId::from(endpoint_id);
            let stopped = stop_pending_deliveries(&tx, endpoint_id, STOPPED_ENDPOINT_GONE).await?;
            if disabled.rows_affected == 1 {
                Event {
                    actor: &Actor::System,
                    action: AuditAction::WebhookEndpointDisabled,
                    environment_id: row.environment_id.map(Into::into),
                    request_id: None,
                    phone_number_id: None,
                    detail: Some(serde_json::json!({
                        "webhook_endpoint_id": endpoint_id.to_string(),
                        "url": row.recipient,
                        "reason": reason,
                        "pending_deliveries_stopped": stopped,
                    })),
                }
                .record(&tx)
                .await?;
            }
            Ok(true)
        })
        .await
    }
}

/// Writes one delivery of `event` per enabled endpoint of `environment_id` subscribed to it,
/// inside the caller's transaction (the transition's own). `data` is the event's `data`: for
/// `release_request.*` events the release request as the API shows it after the change
/// ([`crate::ReleaseRequestObject`], the API's own definition); `request_id` links each delivery to its request, so the console
/// lists it among the request's notifications. Returns the number of deliveries.
pub(crate) async fn enqueue_webhooks(
    tx: &impl ConnectionTrait,
    environment_id: EnvironmentId,
    event: WebhookEvent,
    request_id: Option<RequestId>,
    data: &(impl Serialize + ?Sized),
) -> Result<usize, StoreError> {
    let endpoints = live_endpoints(environment_id.as_uuid())
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(tx)
        .await?;
    let body = event_body(event, data);
    let mut written = 0;
    for endpoint in endpoints {
        if !parse_events(&endpoint.events)?.contains(&event) {
            continue;
        }
        insert_delivery(tx, &endpoint, event, &body, request_id).await?;
        written += 1;
    }
    Ok(written)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    crate::wire::rfc3339(t)
}

/// The body every attempt of a delivery sends: `{"type", "timestamp", "data"}`, serialized once.
pub(crate) fn event_body(event: WebhookEvent, data: &(impl Serialize + ?Sized)) -> String {
    #[derive(Serialize)]
    struct Body<'a, D: Serialize + ?Sized> {
        r#type: &'static str,
        timestamp: String,
        data: &'a D,
    }
    serde_json::to_string(&Body {
        r#type: event.as_str(),
        timestamp: rfc3339(now()),
        data,
    })
    .unwrap_or_default()
}

async fn insert_delivery(
    tx: &impl ConnectionTrait,
    endpoint: &webhook_endpoint::Model,
    event: WebhookEvent,
    body: &str,
    request_id: Option<RequestId>,
) -> Result<OutboxId, StoreError> {
    let id = OutboxId::new();
    let mut row = pending_row(
        id,
        OutboxKind::Webhook,
        endpoint.environment_id.into(),
        request_id,
    );
    row.recipient = Set(Some(endpoint.url.clone()));
    row.webhook_endpoint_id = Set(Some(endpoint.id));
    row.event_type = Set(Some(event.as_str().to_owned()));
    row.body = Set(Some(body.to_owned()));
    outbox::Entity::insert(row)
        .exec_without_returning(tx)
        .await?;
    Ok(id)
}

/// Pending deliveries to the endpoint become `dead` with `why` (a worker holding one loses
/// its lease and cannot mark it delivered). Returns how many.
async fn stop_pending_deliveries(
    tx: &impl ConnectionTrait,
    endpoint: WebhookEndpointId,
    why: &str,
) -> Result<u64, StoreError> {
    let res = outbox::Entity::update_many()
        .col_expr(outbox::Column::State, OutboxState::Dead.as_str().into())
        .col_expr(outbox::Column::CompletedAt, Some(now()).into())
        .col_expr(outbox::Column::LastError, Some(why.to_owned()).into())
        .col_expr(outbox::Column::LeaseOwner, Option::<String>::None.into())
        .col_expr(
            outbox::Column::LeaseExpiresAt,
            Option::<DateTime<Utc>>::None.into(),
        )
        .filter(outbox::Column::WebhookEndpointId.eq(endpoint.as_uuid()))
        .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected)
}

/// The environment's endpoints that are not deleted.
fn live_endpoints(environment_id: uuid::Uuid) -> sea_orm::Select<webhook_endpoint::Entity> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::EnvironmentId.eq(environment_id))
        .filter(webhook_endpoint::Column::DeletedAt.is_null())
}

/// One live endpoint of the caller's environment; any other id is "not found".
async fn find_live(
    db: &impl ConnectionTrait,
    auth: &AuthContext,
    id: WebhookEndpointId,
) -> Result<webhook_endpoint::Model, StoreError> {
    live_endpoints(auth.environment_id.as_uuid())
        .filter(webhook_endpoint::Column::Id.eq(id.as_uuid()))
        .one(db)
        .await?
        .ok_or(StoreError::WebhookEndpointNotFound)
}

/// Subscribable events, deduplicated, in their canonical order; none means all.
fn canonical_events(events: &[WebhookEvent]) -> Vec<WebhookEvent> {
    let chosen: Vec<WebhookEvent> = WebhookEvent::SUBSCRIBABLE
        .iter()
        .copied()
        .filter(|e| events.contains(e))
        .collect();
    if chosen.is_empty() {
        WebhookEvent::SUBSCRIBABLE.to_vec()
    } else {
        chosen
    }
}

fn events_json(events: &[WebhookEvent]) -> String {
    serde_json::to_string(&events.iter().map(|e| e.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

fn events_of(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

fn parse_events(stored: &str) -> Result<Vec<WebhookEvent>, StoreError> {
    let names: Vec<String> = serde_json::from_str(stored).map_err(|e| {
        StoreError::Database(sea_orm::DbErr::Type(format!(
            "webhook_endpoints.events is not a JSON array of names: {e}"
        )))
    })?;
    names
        .iter()
        .map(|n| parse_column("webhook_endpoints.events", n))
        .collect()
}
