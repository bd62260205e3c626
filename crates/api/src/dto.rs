//! The API's JSON shapes besides the release request (whose one definition is
//! [`releasedesk_store::ReleaseRequestObject`], shared with webhooks). Field order is the
//! order a reader expects; optional fields are omitted when unset (never `null`); times are
//! RFC 3339 UTC with `Z`, to the second.

use chrono::{DateTime, Utc};
use releasedesk_domain::{
    AgentId, AgentStatus, Direction, PhoneNumberId, PhoneNumberStatus, RequestId,
};
use releasedesk_store::wire::utc_seconds;
use releasedesk_store::{AgentView, AssignedAgent, Cursor, Page, PhoneNumberView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// `success` of a success envelope: the schema `{"type": "boolean", "enum": [true]}`.
pub(crate) fn always_true() -> RefOr<Schema> {
    boolean_constant(true)
}

/// `success` of an error envelope: the schema `{"type": "boolean", "enum": [false]}`.
pub(crate) fn always_false() -> RefOr<Schema> {
    boolean_constant(false)
}

fn boolean_constant(value: bool) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
        .into()
}

/// `{"success": true, "data": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    #[schema(schema_with = always_true)]
    pub success: bool,
    pub data: T,
}

impl<T> Envelope<T> {
    pub fn new(data: impl Into<T>) -> Self {
        Self {
            success: true,
            data: data.into(),
        }
    }
}

/// `{"success": true, "data": [ … ], "pagination": {…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListEnvelope<T> {
    #[schema(schema_with = always_true)]
    pub success: bool,
    pub data: Vec<T>,
    pub pagination: Pagination,
}

impl<T> ListEnvelope<T> {
    pub fn page<U>(page: Page<U>, f: impl Fn(U) -> T) -> Self {
        let pagination = Pagination {
            next_cursor: page.next_cursor.as_ref().map(Cursor::encode),
            has_more: page.next_cursor.is_some(),
        };
        Self {
            success: true,
            data: page.items.into_iter().map(f).collect(),
            pagination,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// An agent holding a number.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AssignedAgent)]
pub struct AssignedAgentDto {
    pub id: AgentId,
    pub name: String,
    /// Only `active` agents make a number "in use".
    pub current_status: AgentStatus,
}

impl From<AssignedAgent> for AssignedAgentDto {
    fn from(a: AssignedAgent) -> Self {
        Self {
            id: a.id,
            name: a.name,
            current_status: a.current_status,
        }
    }
}

/// A phone number of the environment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PhoneNumber)]
pub struct PhoneNumberDto {
    pub id: PhoneNumberId,
    /// The number, in E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+15551234567")]
    pub phone_number: String,
    pub current_status: PhoneNumberStatus,
    /// Whether an active agent holds it (then it cannot be released).
    pub in_use: bool,
    pub agents: Vec<AssignedAgentDto>,
    /// The id of its open (pending or approved) release request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub release_request_id: Option<RequestId>,
    #[serde(serialize_with = "utc_seconds::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub released_at: Option<DateTime<Utc>>,
}

impl From<PhoneNumberView> for PhoneNumberDto {
    fn from(n: PhoneNumberView) -> Self {
        Self {
            in_use: n.in_use(),
            id: n.id,
            phone_number: n.phone_number,
            current_status: n.current_status,
            agents: n.agents.into_iter().map(Into::into).collect(),
            release_request_id: n.open_request_id,
            created_at: n.created_at,
            released_at: n.released_at,
        }
    }
}

/// A voice agent of the environment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Agent)]
pub struct AgentDto {
    pub id: AgentId,
    pub name: String,
    pub current_status: AgentStatus,
    pub direction: Direction,
    pub phone_number_ids: Vec<PhoneNumberId>,
    #[serde(serialize_with = "utc_seconds::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "utc_seconds::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl From<AgentView> for AgentDto {
    fn from(a: AgentView) -> Self {
        Self {
            id: a.id,
            name: a.name,
            current_status: a.current_status,
            direction: a.direction,
            phone_number_ids: a.phone_number_ids,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// Body of `POST /phone-numbers/{phone_number_id}/request-release`.
// Fields are read as `Option` so that a missing one is a 422 naming it (not a 400), then parsed
// into domain types by the handler; `value_type` and `required` state what is accepted.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestReleaseBody {
    /// Why the number is no longer needed: 10–500 characters after trimming, at least 10 of
    /// them visible (white space and invisible formatting characters such as U+200B do not
    /// count); no control characters other than newline and tab, no bidirectional overrides
    /// or isolates (U+202A–U+202E, U+2066–U+2069).
    #[schema(
        value_type = String,
        required = true,
        nullable = false,
        min_length = 10,
        max_length = 500,
        example = "We migrated outbound calling to a new toll-free number and no longer need this DID."
    )]
    pub reason: Option<String>,
}

/// Body of `PUT /agents/{agent_id}/calling`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AgentCallingBody {
    #[schema(value_type = Direction, required = true, nullable = false)]
    pub direction: Option<String>,
    /// The complete list of numbers the agent should hold (at most 100; duplicates collapse);
    /// numbers left out are detached.
    #[schema(
        value_type = Vec<PhoneNumberId>,
        required = true,
        nullable = false,
        max_items = 100
    )]
    pub phone_number_ids: Option<Vec<String>>,
}
