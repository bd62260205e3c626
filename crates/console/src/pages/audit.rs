//! `GET /console/audit`: the audit log, newest first, filterable by action, environment and
//! actor, paged by keyset (`before` = the id of the last row shown); `?format=csv` exports
//! every matching row (up to [`MAX_EXPORT_ROWS`]).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use releasedesk_domain::EnvironmentId;
use releasedesk_store::{AuditAction, AuditEntry, AuditFilter, EnvironmentInfo};
use serde::Deserialize;
use uuid::Uuid;

use super::flash_of;
use super::request::{EventRow, describe_detail, event_row};
use crate::csv;
use crate::error::HtmlError;
use crate::session::Staff;
use crate::state::AppState;
use crate::view::{Layout, query_string, rfc3339};

const PAGE_SIZE: u64 = 50;
const EXPORT_BATCH: u64 = 1000;
/// An export is a file for a spreadsheet, not a backup; past this, narrow the filters.
const MAX_EXPORT_ROWS: usize = 100_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditQuery {
    action: String,
    env: String,
    actor: String,
    before: String,
    format: String,
}

pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub(crate) struct AuditRow {
    pub event: EventRow,
    pub environment: String,
    pub request_href: Option<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    layout: Layout,
    actions: Vec<Choice>,
    environments: Vec<Choice>,
    actor: String,
    rows: Vec<AuditRow>,
    next_href: Option<String>,
    first_href: Option<String>,
    csv_href: String,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Response, HtmlError> {
    let action = match q.action.as_str() {
        "" => None,
        a => Some(
            AuditAction::parse(a)
                .ok_or_else(|| HtmlError::BadRequest(format!("unknown action {a:?}")))?,
        ),
    };
    let environment_id = match q.env.as_str() {
        "" => None,
        e => Some(
            EnvironmentId::parse(e)
                .map_err(|_| HtmlError::NotFound("There is no such environment."))?,
        ),
    };
    let before = match q.before.as_str() {
        "" => None,
        b => Some(Uuid::parse_str(b).map_err(|_| HtmlError::BadRequest("bad page cursor".into()))?),
    };
    let mut filter = AuditFilter {
        action,
        environment_id,
        request_id: None,
        actor: Some(q.actor.trim().to_owned()).filter(|a| !a.is_empty()),
        before,
        limit: PAGE_SIZE + 1,
    };
    let envs = state.store.list_environments().await?;
    let env_name = |id| env_name(&envs, id);

    if q.format == "csv" {
        filter.before = None;
        return export_csv(&state, filter, &envs).await;
    }

    let mut entries = state.store.list_audit(&filter).await?;
    let has_more = entries.len() as u64 > PAGE_SIZE;
    entries.truncate(PAGE_SIZE as usize);
    let params = |before: &str, format: &str| {
        query_string(&[
            ("action", &q.action),
            ("env", &q.env),
            ("actor", q.actor.trim()),
            ("before", before),
            ("format", format),
        ])
    };
    let next_href = has_more
        .then(|| entries.last())
        .flatten()
        .map(|last| format!("/console/audit{}", params(&last.id.to_string(), "")));
    let first_href = before.map(|_| format!("/console/audit{}", params("", "")));
    let page = AuditPage {
        layout: Layout::signed_in("Audit log", &staff, flash_of(&headers), "audit"),
        actions: AuditAction::all()
            .map(|a| Choice {
                value: a.name().into_owned(),
                label: a.name().into_owned(),
                selected: Some(a) == action,
            })
            .collect(),
        environments: envs
            .iter()
            .map(|e| Choice {
                value: e.id.to_string(),
                label: e.name.clone(),
                selected: Some(e.id) == environment_id,
            })
            .collect(),
        actor: q.actor.trim().to_owned(),
        rows: entries
            .iter()
            .map(|e| AuditRow {
                event: event_row(e),
                environment: env_name(e.environment_id),
                request_href: e.request_id.map(|r| format!("/console/requests/{r}")),
            })
            .collect(),
        next_href,
        first_href,
        csv_href: format!("/console/audit{}", params("", "csv")),
    };
    Ok(Html(page.render()?).into_response())
}

async fn export_csv(
    state: &AppState,
    mut filter: AuditFilter,
    envs: &[EnvironmentInfo],
) -> Result<Response, HtmlError> {
    let mut out = csv::line([
        "occurred_at",
        "action",
        "actor_kind",
        "actor",
        "environment",
        "environment_id",
        "request_id",
        "phone_number_id",
        "detail",
    ]);
    filter.limit = EXPORT_BATCH;
    let mut written = 0;
    loop {
        let batch: Vec<AuditEntry> = state.store.list_audit(&filter).await?;
        for e in &batch {
            let id = |v: Option<String>| v.unwrap_or_default();
            out.push_str(&csv::line([
                rfc3339(e.occurred_at).as_str(),
                &e.action,
                &e.actor_kind,
                &e.actor_label,
                &env_name(envs, e.environment_id),
                &id(e.environment_id.map(|v| v.to_string())),
                &id(e.request_id.map(|v| v.to_string())),
                &id(e.phone_number_id.map(|v| v.to_string())),
                &e.detail.as_deref().map(describe_detail).unwrap_or_default(),
            ]));
        }
        written += batch.len();
        match batch.last() {
            Some(last) if batch.len() as u64 == EXPORT_BATCH && written < MAX_EXPORT_ROWS => {
                filter.before = Some(last.id);
            }
            _ => break,
        }
    }
    let mut res = out.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"releasedesk-audit.csv\""),
    );
    Ok(res)
}

fn env_name(envs: &[EnvironmentInfo], id: Option<EnvironmentId>) -> String {
    id.and_then(|id| envs.iter().find(|e| e.id == id))
        .map(|e| e.name.clone())
        .unwrap_or_default()
}
