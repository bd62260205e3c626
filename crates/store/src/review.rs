//! The staff side: the review queue, a request's full picture, approve and reject.

use chrono::{DateTime, Utc};
use releasedesk_domain::{
    ApprovalNote, EmailAddress, EnvironmentId, RejectionNote, RequestId, RequestStatus,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::audit::Event;
use crate::entities::{environment, release_request};
use crate::outbox::{EmailKind, OutboxKind, OutboxPayload, enqueue};
use crate::requests::{active_agents_holding, current_status};
use crate::{
    Actor, AgentRef, AuditAction, AuditEntry, EnvironmentInfo, OutboxRow, PhoneNumberView,
    ReleaseRequest, Store, StoreError, now,
};

/// Open requests are counted up to this many (see [`Store::open_request_counts`]).
pub const OPEN_COUNT_CAP: u64 = 1000;

/// The console queue's filters.
///
/// Pending requests are listed oldest first (the one waiting longest on top); any other status
/// newest first. `after` is the (requested_at, id) of the last row of the previous page.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub status: Option<RequestStatus>,
    pub environment_id: Option<EnvironmentId>,
    /// Digits (or a `+` and digits) contained in the number.
    pub number_search: Option<String>,
    pub after: Option<(DateTime<Utc>, RequestId)>,
    pub limit: u64,
}

#[derive(Debug, Clone)]
pub struct QueueItem {
    pub request: ReleaseRequest,
    pub environment_name: String,
}

/// Everything the request page shows.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    pub request: ReleaseRequest,
    pub environment: EnvironmentInfo,
    pub number: PhoneNumberView,
    /// Active agents holding the number: while any, approval is refused.
    pub blocking_agents: Vec<AgentRef>,
    pub timeline: Vec<AuditEntry>,
    pub notifications: Vec<OutboxRow>,
}

impl Store {
    /// The review queue across all environments.
    pub async fn queue(&self, filter: &QueueFilter) -> Result<Vec<QueueItem>, StoreError> {
        let oldest_first = filter.status == Some(RequestStatus::Pending);
        let mut q = release_request::Entity::find();
        if let Some(s) = filter.status {
            q = q.filter(release_request::Column::Status.eq(s.as_str()));
        }
        if let Some(e) = filter.environment_id {
            q = q.filter(release_request::Column::EnvironmentId.eq(e.as_uuid()));
        }
        if let Some(search) = filter.number_search.as_deref() {
            let digits: String = search.chars().filter(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                q = q.filter(release_request::Column::PhoneNumber.contains(&digits));
            }
        }
        if let Some((at, id)) = filter.after {
            use release_request::Column as C;
            let (later, after_id) = if oldest_first {
                (C::RequestedAt.gt(at), C::Id.gt(id.as_uuid()))
            } else {
                (C::RequestedAt.lt(at), C::Id.lt(id.as_uuid()))
            };
            q = q.filter(
                Condition::any()
                    .add(later)
                    .add(Condition::all().add(C::RequestedAt.eq(at)).add(after_id)),
            );
        }
        q = if oldest_first {
            q.order_by_asc(release_request::Column::RequestedAt)
                .order_by_asc(release_request::Column::Id)
        } else {
            q.order_by_desc(release_request::Column::RequestedAt)
                .order_by_desc(release_request::Column::Id)
        };
        let rows = q
            .limit(filter.limit.clamp(1, 500))
            .all(self.reader())
            .await?;
        let envs: std::collections::HashMap<uuid::Uuid, String> = {
            let ids: std::collections::BTreeSet<uuid::Uuid> =
                rows.iter().map(|r| r.environment_id).collect();
            if ids.is_empty() {
                Default::default()
            } else {
                environment::Entity::find()
                    .select_only()
                    .column(environment::Column::Id)
                    .column(environment::Column::Name)
                    .filter(environment::Column::Id.is_in(ids))
                    .into_tuple::<(uuid::Uuid, String)>()
                    .all(self.reader())
                    .await?
                    .into_iter()
                    .collect()
            }
        };
        rows.into_iter()
            .map(|m| {
                let environment_name = envs.get(&m.environment_id).cloned().unwrap_or_default();
                Ok(QueueItem {
                    request: m.try_into()?,
                    environment_name,
                })
            })
            .collect()
    }

    /// How many requests are open, per open status (`pending`, `approved`), counted up to
    /// [`OPEN_COUNT_CAP`]` + 1`: a value above the cap means "more than the cap". The queue's tabs
    /// show the work waiting without the page's cost growing with the table: terminal statuses
    /// are not counted at all, and open ones stop at the cap (an index range of at most
    /// cap + 1 entries).
    pub async fn open_request_counts(&self) -> Result<Vec<(RequestStatus, u64)>, StoreError> {
        let mut out = Vec::new();
        for s in [RequestStatus::Pending, RequestStatus::Approved] {
            let row = self
                .reader()
                .query_one_raw(self.stmt(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM release_requests WHERE status = $1 LIMIT $2) AS capped",
                    [s.as_str().into(), ((OPEN_COUNT_CAP + 1) as i64).into()],
                ))
                .await?;
            let n: i64 = match row {
                Some(row) => row.try_get_by_index(0)?,
                None => 0,
            };
            out.push((s, n.max(0) as u64));
        }
        Ok(out)
    }

    /// A request by id, whatever its environment (staff see every environment).
    pub async fn find_request(&self, id: RequestId) -> Result<ReleaseRequest, StoreError> {
        release_request::Entity::find_by_id(id.as_uuid())
            .one(self.reader())
            .await?
            .ok_or(StoreError::RequestNotFound)?
            .try_into()
    }

    pub async fn request_detail(&self, id: RequestId) -> Result<RequestDetail, StoreError> {
        let request = self.find_request(id).await?;
        let environment = self.get_environment(request.environment_id).await?;
        let number = self
            .get_phone_number(request.environment_id, request.phone_number_id)
            .await?;
        let blocking_agents = active_agents_holding(self.reader(), request.phone_number_id).await?;
        let timeline = self.request_timeline(id).await?;
        let notifications = self.outbox_for_request(id).await?;
        Ok(RequestDetail {
            request,
            environment,
            number,
            blocking_agents,
            timeline,
            notifications,
        })
    }

    /// Approves a pending request: irreversible.
    ///
    /// `confirm_number` must equal the request's E.164 number exactly ("type the number to
    /// confirm"); an active agent holding the number refuses approval. The guarded update lets
    /// exactly one of several concurrent approvals (or an approval racing a cancel) win; the
    /// others get `NotPending` with the status the winner set. In the same transaction: the
    /// audit event, the "approved" email and the release job.
    pub async fn approve(
        &self,
        staff: &Actor,
        id: RequestId,
        confirm_number: &str,
        note: Option<ApprovalNote>,
    ) -> Result<ReleaseRequest, StoreError> {
        let at = now();
        let note = &note;
        self.transact(|tx| async move {
            let current: ReleaseRequest = release_request::Entity::find_by_id(id.as_uuid())
                .one(&tx)
                .await?
                .ok_or(StoreError::RequestNotFound)?
                .try_into()?;
            let next = current
                .status
                .approve()
                .map_err(|e| StoreError::NotPending(e.from))?;
            if confirm_number.trim() != current.phone_number {
                return Err(StoreError::ConfirmationMismatch);
            }
            // Lock the number's row (the lock requests and assignments take too) so an agent
            // activated at this moment cannot slip between the check and the update.
            tx.execute_raw(self.stmt(
                "UPDATE phone_numbers SET updated_at = $1 WHERE id = $2",
                [at.into(), current.phone_number_id.as_uuid().into()],
            ))
            .await?;
            let agents = active_agents_holding(&tx, current.phone_number_id).await?;
            if !agents.is_empty() {
                return Err(StoreError::PhoneNumberInUse { agents });
            }
            let note = note.as_ref().map(|n| n.as_str().to_owned());
            let reviewer = staff_id(staff);
            let res = release_request::Entity::update_many()
                .col_expr(release_request::Column::Status, next.as_str().into())
                .col_expr(release_request::Column::ResolvedAt, Some(at).into())
                .col_expr(release_request::Column::ReviewNote, note.clone().into())
                .col_expr(release_request::Column::ReviewedBy, reviewer.into())
                .filter(release_request::Column::Id.eq(id.as_uuid()))
                .filter(release_request::Column::Status.eq(RequestStatus::Pending.as_str()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                return Err(StoreError::NotPending(current_status(&tx, id).await?));
            }
            Event {
                actor: staff,
                action: AuditAction::RequestApproved,
                environment_id: Some(current.environment_id),
                request_id: Some(id),
                phone_number_id: Some(current.phone_number_id),
                detail: note.as_ref().map(|n| serde_json::json!({ "note": n })),
            }
            .record(&tx)
            .await?;
            let recipient = notify_email(&tx, current.environment_id).await?;
            let payload = OutboxPayload {
                decided_by: staff_label(staff),
            };
            enqueue(
                &tx,
                OutboxKind::Email(EmailKind::RequestApproved),
                current.environment_id,
                id,
                recipient.as_ref(),
                &payload,
            )
            .await?;
            enqueue(
                &tx,
                OutboxKind::ReleaseNumber,
                current.environment_id,
                id,
                None,
                &payload,
            )
            .await?;
            Ok(ReleaseRequest {
                status: next,
                resolved_at: Some(at),
                review_note: note,
                reviewed_by: reviewer.map(Into::into),
                ..current
            })
        })
        .await
    }

    /// Rejects a pending request with a note meant for the customer; `rejected` is terminal.
    pub async fn reject(
        &self,
        staff: &Actor,
        id: RequestId,
        note: RejectionNote,
    ) -> Result<ReleaseRequest, StoreError> {
        let at = now();
        let note = &note;
        self.transact(|tx| async move {
            let current: ReleaseRequest = release_request::Entity::find_by_id(id.as_uuid())
                .one(&tx)
                .await?
                .ok_or(StoreError::RequestNotFound)?
                .try_into()?;
            let next = current
                .status
                .reject()
                .map_err(|e| StoreError::NotPending(e.from))?;
            let note = note.as_str().to_owned();
            let reviewer = staff_id(staff);
            let res = release_request::Entity::update_many()
                .col_expr(release_request::Column::Status, next.as_str().into())
                .col_expr(release_request::Column::ResolvedAt, Some(at).into())
                .col_expr(
                    release_request::Column::ReviewNote,
                    Some(note.clone()).into(),
                )
                .col_expr(release_request::Column::ReviewedBy, reviewer.into())
                .filter(release_request::Column::Id.eq(id.as_uuid()))
                .filter(release_request::Column::Status.eq(RequestStatus::Pending.as_str()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                return Err(StoreError::NotPending(current_status(&tx, id).await?));
            }
            Event {
                actor: staff,
                action: AuditAction::RequestRejected,
                environment_id: Some(current.environment_id),
                request_id: Some(id),
                phone_number_id: Some(current.phone_number_id),
                detail: Some(serde_json::json!({ "note": note })),
            }
            .record(&tx)
            .await?;
            let recipient = notify_email(&tx, current.environment_id).await?;
            let payload = OutboxPayload {
                decided_by: staff_label(staff),
            };
            enqueue(
                &tx,
                OutboxKind::Email(EmailKind::RequestRejected),
                current.environment_id,
                id,
                recipient.as_ref(),
                &payload,
            )
            .await?;
            Ok(ReleaseRequest {
                status: next,
                resolved_at: Some(at),
                review_note: Some(note),
                reviewed_by: reviewer.map(Into::into),
                ..current
            })
        })
        .await
    }
}

fn staff_id(actor: &Actor) -> Option<uuid::Uuid> {
    match actor {
        Actor::Staff { id, .. } => Some(id.as_uuid()),
        _ => None,
    }
}

fn staff_label(actor: &Actor) -> Option<String> {
    match actor {
        Actor::Staff { email, .. } => Some(email.clone()),
        _ => None,
    }
}

/// The environment's notification address. One that no longer parses (edited by hand) is
/// skipped rather than blocking the decision: the decision matters more than the email.
pub(crate) async fn notify_email(
    db: &impl sea_orm::ConnectionTrait,
    env: EnvironmentId,
) -> Result<Option<EmailAddress>, StoreError> {
    let email = environment::Entity::find_by_id(env.as_uuid())
        .select_only()
        .column(environment::Column::NotifyEmail)
        .into_tuple::<String>()
        .one(db)
        .await?;
    Ok(email.and_then(|e| EmailAddress::parse(&e).ok()))
}
