//! The customer's release requests: create, read, list, cancel.

use releasedesk_domain::{
    AgentStatus, PhoneNumberId, PhoneNumberStatus, Reason, RequestId, RequestStatus,
};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::audit::Event;
use crate::entities::{agent, agent_phone_number, release_request};
use crate::outbox::{EmailKind, OutboxKind, OutboxPayload, enqueue};
use crate::views::parse_column;
use crate::{Actor, AgentRef, AuditAction, AuthContext, ReleaseRequest, Store, StoreError, now};

/// Where the next page starts: the id of the last item of this page. Ids are UUIDv7, so id
/// order is creation order and a page is an index range scan whatever the table's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub(crate) uuid::Uuid);

impl Cursor {
    pub fn encode(&self) -> String {
        self.0.simple().to_string()
    }
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| uuid::Uuid::parse_str(s).ok().map(Self))
            .flatten()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    pub fn has_more(&self) -> bool {
        self.next_cursor.is_some()
    }

    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub(crate) fn from_probe(
        mut rows: Vec<T>,
        limit: u64,
        id_of: impl Fn(&T) -> uuid::Uuid,
    ) -> Self {
        let has_more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|r| Cursor(id_of(r)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<RequestStatus>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub limit: u64,
    pub cursor: Option<Cursor>,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            status: None,
            phone_number_id: None,
            limit: 50,
            cursor: None,
        }
    }
}

impl Store {
    /// `POST /phone-numbers/{id}/request-release`.
    ///
    /// The number's row is locked first (a guarded touch of `updated_at`, which also scopes it
    /// to the environment), so concurrent creates and agent assignments for one number take
    /// turns; the partial unique index on open requests is the last word all the same.
    pub async fn request_release(
        &self,
        auth: &AuthContext,
        phone_number_id: PhoneNumberId,
        reason: Reason,
    ) -> Result<ReleaseRequest, StoreError> {
        let at = now();
        let reason = &reason;
        let model = self
            .transact(|tx| async move {
                let row = tx
            .query_one_raw(self.stmt(
                "UPDATE phone_numbers SET updated_at = $1 WHERE id = $2 AND environment_id = $3 \
                 RETURNING e164, status",
                [
                    at.into(),
                    phone_number_id.as_uuid().into(),
                    auth.environment_id.as_uuid().into(),
                ],
            ))
            .await?
            .ok_or(StoreError::PhoneNumberNotFound)?;
                let e164: String = row.try_get_by_index(0)?;
                let status: String = row.try_get_by_index(1)?;
                if parse_column::<PhoneNumberStatus>("phone_numbers.status", &status)?
                    == PhoneNumberStatus::Released
                {
                    return Err(StoreError::PhoneNumberReleased);
                }
                if let Some(open) = open_request_status(&tx, phone_number_id).await? {
                    return Err(already_open(open));
                }
                let agents = active_agents_holding(&tx, phone_number_id).await?;
                if !agents.is_empty() {
                    return Err(StoreError::PhoneNumberInUse { agents });
                }
                let id = RequestId::new();
                let model = release_request::Model {
                    id: id.as_uuid(),
                    environment_id: auth.environment_id.as_uuid(),
                    phone_number_id: phone_number_id.as_uuid(),
                    phone_number: e164,
                    reason: reason.as_str().to_owned(),
                    status: RequestStatus::Pending.as_str().into(),
                    requested_at: at,
                    resolved_at: None,
                    released_at: None,
                    review_note: None,
                    reviewed_by: None,
                };
                let inserted = release_request::Entity::insert(release_request::ActiveModel::from(
                    model.clone(),
                ))
                .exec_without_returning(&tx)
                .await;
                if let Err(e) = inserted {
                    return Err(if StoreError::is_unique_violation(&e) {
                        StoreError::ReleaseAlreadyPending
                    } else {
                        e.into()
                    });
                }
                let actor = auth.actor();
                Event {
                    actor: &actor,
                    action: AuditAction::RequestCreated,
                    environment_id: Some(auth.environment_id),
                    request_id: Some(id),
                    phone_number_id: Some(phone_number_id),
                    detail: None,
                }
                .record(&tx)
                .await?;
                if let Some(support) = &self.options().support_email {
                    enqueue(
                        &tx,
                        OutboxKind::Email(EmailKind::RequestCreated),
                        auth.environment_id,
                        id,
                        Some(support),
                        &OutboxPayload::default(),
                    )
                    .await?;
                }
                Ok(model)
            })
            .await?;
        ReleaseRequest::try_from(model)
    }

    /// `GET /phone-numbers/release-requests/{id}`.
    pub async fn get_request(
        &self,
        auth: &AuthContext,
        id: RequestId,
    ) -> Result<ReleaseRequest, StoreError> {
        release_request::Entity::find_by_id(id.as_uuid())
            .filter(release_request::Column::EnvironmentId.eq(auth.environment_id.as_uuid()))
            .one(self.reader())
            .await?
            .ok_or(StoreError::RequestNotFound)?
            .try_into()
    }

    /// `GET /phone-numbers/release-requests`: newest first, keyset-paginated.
    pub async fn list_requests(
        &self,
        auth: &AuthContext,
        filter: &ListFilter,
    ) -> Result<Page<ReleaseRequest>, StoreError> {
        let mut q = release_request::Entity::find()
            .filter(release_request::Column::EnvironmentId.eq(auth.environment_id.as_uuid()));
        if let Some(s) = filter.status {
            q = q.filter(release_request::Column::Status.eq(s.as_str()));
        }
        if let Some(p) = filter.phone_number_id {
            q = q.filter(release_request::Column::PhoneNumberId.eq(p.as_uuid()));
        }
        if let Some(c) = filter.cursor {
            q = q.filter(release_request::Column::Id.lt(c.0));
        }
        let rows = q
            .order_by_desc(release_request::Column::Id)
            .limit(filter.limit + 1)
            .all(self.reader())
            .await?
            .into_iter()
            .map(ReleaseRequest::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_probe(rows, filter.limit, |r| r.id.as_uuid()))
    }

    /// `POST /phone-numbers/release-requests/{id}/cancel`: pending → cancelled, guarded.
    pub async fn cancel_request(
        &self,
        auth: &AuthContext,
        id: RequestId,
    ) -> Result<ReleaseRequest, StoreError> {
        let at = now();
        self.transact(|tx| async move {
            let current: ReleaseRequest = release_request::Entity::find_by_id(id.as_uuid())
                .filter(release_request::Column::EnvironmentId.eq(auth.environment_id.as_uuid()))
                .one(&tx)
                .await?
                .ok_or(StoreError::RequestNotFound)?
                .try_into()?;
            let next = current
                .status
                .cancel()
                .map_err(|e| StoreError::NotPending(e.from))?;
            let res = release_request::Entity::update_many()
                .col_expr(release_request::Column::Status, next.as_str().into())
                .col_expr(release_request::Column::ResolvedAt, Some(at).into())
                .filter(release_request::Column::Id.eq(id.as_uuid()))
                .filter(release_request::Column::Status.eq(RequestStatus::Pending.as_str()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                // Someone decided it between our read and our update: report what they decided.
                let status = current_status(&tx, id).await?;
                return Err(StoreError::NotPending(status));
            }
            let actor = auth.actor();
            Event {
                actor: &actor,
                action: AuditAction::RequestCancelled,
                environment_id: Some(auth.environment_id),
                request_id: Some(id),
                phone_number_id: Some(current.phone_number_id),
                detail: None,
            }
            .record(&tx)
            .await?;
            Ok(ReleaseRequest {
                status: next,
                resolved_at: Some(at),
                ..current
            })
        })
        .await
    }
}

pub(crate) fn already_open(status: RequestStatus) -> StoreError {
    match status {
        RequestStatus::Approved => StoreError::ReleaseAlreadyApproved,
        _ => StoreError::ReleaseAlreadyPending,
    }
}

/// The status of the number's open request, if it has one.
pub(crate) async fn open_request_status(
    db: &impl ConnectionTrait,
    phone_number_id: PhoneNumberId,
) -> Result<Option<RequestStatus>, StoreError> {
    let open = release_request::Entity::find()
        .select_only()
        .column(release_request::Column::Status)
        .filter(release_request::Column::PhoneNumberId.eq(phone_number_id.as_uuid()))
        .filter(release_request::Column::Status.is_in([
            RequestStatus::Pending.as_str(),
            RequestStatus::Approved.as_str(),
        ]))
        .into_tuple::<String>()
        .one(db)
        .await?;
    open.map(|s| parse_column("release_requests.status", &s))
        .transpose()
}

pub(crate) async fn current_status(
    db: &impl ConnectionTrait,
    id: RequestId,
) -> Result<RequestStatus, StoreError> {
    let s = release_request::Entity::find_by_id(id.as_uuid())
        .select_only()
        .column(release_request::Column::Status)
        .into_tuple::<String>()
        .one(db)
        .await?
        .ok_or(StoreError::RequestNotFound)?;
    parse_column("release_requests.status", &s)
}

/// Active agents that hold the number: what makes it "in use".
pub(crate) async fn active_agents_holding(
    db: &impl ConnectionTrait,
    phone_number_id: PhoneNumberId,
) -> Result<Vec<AgentRef>, StoreError> {
    let rows = agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .column(agent::Column::Name)
        .filter(agent::Column::CurrentStatus.eq(AgentStatus::Active.as_str()))
        .filter(
            agent::Column::Id.in_subquery(
                Query::select()
                    .column(agent_phone_number::Column::AgentId)
                    .from(agent_phone_number::Entity)
                    .and_where(
                        agent_phone_number::Column::PhoneNumberId.eq(phone_number_id.as_uuid()),
                    )
                    .to_owned(),
            ),
        )
        .order_by_asc(agent::Column::Name)
        .into_tuple::<(uuid::Uuid, String)>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| AgentRef {
            id: id.into(),
            name,
        })
        .collect())
}

impl AuthContext {
    pub fn actor(&self) -> Actor {
        Actor::Customer {
            token_prefix: self.token_prefix.clone(),
        }
    }
}
