//! What the use cases hand out: domain-typed views, not entities.

use chrono::{DateTime, Utc};
use releasedesk_domain::{
    AgentId, AgentStatus, Direction, EnvironmentId, PhoneNumberId, PhoneNumberStatus, RequestId,
    RequestStatus, StaffId,
};

use crate::StoreError;
use crate::entities::{agent, phone_number, release_request};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub id: RequestId,
    pub environment_id: EnvironmentId,
    pub phone_number_id: PhoneNumberId,
    pub phone_number: String,
    pub reason: String,
    pub status: RequestStatus,
    pub requested_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub released_at: Option<DateTime<Utc>>,
    pub review_note: Option<String>,
    pub reviewed_by: Option<StaffId>,
}

impl TryFrom<release_request::Model> for ReleaseRequest {
    type Error = StoreError;
    fn try_from(m: release_request::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id.into(),
            environment_id: m.environment_id.into(),
            phone_number_id: m.phone_number_id.into(),
            phone_number: m.phone_number,
            reason: m.reason,
            status: parse_column("release_requests.status", &m.status)?,
            requested_at: m.requested_at,
            resolved_at: m.resolved_at,
            released_at: m.released_at,
            review_note: m.review_note,
            reviewed_by: m.reviewed_by.map(Into::into),
        })
    }
}

/// An agent holding a number, as shown on the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedAgent {
    pub id: AgentId,
    pub name: String,
    pub current_status: AgentStatus,
}

impl AssignedAgent {
    /// Only active agents make a number "in use".
    pub fn blocks_release(&self) -> bool {
        self.current_status == AgentStatus::Active
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumberView {
    pub id: PhoneNumberId,
    pub environment_id: EnvironmentId,
    pub phone_number: String,
    pub current_status: PhoneNumberStatus,
    pub created_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
    pub agents: Vec<AssignedAgent>,
    pub open_request_id: Option<RequestId>,
}

impl PhoneNumberView {
    pub(crate) fn from_model(
        m: phone_number::Model,
        agents: Vec<AssignedAgent>,
        open_request_id: Option<RequestId>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id.into(),
            environment_id: m.environment_id.into(),
            phone_number: m.e164,
            current_status: parse_column("phone_numbers.status", &m.status)?,
            created_at: m.created_at,
            released_at: m.released_at,
            agents,
            open_request_id,
        })
    }

    pub fn in_use(&self) -> bool {
        self.agents.iter().any(AssignedAgent::blocks_release)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub id: AgentId,
    pub environment_id: EnvironmentId,
    pub name: String,
    pub current_status: AgentStatus,
    pub direction: Direction,
    pub phone_number_ids: Vec<PhoneNumberId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AgentView {
    pub(crate) fn from_model(
        m: agent::Model,
        phone_number_ids: Vec<PhoneNumberId>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id.into(),
            environment_id: m.environment_id.into(),
            name: m.name,
            current_status: parse_column("agents.current_status", &m.current_status)?,
            direction: parse_column("agents.direction", &m.direction)?,
            phone_number_ids,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// A status column holding a value the domain does not know is corrupt data, not user error.
pub(crate) fn parse_column<T: std::str::FromStr>(
    column: &str,
    value: &str,
) -> Result<T, StoreError> {
    value.parse().map_err(|_| {
        StoreError::Database(sea_orm::DbErr::Type(format!(
            "{column} holds unknown value {value:?}"
        )))
    })
}
