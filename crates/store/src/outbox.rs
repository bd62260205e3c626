//! The transactional outbox: emails, webhook deliveries and release jobs, written in the same
//! transaction as the change that calls for them and carried out afterwards by the worker
//! (`releasedesk-notify`).
//!
//! A row is `pending` until done (`sent`) or given up (`dead`). A worker *claims* due rows by
//! taking a lease (`lease_owner`, `lease_expires_at`) and counting the attempt; while the lease
//! holds no other worker takes the row (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the claim
//! is one statement in an `IMMEDIATE` transaction). The worker renews the lease while it works
//! on the row; a crashed worker's lease simply expires.
//! Completion is guarded by the lease owner, so a worker that lost its lease cannot mark a row
//! another worker now holds.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use releasedesk_domain::{
    EmailAddress, EnvironmentId, OutboxId, RequestId, UnknownValue, WebhookEndpointId, WebhookEvent,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use crate::audit::Event;
use crate::entities::outbox;
use crate::views::parse_column;
use crate::{Actor, AuditAction, Backend, Store, StoreError, now};

/// Which email an outbox row sends. Who receives it is decided when the row is written (the
/// recipient column); this says what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// To the support inbox: a new request waits for review.
    RequestCreated,
    /// To the environment: its request was approved (the release follows).
    RequestApproved,
    /// To the environment: its request was rejected, with the staff note.
    RequestRejected,
    /// To the environment: the number is released.
    RequestReleased,
    /// To the environment: nobody decided in time, the request expired.
    RequestExpired,
    /// To the support inbox: a request has waited longer than it should.
    RequestOverdue,
}

/// Who an email is written for: staff get links into the console, customers links to the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Staff,
    Customer,
}

impl EmailKind {
    pub const ALL: &'static [EmailKind] = &[
        EmailKind::RequestCreated,
        EmailKind::RequestApproved,
        EmailKind::RequestRejected,
        EmailKind::RequestReleased,
        EmailKind::RequestExpired,
        EmailKind::RequestOverdue,
    ];

    /// Also the name of its template folder under `templates/email/`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmailKind::RequestCreated => "request_created",
            EmailKind::RequestApproved => "request_approved",
            EmailKind::RequestRejected => "request_rejected",
            EmailKind::RequestReleased => "request_released",
            EmailKind::RequestExpired => "request_expired",
            EmailKind::RequestOverdue => "request_overdue",
        }
    }

    pub const fn audience(self) -> Audience {
        match self {
            EmailKind::RequestCreated | EmailKind::RequestOverdue => Audience::Staff,
            EmailKind::RequestApproved
            | EmailKind::RequestRejected
            | EmailKind::RequestReleased
            | EmailKind::RequestExpired => Audience::Customer,
        }
    }
}

/// What an outbox row asks for. Every consumer matches it exhaustively: a new kind must be
/// handled on purpose everywhere, never given another kind's behaviour by a catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutboxKind {
    /// Send an email.
    Email(EmailKind),
    /// POST a signed event to a customer's webhook endpoint.
    Webhook,
    /// Release the number at the carrier, then mark it released.
    ReleaseNumber,
}

impl OutboxKind {
    pub const ALL: &'static [OutboxKind] = &[
        OutboxKind::Email(EmailKind::RequestCreated),
        OutboxKind::Email(EmailKind::RequestApproved),
        OutboxKind::Email(EmailKind::RequestRejected),
        OutboxKind::Email(EmailKind::RequestReleased),
        OutboxKind::Email(EmailKind::RequestExpired),
        OutboxKind::Email(EmailKind::RequestOverdue),
        OutboxKind::Webhook,
        OutboxKind::ReleaseNumber,
    ];

    /// The stored name (`email.request_approved`, `webhook`, `release.number`).
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Email(EmailKind::RequestCreated) => "email.request_created",
            OutboxKind::Email(EmailKind::RequestApproved) => "email.request_approved",
            OutboxKind::Email(EmailKind::RequestRejected) => "email.request_rejected",
            OutboxKind::Email(EmailKind::RequestReleased) => "email.request_released",
            OutboxKind::Email(EmailKind::RequestExpired) => "email.request_expired",
            OutboxKind::Email(EmailKind::RequestOverdue) => "email.request_overdue",
            OutboxKind::Webhook => "webhook",
            OutboxKind::ReleaseNumber => "release.number",
        }
    }

    /// Attempts before a row goes `dead`. With the worker's backoff, emails are retried for
    /// about an hour, a release job for about a day, and a webhook delivery for more than 24
    /// hours (its own schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    pub const fn max_attempts(self) -> i32 {
        match self {
            OutboxKind::Email(_) => 12,
            OutboxKind::Webhook => 8,
            OutboxKind::ReleaseNumber => 100,
        }
    }
}

impl fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Sent,
    Dead,
}

impl OutboxState {
    pub const ALL: &'static [OutboxState] =
        &[OutboxState::Pending, OutboxState::Sent, OutboxState::Dead];
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Dead => "dead",
        }
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// What the row carries besides its columns (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxPayload {
    /// The staff member who decided, for the email's wording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The reviewers whose approvals approved the request (names), for the "approved" email.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
}

/// One outbox row as the worker and the console see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub kind: OutboxKind,
    pub environment_id: Option<EnvironmentId>,
    pub request_id: Option<RequestId>,
    pub recipient: Option<String>,
    pub payload: OutboxPayload,
    pub state: OutboxState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// A webhook delivery's endpoint (its URL is the row's `recipient`).
    pub webhook_endpoint_id: Option<WebhookEndpointId>,
    /// A webhook delivery's event type.
    pub event_type: Option<WebhookEvent>,
    /// The HTTP status of a webhook delivery's last attempt, when it got one.
    pub last_status_code: Option<u16>,
}

impl TryFrom<outbox::Model> for OutboxRow {
    type Error = StoreError;
    fn try_from(m: outbox::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id.into(),
            kind: parse_column("outbox.kind", &m.kind)?,
            environment_id: m.environment_id.map(Into::into),
            request_id: m.request_id.map(Into::into),
            recipient: m.recipient,
            payload: serde_json::from_str(&m.payload).unwrap_or_default(),
            state: parse_column("outbox.state", &m.state)?,
            attempts: m.attempts,
            max_attempts: m.max_attempts,
            next_attempt_at: m.next_attempt_at,
            lease_owner: m.lease_owner,
            lease_expires_at: m.lease_expires_at,
            last_error: m.last_error,
            created_at: m.created_at,
            completed_at: m.completed_at,
            webhook_endpoint_id: m.webhook_endpoint_id.map(Into::into),
            event_type: m
                .event_type
                .as_deref()
                .map(|e| parse_column("outbox.event_type", e))
                .transpose()?,
            last_status_code: m.last_status_code.and_then(|c| u16::try_from(c).ok()),
        })
    }
}

/// Adds a row inside the caller's transaction.
pub(crate) async fn enqueue(
    tx: &impl ConnectionTrait,
    kind: OutboxKind,
    environment_id: EnvironmentId,
    request_id: RequestId,
    recipient: Option<&EmailAddress>,
    payload: &OutboxPayload,
) -> Result<OutboxId, StoreError> {
    let id = OutboxId::new();
    let mut row = pending_row(id, kind, environment_id, Some(request_id));
    row.recipient = Set(recipient.map(|r| r.as_str().to_owned()));
    row.payload = Set(serde_json::to_string(payload).unwrap_or_else(|_| "{}".into()));
    outbox::Entity::insert(row)
        .exec_without_returning(tx)
        .await?;
    Ok(id)
}

/// A new row, due now, with nothing kind-specific filled in.
pub(crate) fn pending_row(
    id: OutboxId,
    kind: OutboxKind,
    environment_id: EnvironmentId,
    request_id: Option<RequestId>,
) -> outbox::ActiveModel {
    let at = now();
    outbox::ActiveModel {
        id: Set(id.as_uuid()),
        kind: Set(kind.as_str().into()),
        environment_id: Set(Some(environment_id.as_uuid())),
        request_id: Set(request_id.map(|r| r.as_uuid())),
        recipient: Set(None),
        payload: Set("{}".into()),
        state: Set(OutboxState::Pending.as_str().into()),
        attempts: Set(0),
        max_attempts: Set(kind.max_attempts()),
        next_attempt_at: Set(at),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        last_error: Set(None),
        created_at: Set(at),
        completed_at: Set(None),
        webhook_endpoint_id: Set(None),
        event_type: Set(None),
        body: Set(None),
        last_status_code: Set(None),
    }
}

/// `last_error` of a row whose last attempt's worker never reported back.
const LAST_LEASE_EXPIRED: &str =
    "the lease on the last allowed attempt expired: its worker stopped before reporting back";

/// Longest error text kept on a row.
const MAX_ERROR_CHARS: usize = 1000;

pub(crate) fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

impl Store {
    /// Claims up to `limit` due rows for `owner` until `lease_until`, counting an attempt on each.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.claim_outbox_due_by(owner, lease_until, now(), limit)
            .await
    }

    /// [`Store::claim_outbox`], of the rows that were due at `due_by` (a worker's pass takes
    /// the rows due when it began, not those the pass itself enqueued).
    pub async fn claim_outbox_due_by(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        due_by: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let at = now();
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $5 \
             AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
             ORDER BY next_attempt_at LIMIT $4 {lock}) \
             RETURNING *"
        );
        let stmt = self.stmt(
            &sql,
            [
                owner.into(),
                lease_until.into(),
                at.into(),
                (limit as i64).into(),
                due_by.min(at).into(),
            ],
        );
        // A row whose last allowed attempt was claimed but never reported back (its worker
        // died, perhaps because of the row itself) would otherwise be claimed again at every
        // lease expiry, forever: it goes `dead` instead, visible and retryable in the console.
        let give_up = self.stmt(
            "UPDATE outbox SET state = 'dead', completed_at = $1, lease_owner = NULL, \
             lease_expires_at = NULL, last_error = $2 \
             WHERE state = 'pending' AND attempts >= max_attempts AND lease_expires_at < $1",
            [at.into(), LAST_LEASE_EXPIRED.into()],
        );
        let (give_up, stmt) = (&give_up, &stmt);
        let rows = self
            .transact(|tx| async move {
                tx.execute_raw(give_up.clone()).await?;
                Ok(outbox::Entity::find()
                    .from_raw_sql(stmt.clone())
                    .all(&tx)
                    .await?)
            })
            .await?;
        let mut rows = rows
            .into_iter()
            .map(OutboxRow::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by_key(|r| r.next_attempt_at);
        Ok(rows)
    }

    /// Marks a claimed row done. `false` when the lease was lost (another worker holds the row
    /// now, or it was already completed): the caller must not treat it as its own.
    pub async fn outbox_mark_sent(&self, id: OutboxId, owner: &str) -> Result<bool, StoreError> {
        self.transact(|tx| async move { mark_sent_in(&tx, id, owner).await })
            .await
    }

    /// Records a failed attempt. A permanent failure, or the last allowed attempt, makes the row
    /// `dead`; otherwise it is due again at `retry_at`. Returns the new state, `None` when the
    /// lease was lost.
    pub async fn outbox_mark_failed(
        &self,
        id: OutboxId,
        owner: &str,
        error: &str,
        permanent: bool,
        retry_at: DateTime<Utc>,
    ) -> Result<Option<OutboxState>, StoreError> {
        self.transact(|tx| async move {
            mark_failed_in(&tx, id, owner, error, permanent, retry_at, None).await
        })
        .await
    }

    /// Extends the lease on a row this worker is working on. `false` when the lease was lost
    /// (it expired and another worker claimed the row, or the row was completed).
    pub async fn outbox_renew_lease(
        &self,
        id: OutboxId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| async move {
            let res = outbox::Entity::update_many()
                .col_expr(outbox::Column::LeaseExpiresAt, Some(lease_until).into())
                .filter(outbox::Column::Id.eq(id.as_uuid()))
                .filter(outbox::Column::LeaseOwner.eq(owner))
                .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
                .exec(&tx)
                .await?;
            Ok(res.rows_affected == 1)
        })
        .await
    }

    /// Hands a claimed row back untried (graceful shutdown): the attempt is not counted.
    pub async fn outbox_release_lease(&self, id: OutboxId, owner: &str) -> Result<(), StoreError> {
        self.transact(|tx| async move {
            outbox::Entity::update_many()
                .col_expr(
                    outbox::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::sub(
                        sea_orm::sea_query::Expr::col(outbox::Column::Attempts),
                        1,
                    ),
                )
                .col_expr(outbox::Column::LeaseOwner, Option::<String>::None.into())
                .col_expr(
                    outbox::Column::LeaseExpiresAt,
                    Option::<DateTime<Utc>>::None.into(),
                )
                .filter(outbox::Column::Id.eq(id.as_uuid()))
                .filter(outbox::Column::LeaseOwner.eq(owner))
                .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
                .exec(&tx)
                .await?;
            Ok(())
        })
        .await
    }

    /// Puts a dead row back in the queue, due now, with a fresh set of attempts (console).
    pub async fn outbox_retry(&self, id: OutboxId, actor: &Actor) -> Result<OutboxRow, StoreError> {
        self.transact(|tx| async move {
            let res = outbox::Entity::update_many()
                .col_expr(outbox::Column::State, OutboxState::Pending.as_str().into())
                .col_expr(outbox::Column::Attempts, 0.into())
                .col_expr(outbox::Column::NextAttemptAt, now().into())
                .col_expr(
                    outbox::Column::CompletedAt,
                    Option::<DateTime<Utc>>::None.into(),
                )
                .filter(outbox::Column::Id.eq(id.as_uuid()))
                .filter(outbox::Column::State.eq(OutboxState::Dead.as_str()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                return Err(StoreError::OutboxRowNotRetryable);
            }
            let row = outbox::Entity::find_by_id(id.as_uuid())
                .one(&tx)
                .await?
                .ok_or(StoreError::OutboxRowNotRetryable)?;
            let row = OutboxRow::try_from(row)?;
            Event {
                actor,
                action: AuditAction::OutboxRetried,
                environment_id: row.environment_id,
                request_id: row.request_id,
                phone_number_id: None,
                detail: Some(
                    serde_json::json!({ "outbox_id": id.to_string(), "kind": row.kind.as_str() }),
                ),
            }
            .record(&tx)
            .await?;
            Ok(row)
        })
        .await
    }

    /// The console's outbox page: newest first, optionally one state.
    pub async fn list_outbox(
        &self,
        state: Option<OutboxState>,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut q = outbox::Entity::find();
        if let Some(s) = state {
            q = q.filter(outbox::Column::State.eq(s.as_str()));
        }
        q.order_by_desc(outbox::Column::Id)
            .limit(limit.clamp(1, 1000))
            .all(self.reader())
            .await?
            .into_iter()
            .map(OutboxRow::try_from)
            .collect()
    }

    /// Every outbox row of one request, oldest first (the request page's "notifications").
    pub async fn outbox_for_request(
        &self,
        request: RequestId,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        outbox::Entity::find()
            .filter(outbox::Column::RequestId.eq(request.as_uuid()))
            .order_by_asc(outbox::Column::Id)
            .all(self.reader())
            .await?
            .into_iter()
            .map(OutboxRow::try_from)
            .collect()
    }

    pub async fn outbox_row(&self, id: OutboxId) -> Result<Option<OutboxRow>, StoreError> {
        outbox::Entity::find_by_id(id.as_uuid())
            .one(self.reader())
            .await?
            .map(OutboxRow::try_from)
            .transpose()
    }

    /// Counts per state, for the console header and `/readyz`-style checks.
    pub async fn outbox_counts(&self) -> Result<Vec<(OutboxState, u64)>, StoreError> {
        let mut out = Vec::new();
        for &state in OutboxState::ALL {
            let n = sea_orm::PaginatorTrait::count(
                outbox::Entity::find().filter(outbox::Column::State.eq(state.as_str())),
                self.reader(),
            )
            .await?;
            out.push((state, n));
        }
        Ok(out)
    }

    /// Used by tests and the worker's shutdown: is anything still due or leased?
    pub async fn outbox_pending_count(&self) -> Result<u64, StoreError> {
        Ok(sea_orm::PaginatorTrait::count(
            outbox::Entity::find().filter(outbox::Column::State.eq(OutboxState::Pending.as_str())),
            self.reader(),
        )
        .await?)
    }
}

/// Records a failed attempt inside the caller's transaction (see [`Store::outbox_mark_failed`]);
/// `status_code` is the HTTP status a webhook delivery got, if any.
pub(crate) async fn mark_failed_in(
    tx: &impl ConnectionTrait,
    id: OutboxId,
    owner: &str,
    error: &str,
    permanent: bool,
    retry_at: DateTime<Utc>,
    status_code: Option<u16>,
) -> Result<Option<OutboxState>, StoreError> {
    let Some(row) = outbox::Entity::find_by_id(id.as_uuid())
        .filter(outbox::Column::LeaseOwner.eq(owner))
        .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
        .one(tx)
        .await?
    else {
        return Ok(None);
    };
    let state = if permanent || row.attempts >= row.max_attempts {
        OutboxState::Dead
    } else {
        OutboxState::Pending
    };
    let res = outbox::Entity::update_many()
        .col_expr(outbox::Column::State, state.as_str().into())
        .col_expr(outbox::Column::LastError, Some(clip(error)).into())
        .col_expr(
            outbox::Column::LastStatusCode,
            status_code.map(i32::from).into(),
        )
        .col_expr(outbox::Column::NextAttemptAt, retry_at.into())
        .col_expr(outbox::Column::LeaseOwner, Option::<String>::None.into())
        .col_expr(
            outbox::Column::LeaseExpiresAt,
            Option::<DateTime<Utc>>::None.into(),
        )
        .col_expr(
            outbox::Column::CompletedAt,
            (state == OutboxState::Dead).then(now).into(),
        )
        .filter(outbox::Column::Id.eq(id.as_uuid()))
        .filter(outbox::Column::LeaseOwner.eq(owner))
        .exec(tx)
        .await?;
    Ok((res.rows_affected == 1).then_some(state))
}

pub(crate) async fn mark_sent_in(
    tx: &impl ConnectionTrait,
    id: OutboxId,
    owner: &str,
) -> Result<bool, StoreError> {
    let res = outbox::Entity::update_many()
        .col_expr(outbox::Column::State, OutboxState::Sent.as_str().into())
        .col_expr(outbox::Column::CompletedAt, Some(now()).into())
        .col_expr(outbox::Column::LeaseOwner, Option::<String>::None.into())
        .col_expr(
            outbox::Column::LeaseExpiresAt,
            Option::<DateTime<Utc>>::None.into(),
        )
        .col_expr(outbox::Column::LastError, Option::<String>::None.into())
        .filter(outbox::Column::Id.eq(id.as_uuid()))
        .filter(outbox::Column::LeaseOwner.eq(owner))
        .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}
