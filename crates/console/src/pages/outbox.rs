//! `GET /console/outbox`: emails, webhook deliveries and release jobs with their state,
//! attempts and last error (and, for webhooks, the endpoint URL, the event type and the last
//! HTTP status); `POST /console/outbox/{id}/retry` puts a dead row back in the queue.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use releasedesk_domain::{OutboxId, Permission};
use releasedesk_store::{OutboxState, StoreError};
use serde::Deserialize;

use super::flash_of;
use crate::error::HtmlError;
use crate::flash::{self, Flash};
use crate::session::{CsrfForm, Staff, TokenOnly};
use crate::state::AppState;
use crate::view::{Layout, query_string, rfc3339, timestamp};

/// The newest rows; the outbox is a working queue, old sent rows are of little interest.
const SHOWN: u64 = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OutboxQuery {
    state: String,
}

pub(crate) struct Tab {
    pub label: String,
    pub count: Option<u64>,
    pub current: bool,
    pub href: String,
}

pub(crate) struct Row {
    pub id: String,
    pub kind: &'static str,
    /// A webhook delivery's event type.
    pub event_type: Option<&'static str>,
    /// The email address, or the webhook endpoint's URL.
    pub recipient: String,
    pub state: &'static str,
    pub dead: bool,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: String,
    /// A webhook delivery's last HTTP status.
    pub last_status: Option<u16>,
    pub next_attempt: String,
    pub created_at: String,
    pub created_at_full: String,
    pub request_href: Option<String>,
}

#[derive(Template)]
#[template(path = "console/outbox.html")]
struct OutboxPage {
    layout: Layout,
    tabs: Vec<Tab>,
    rows: Vec<Row>,
    csrf_token: String,
    shown: u64,
    /// The signed-in role may retry dead rows (the button is shown).
    can_retry: bool,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
    Query(q): Query<OutboxQuery>,
) -> Result<Html<String>, HtmlError> {
    let filter = match q.state.as_str() {
        "" => None,
        s => Some(
            s.parse::<OutboxState>()
                .map_err(|_| HtmlError::BadRequest(format!("unknown state {s:?}")))?,
        ),
    };
    let counts = state.store.outbox_counts().await?;
    let mut tabs = vec![Tab {
        label: "All".into(),
        count: None,
        current: filter.is_none(),
        href: "/console/outbox".into(),
    }];
    tabs.extend(counts.iter().map(|&(s, n)| Tab {
        label: s.as_str().into(),
        count: Some(n),
        current: filter == Some(s),
        href: format!("/console/outbox{}", query_string(&[("state", s.as_str())])),
    }));
    let rows = state
        .store
        .list_outbox(filter, SHOWN)
        .await?
        .into_iter()
        .map(|o| Row {
            id: o.id.to_string(),
            kind: o.kind.as_str(),
            event_type: o.event_type.map(|e| e.as_str()),
            recipient: o.recipient.unwrap_or_default(),
            state: o.state.as_str(),
            dead: o.state == OutboxState::Dead,
            attempts: o.attempts,
            max_attempts: o.max_attempts,
            last_error: o.last_error.unwrap_or_default(),
            last_status: o.last_status_code,
            next_attempt: match o.state {
                OutboxState::Pending => timestamp(o.next_attempt_at),
                _ => String::new(),
            },
            created_at: timestamp(o.created_at),
            created_at_full: rfc3339(o.created_at),
            request_href: o.request_id.map(|r| format!("/console/requests/{r}")),
        })
        .collect();
    let page = OutboxPage {
        layout: Layout::signed_in("Outbox", &staff, flash_of(&headers), "outbox"),
        tabs,
        rows,
        csrf_token: staff.session.csrf_token.clone(),
        shown: SHOWN,
        can_retry: staff.can(Permission::RetryOutbox),
    };
    Ok(Html(page.render()?))
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, _form): CsrfForm<TokenOnly>,
) -> Result<Response, HtmlError> {
    let id =
        OutboxId::parse(&id).map_err(|_| HtmlError::NotFound("There is no such outbox row."))?;
    let secure = state.config.secure_cookies;
    let flash = match state.store.outbox_retry(id, &staff.session.actor()).await {
        Ok(row) => Flash::success(format!(
            "{} queued again; the worker picks it up shortly.",
            row.kind
        )),
        Err(StoreError::OutboxRowNotRetryable) => Flash::error(
            "That row is not dead (any more), so there is nothing to retry; nothing changed.",
        ),
        Err(e) => return Err(e.into()),
    };
    Ok(flash::redirect("/console/outbox", flash, secure))
}
