//! Reading release requests: the customer's (scoped to the token's environment) and the
//! staff's (the review queue across environments, one request's full picture).

use chrono::{DateTime, Utc};
use releasedesk_domain::{EnvironmentId, PhoneNumberId, RequestId, RequestStatus};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::entities::{environment, release_request};
use crate::guards::active_agents_holding;
use crate::paging::{Cursor, Page};
use crate::{
    AgentRef, AuditEntry, AuthContext, EnvironmentInfo, OutboxRow, PhoneNumberView, ReleaseRequest,
    Store, StoreError,
};

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
}

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
}
