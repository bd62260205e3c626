//! The rules a change must pass besides the workflow's transition table, each written once:
//! a released number takes nothing new, a number has at most one open request, a number held
//! by an active agent cannot be released, an approval must repeat the number.
//!
//! Each runs inside the caller's transaction, after the number's row is locked
//! ([`Store::lock_number`](crate::Store)), so what it reads cannot change before the commit.

use releasedesk_domain::{AgentStatus, PhoneNumberId, PhoneNumberStatus, RequestId, RequestStatus};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{agent, agent_phone_number, release_request};
use crate::numbers::LockedNumber;
use crate::views::parse_column;
use crate::{AgentRef, StoreError};

/// A released number accepts no new request and no assignment.
pub(crate) fn not_released(number: &LockedNumber) -> Result<(), StoreError> {
    match number.status {
        PhoneNumberStatus::Active => Ok(()),
        PhoneNumberStatus::Released => Err(StoreError::PhoneNumberReleased),
    }
}

/// At most one open request per number (the partial unique index is the last word; this gives
/// the precise error first).
pub(crate) async fn no_open_request(
    db: &impl ConnectionTrait,
    number: &LockedNumber,
) -> Result<(), StoreError> {
    match open_request_status(db, number.id).await? {
        None => Ok(()),
        Some(status) => Err(already_open(status)),
    }
}

/// A number held by an active agent cannot be released (nor a request for it approved).
pub(crate) async fn not_in_use(
    db: &impl ConnectionTrait,
    number: &LockedNumber,
) -> Result<(), StoreError> {
    let agents = active_agents_holding(db, number.id).await?;
    if agents.is_empty() {
        Ok(())
    } else {
        Err(StoreError::PhoneNumberInUse { agents })
    }
}

/// A new request's rules, decided from what was read under the number's lock: the same
/// checks in the same order as [`not_released`], [`no_open_request`] and [`not_in_use`] (the
/// one-statement create reads all three at once).
pub(crate) fn for_new_request(
    number: &LockedNumber,
    open: Option<RequestStatus>,
    agents: Vec<AgentRef>,
) -> Result<(), StoreError> {
    not_released(number)?;
    if let Some(status) = open {
        return Err(already_open(status));
    }
    if agents.is_empty() {
        Ok(())
    } else {
        Err(StoreError::PhoneNumberInUse { agents })
    }
}

/// "Type the number to confirm": the typed text must be the request's E.164 number exactly
/// (surrounding spaces aside).
pub(crate) fn confirmation_matches(typed: &str, number: &LockedNumber) -> Result<(), StoreError> {
    if typed.trim() == number.e164 {
        Ok(())
    } else {
        Err(StoreError::ConfirmationMismatch)
    }
}

/// The error for a number whose open request is in `status`.
pub(crate) fn already_open(status: RequestStatus) -> StoreError {
    match status {
        RequestStatus::Approved => StoreError::ReleaseAlreadyApproved,
        // Only open statuses are asked about; pending is the only other one.
        RequestStatus::Pending
        | RequestStatus::Released
        | RequestStatus::Cancelled
        | RequestStatus::Rejected
        | RequestStatus::Expired => StoreError::ReleaseAlreadyPending,
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
        .filter(release_request::Column::Status.is_in(open_statuses()))
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

/// The statuses of an open request, as stored.
pub(crate) fn open_statuses() -> impl Iterator<Item = &'static str> {
    RequestStatus::ALL
        .iter()
        .filter(|s| s.is_open())
        .map(|s| s.as_str())
}
