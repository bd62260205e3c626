//! Audit events: written in the same transaction as the change they record.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use releasedesk_domain::{EnvironmentId, PhoneNumberId, RequestEvent, RequestId, StaffId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::entities::audit_event;
use crate::{Store, StoreError, now};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A customer, through an API token (identified by its display prefix, never the secret).
    Customer { token_prefix: String },
    /// A support staff member, through the console.
    Staff { id: StaffId, email: String },
    /// The service itself (the release job, the outbox worker).
    System,
    /// An operator at the command line.
    Cli,
}

impl Actor {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Actor::Customer { .. } => "customer",
            Actor::Staff { .. } => "staff",
            Actor::System => "system",
            Actor::Cli => "cli",
        }
    }
    pub(crate) fn id(&self) -> Option<String> {
        match self {
            Actor::Customer { token_prefix } => Some(token_prefix.clone()),
            Actor::Staff { id, .. } => Some(id.to_string()),
            Actor::System | Actor::Cli => None,
        }
    }
    pub(crate) fn label(&self) -> String {
        match self {
            Actor::Customer { token_prefix } => format!("token {token_prefix}…"),
            Actor::Staff { email, .. } => email.clone(),
            Actor::System => "releasedesk".into(),
            Actor::Cli => "command line".into(),
        }
    }
}

/// What happened. Stored as its dotted name (`request.approved`, `staff.signed_in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A release request was created or entered a new status.
    Request(RequestEvent),
    /// A reviewer approved a request that needs more approvals; it stays pending.
    ApprovalRecorded,
    /// The support inbox was reminded of an overdue request.
    RequestReminded,
    AgentCallingUpdated,
    /// An environment's approval policy changed.
    EnvironmentPolicyChanged,
    StaffSignedIn,
    StaffSignInFailed,
    StaffSignedOut,
    StaffAdded,
    StaffRoleChanged,
    StaffDisabled,
    StaffEnabled,
    StaffPasswordReset,
    OutboxRetried,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookSecretRotated,
    WebhookEndpointDisabled,
}

impl AuditAction {
    /// Every action, request events first.
    pub fn all() -> impl Iterator<Item = AuditAction> {
        RequestEvent::ALL
            .iter()
            .map(|&e| AuditAction::Request(e))
            .chain([
                AuditAction::ApprovalRecorded,
                AuditAction::RequestReminded,
                AuditAction::AgentCallingUpdated,
                AuditAction::EnvironmentPolicyChanged,
                AuditAction::StaffSignedIn,
                AuditAction::StaffSignInFailed,
                AuditAction::StaffSignedOut,
                AuditAction::StaffAdded,
                AuditAction::StaffRoleChanged,
                AuditAction::StaffDisabled,
                AuditAction::StaffEnabled,
                AuditAction::StaffPasswordReset,
                AuditAction::OutboxRetried,
                AuditAction::WebhookEndpointCreated,
                AuditAction::WebhookEndpointDeleted,
                AuditAction::WebhookSecretRotated,
                AuditAction::WebhookEndpointDisabled,
            ])
    }

    pub fn name(self) -> Cow<'static, str> {
        match self {
            AuditAction::Request(event) => Cow::Owned(format!("request.{event}")),
            AuditAction::ApprovalRecorded => Cow::Borrowed("request.approval_recorded"),
            AuditAction::RequestReminded => Cow::Borrowed("request.reminded"),
            AuditAction::AgentCallingUpdated => Cow::Borrowed("agent.calling_updated"),
            AuditAction::EnvironmentPolicyChanged => Cow::Borrowed("environment.policy_changed"),
            AuditAction::StaffSignedIn => Cow::Borrowed("staff.signed_in"),
            AuditAction::StaffSignInFailed => Cow::Borrowed("staff.sign_in_failed"),
            AuditAction::StaffSignedOut => Cow::Borrowed("staff.signed_out"),
            AuditAction::StaffAdded => Cow::Borrowed("staff.added"),
            AuditAction::StaffRoleChanged => Cow::Borrowed("staff.role_changed"),
            AuditAction::StaffDisabled => Cow::Borrowed("staff.disabled"),
            AuditAction::StaffEnabled => Cow::Borrowed("staff.enabled"),
            AuditAction::StaffPasswordReset => Cow::Borrowed("staff.password_reset"),
            AuditAction::OutboxRetried => Cow::Borrowed("outbox.retried"),
            AuditAction::WebhookEndpointCreated => Cow::Borrowed("webhook_endpoint.created"),
            AuditAction::WebhookEndpointDeleted => Cow::Borrowed("webhook_endpoint.deleted"),
            AuditAction::WebhookSecretRotated => Cow::Borrowed("webhook_endpoint.secret_rotated"),
            AuditAction::WebhookEndpointDisabled => Cow::Borrowed("webhook_endpoint.disabled"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::all().find(|a| a.name() == s)
    }
}

/// One row of the audit log, as shown in the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_label: String,
    pub action: String,
    pub environment_id: Option<EnvironmentId>,
    pub request_id: Option<RequestId>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub detail: Option<String>,
}

impl From<audit_event::Model> for AuditEntry {
    fn from(m: audit_event::Model) -> Self {
        Self {
            id: m.id,
            occurred_at: m.occurred_at,
            actor_kind: m.actor_kind,
            actor_label: m.actor_label,
            action: m.action,
            environment_id: m.environment_id.map(Into::into),
            request_id: m.request_id.map(Into::into),
            phone_number_id: m.phone_number_id.map(Into::into),
            detail: m.detail,
        }
    }
}

/// Filters of the console's audit log. Newest first; `before` is the id of the last row seen.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    pub environment_id: Option<EnvironmentId>,
    pub request_id: Option<RequestId>,
    pub actor: Option<String>,
    pub before: Option<Uuid>,
    pub limit: u64,
}

/// The audit row of a change; the caller passes its open transaction.
pub(crate) struct Event<'a> {
    pub actor: &'a Actor,
    pub action: AuditAction,
    pub environment_id: Option<EnvironmentId>,
    pub request_id: Option<RequestId>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub detail: Option<serde_json::Value>,
}

impl Event<'_> {
    pub(crate) async fn record(self, tx: &impl ConnectionTrait) -> Result<(), StoreError> {
        let row = audit_event::ActiveModel {
            id: Set(Uuid::now_v7()),
            occurred_at: Set(now()),
            actor_kind: Set(self.actor.kind().into()),
            actor_id: Set(self.actor.id()),
            actor_label: Set(self.actor.label()),
            action: Set(self.action.name().into_owned()),
            environment_id: Set(self.environment_id.map(|i| i.as_uuid())),
            request_id: Set(self.request_id.map(|i| i.as_uuid())),
            phone_number_id: Set(self.phone_number_id.map(|i| i.as_uuid())),
            detail: Set(self.detail.map(|d| d.to_string())),
        };
        audit_event::Entity::insert(row)
            .exec_without_returning(tx)
            .await?;
        Ok(())
    }
}

impl Store {
    /// The audit log, newest first, filtered; cost O(page) through the id-ordered indexes.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = audit_event::Entity::find();
        if let Some(a) = filter.action {
            q = q.filter(audit_event::Column::Action.eq(a.name().into_owned()));
        }
        if let Some(e) = filter.environment_id {
            q = q.filter(audit_event::Column::EnvironmentId.eq(e.as_uuid()));
        }
        if let Some(r) = filter.request_id {
            q = q.filter(audit_event::Column::RequestId.eq(r.as_uuid()));
        }
        if let Some(actor) = filter.actor.as_deref().filter(|a| !a.is_empty()) {
            q = q.filter(audit_event::Column::ActorLabel.contains(actor));
        }
        if let Some(before) = filter.before {
            q = q.filter(audit_event::Column::Id.lt(before));
        }
        let rows = q
            .order_by_desc(audit_event::Column::Id)
            .limit(filter.limit.clamp(1, 10_000))
            .all(self.reader())
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// A request's timeline, oldest first.
    pub async fn request_timeline(
        &self,
        request: RequestId,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::RequestId.eq(request.as_uuid()))
            .order_by_asc(audit_event::Column::Id)
            .all(self.reader())
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
