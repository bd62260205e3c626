//! The API's JSON shapes. Field order follows the seed page; optional fields are omitted when
//! unset; times are RFC 3339 UTC with `Z`, to the second (as in the seed).

use chrono::{DateTime, SecondsFormat, Utc};
use releasedesk_store::{AgentView, AssignedAgent, Cursor, Page, PhoneNumberView, ReleaseRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `{"success": true, "data": …}`, plus `pagination` on lists.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

impl<T> Envelope<T> {
    pub fn new(data: T) -> Self {
        Self {
            success: true,
            data,
            pagination: None,
        }
    }
}

impl<T> Envelope<Vec<T>> {
    pub fn page<U>(page: Page<U>, f: impl Fn(U) -> T) -> Self {
        let pagination = Pagination {
            next_cursor: page.next_cursor.as_ref().map(Cursor::encode),
            has_more: page.next_cursor.is_some(),
        };
        Self {
            success: true,
            data: page.items.into_iter().map(f).collect(),
            pagination: Some(pagination),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// A release request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseRequestDto {
    #[schema(example = "0193a0b2-7c4e-7d2a-9f1e-2b3c4d5e6f70")]
    pub id: String,
    pub phone_number_id: String,
    /// E.164.
    #[schema(example = "+15551234567")]
    pub phone_number: String,
    pub reason: String,
    /// `pending`, `approved`, `released`, `cancelled` or `rejected`.
    #[schema(example = "pending")]
    pub status: String,
    #[schema(example = "2024-01-15T12:00:00Z")]
    pub requested_at: String,
    /// When it left `pending`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// The staff note on a rejection or approval, meant for the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_note: Option<String>,
}

impl From<ReleaseRequest> for ReleaseRequestDto {
    fn from(r: ReleaseRequest) -> Self {
        Self {
            id: r.id.to_string(),
            phone_number_id: r.phone_number_id.to_string(),
            phone_number: r.phone_number,
            reason: r.reason,
            status: r.status.as_str().to_owned(),
            requested_at: rfc3339(r.requested_at),
            resolved_at: r.resolved_at.map(rfc3339),
            released_at: r.released_at.map(rfc3339),
            review_note: r.review_note,
        }
    }
}

/// An agent holding a number.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedAgentDto {
    pub id: String,
    pub name: String,
    /// `active`, `draft` or `paused`; only `active` agents make a number "in use".
    pub current_status: String,
}

impl From<AssignedAgent> for AssignedAgentDto {
    fn from(a: AssignedAgent) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name,
            current_status: a.current_status.as_str().into(),
        }
    }
}

/// A phone number of the environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberDto {
    pub id: String,
    #[schema(example = "+15551234567")]
    pub phone_number: String,
    /// `active` or `released`.
    pub current_status: String,
    /// Whether an active agent holds it (then it cannot be released).
    pub in_use: bool,
    pub agents: Vec<AssignedAgentDto>,
    /// The id of its open (pending or approved) release request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_request_id: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

impl From<PhoneNumberView> for PhoneNumberDto {
    fn from(n: PhoneNumberView) -> Self {
        Self {
            in_use: n.in_use(),
            id: n.id.to_string(),
            phone_number: n.phone_number,
            current_status: n.current_status.as_str().into(),
            agents: n.agents.into_iter().map(Into::into).collect(),
            release_request_id: n.open_request_id.map(|i| i.to_string()),
            created_at: rfc3339(n.created_at),
            released_at: n.released_at.map(rfc3339),
        }
    }
}

/// A voice agent of the environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDto {
    pub id: String,
    pub name: String,
    /// `active`, `draft` or `paused`.
    pub current_status: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub phone_number_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<AgentView> for AgentDto {
    fn from(a: AgentView) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name,
            current_status: a.current_status.as_str().into(),
            direction: a.direction.as_str().into(),
            phone_number_ids: a.phone_number_ids.iter().map(ToString::to_string).collect(),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// Body of `POST /phone-numbers/{id}/request-release`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestReleaseBody {
    /// Why the number is no longer needed: 10–500 characters after trimming; no control
    /// characters other than newline and tab.
    #[schema(
        example = "We migrated outbound calling to a new toll-free number and no longer need this DID."
    )]
    pub reason: Option<String>,
}

/// Body of `PUT /agents/{id}/calling`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AgentCallingBody {
    /// `inbound` or `outbound`.
    #[schema(example = "outbound")]
    pub direction: Option<String>,
    /// The complete list of numbers the agent should hold (at most 100); numbers left out are
    /// detached.
    pub phone_number_ids: Option<Vec<String>>,
}
