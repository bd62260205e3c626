//! `GET /console/requests/{id}`: everything a reviewer needs to decide, most important first —
//! the number, the reason, what blocks approval, the age — then the forms, the agents, the
//! timeline and the notifications.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Html;
use releasedesk_domain::{RequestId, RequestStatus};
use releasedesk_store::{AuditEntry, OutboxRow, now};

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
        age: age(r.requested_at, now()),
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
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => raw.to_owned(),
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
