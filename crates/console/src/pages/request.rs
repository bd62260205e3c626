//! `GET /console/requests/{id}`: everything a reviewer needs to decide, most important first —
//! the number, the reason, what blocks approval, the age, the approvals so far against the
//! environment's policy, when it expires — then the forms (for roles that may decide), the
//! agents, the timeline and the notifications.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Html;
use releasedesk_domain::{Permission, RequestId, RequestStatus};
use releasedesk_store::{Approval, AuditEntry, OutboxRow, now};

use super::flash_of;
use crate::error::HtmlError;
use crate::session::Staff;
use crate::state::AppState;
use crate::view::{Layout, age, rfc3339, timestamp};

pub(crate) struct AgentRow {
    pub name: String,
    pub status: &'static str,
    pub blocks: bool,
}

pub(crate) struct EventRow {
    pub at: String,
    pub at_full: String,
    pub action: String,
    pub actor: String,
    pub detail: String,
}

pub(crate) struct ApprovalRow {
    pub name: String,
    pub email: String,
    pub at: String,
    pub at_full: String,
    pub note: Option<String>,
}

pub(crate) struct NotificationRow {
    pub kind: &'static str,
    pub recipient: String,
    pub state: &'static str,
    pub attempts: i32,
    pub last_error: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "console/request.html")]
struct RequestPage {
    layout: Layout,
    id: String,
    phone_number: String,
    status: &'static str,
    pending: bool,
    environment: String,
    environment_email: String,
    reason: String,
    age: String,
    requested_at: String,
    requested_at_full: String,
    resolved_at: Option<String>,
    review_note: Option<String>,
    blocking: Vec<String>,
    agents: Vec<AgentRow>,
    timeline: Vec<EventRow>,
    notifications: Vec<NotificationRow>,
    csrf_token: String,
    note_min: usize,
    note_max: usize,
    /// The signed-in role may approve and reject.
    can_decide: bool,
    role: &'static str,
    required_approvals: u8,
    approvals: Vec<ApprovalRow>,
    /// "1 of 2 approvals, by Ada Reviewer" (pending) or "Approved by Ada and Bob".
    approvals_summary: Option<String>,
    /// The signed-in reviewer already approved and more approvals are needed: the next one must
    /// be someone else's.
    you_approved: bool,
    /// An approval now would be recorded, not yet approve the request.
    first_of_several: bool,
    /// When a pending request expires, and how long that is from now.
    expires: Option<(String, String)>,
    overdue: bool,
    reminded_at: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Html<String>, HtmlError> {
    let id = RequestId::parse(&id)
        .map_err(|_| HtmlError::NotFound("There is no such release request."))?;
    let d = state.store.request_detail(id).await?;
    let r = &d.request;
    let at = now();
    let pending = r.status == RequestStatus::Pending;
    let levels = state.store.options().service_levels;
    let required = d.environment.required_approvals.get();
    let title = format!("{} — release request", r.phone_number);
    let page = RequestPage {
        layout: Layout::signed_in(&title, &staff, flash_of(&headers), "queue"),
        id: r.id.to_string(),
        phone_number: r.phone_number.clone(),
        status: r.status.as_str(),
        pending: r.status == RequestStatus::Pending,
        environment: d.environment.name.clone(),
        environment_email: d.environment.notify_email.clone(),
        reason: r.reason.clone(),
        age: age(r.requested_at, at),
        requested_at: timestamp(r.requested_at),
        requested_at_full: rfc3339(r.requested_at),
        resolved_at: r.resolved_at.map(timestamp),
        review_note: r.review_note.clone(),
        blocking: d.blocking_agents.iter().map(|a| a.name.clone()).collect(),
        agents: d
            .number
            .agents
            .iter()
            .map(|a| AgentRow {
                name: a.name.clone(),
                status: a.current_status.as_str(),
                blocks: a.blocks_release(),
            })
            .collect(),
        timeline: d.timeline.iter().map(event_row).collect(),
        notifications: d.notifications.iter().map(notification_row).collect(),
        csrf_token: staff.session.csrf_token.clone(),
        note_min: releasedesk_domain::RejectionNote::MIN_CHARS,
        note_max: releasedesk_domain::RejectionNote::MAX_CHARS,
        can_decide: staff.can(Permission::Decide),
        role: staff.session.role.as_str(),
        required_approvals: required,
        approvals: d.approvals.iter().map(approval_row).collect(),
        approvals_summary: approvals_summary(r.status, &d.approvals, required),
        you_approved: pending
            && d.approvals.len() < usize::from(required)
            && d.approvals
                .iter()
                .any(|a| a.staff_id == staff.session.staff_id),
        first_of_several: d.approvals.len() + 1 < usize::from(required),
        expires: levels
            .expires_at(r.requested_at)
            .filter(|_| pending)
            .map(|e| (timestamp(e), age(at, e))),
        overdue: pending && levels.is_overdue(r.requested_at, at),
        reminded_at: d.reminded_at.map(timestamp),
    };
    Ok(Html(page.render()?))
}

pub(crate) fn event_row(e: &AuditEntry) -> EventRow {
    EventRow {
        at: timestamp(e.occurred_at),
        at_full: rfc3339(e.occurred_at),
        action: e.action.clone(),
        actor: e.actor_label.clone(),
        detail: e.detail.as_deref().map(describe_detail).unwrap_or_default(),
    }
}

/// Audit details are small JSON objects; show them as `key: value` pairs rather than raw JSON.
pub(crate) fn describe_detail(raw: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}: {}", describe_value(v)))
            .collect::<Vec<_>>()
            .join("; "),
        _ => raw.to_owned(),
    }
}

/// A string as itself, a list as its items joined by commas, anything else as JSON.
fn describe_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(describe_value)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn approval_row(a: &Approval) -> ApprovalRow {
    ApprovalRow {
        name: a.staff_name.clone(),
        email: a.staff_email.clone(),
        at: timestamp(a.approved_at),
        at_full: rfc3339(a.approved_at),
        note: a.note.clone(),
    }
}

/// What the approvals amount to, in one line: while pending under four eyes, how many of how
/// many and by whom; once approved, by whom.
fn approvals_summary(
    status: RequestStatus,
    approvals: &[Approval],
    required: u8,
) -> Option<String> {
    let names = approvals
        .iter()
        .map(|a| a.staff_name.as_str())
        .collect::<Vec<_>>()
        .join(" and ");
    match status {
        RequestStatus::Pending if required > 1 || !approvals.is_empty() => Some(format!(
            "{} of {required} approvals{}",
            approvals.len(),
            if approvals.is_empty() {
                String::new()
            } else {
                format!(", by {names}")
            }
        )),
        RequestStatus::Approved | RequestStatus::Released if !approvals.is_empty() => {
            Some(format!("Approved by {names}"))
        }
        RequestStatus::Pending
        | RequestStatus::Approved
        | RequestStatus::Released
        | RequestStatus::Cancelled
        | RequestStatus::Rejected
        | RequestStatus::Expired => None,
    }
}

fn notification_row(o: &OutboxRow) -> NotificationRow {
    NotificationRow {
        kind: o.kind.as_str(),
        recipient: o.recipient.clone().unwrap_or_default(),
        state: o.state.as_str(),
        attempts: o.attempts,
        last_error: o.last_error.clone().unwrap_or_default(),
        when: timestamp(o.completed_at.unwrap_or(o.next_attempt_at)),
    }
}
