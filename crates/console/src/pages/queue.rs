//! `GET /console/requests`: the review queue.
//!
//! Pending requests come first (the default tab), oldest first, each with its age; other tabs
//! list a status newest first. Filters: environment, and a search on the number's digits. Paging
//! is by keyset (`after` = the id of the last row shown), so a page costs O(page).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Html;
use releasedesk_domain::{EnvironmentId, RequestId, RequestStatus};
use releasedesk_store::{OPEN_COUNT_CAP, QueueFilter, now};
use serde::Deserialize;

use super::flash_of;
use crate::error::HtmlError;
use crate::session::Staff;
use crate::state::AppState;
use crate::view::{Layout, age, excerpt, query_string, timestamp};

const PAGE_SIZE: u64 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct QueueQuery {
    /// A status, `all`, or empty (pending).
    status: String,
    env: String,
    q: String,
    after: String,
}

pub(crate) struct Tab {
    pub value: &'static str,
    pub label: String,
    /// "3", or "1000+" past the store's cap.
    pub count: Option<String>,
    pub current: bool,
    pub href: String,
}

pub(crate) struct EnvOption {
    pub id: String,
    pub name: String,
    pub selected: bool,
}

pub(crate) struct Row {
    pub href: String,
    pub phone_number: String,
    pub environment: String,
    pub status: &'static str,
    /// Pending longer than the service level's `remind_after`.
    pub overdue: bool,
    pub reason: String,
    pub age: String,
    pub requested_at: String,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
struct QueuePage {
    layout: Layout,
    tabs: Vec<Tab>,
    environments: Vec<EnvOption>,
    status: String,
    search: String,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Result<Html<String>, HtmlError> {
    let status = match q.status.as_str() {
        "" => Some(RequestStatus::Pending),
        "all" => None,
        s => Some(
            s.parse()
                .map_err(|_| HtmlError::BadRequest(format!("unknown status {s:?}")))?,
        ),
    };
    let status_param = status.map_or("all", RequestStatus::as_str);
    let environment_id = match q.env.as_str() {
        "" => None,
        e => Some(
            EnvironmentId::parse(e)
                .map_err(|_| HtmlError::NotFound("There is no such environment."))?,
        ),
    };
    let after = match q.after.as_str() {
        "" => None,
        a => {
            let id =
                RequestId::parse(a).map_err(|_| HtmlError::BadRequest("bad page cursor".into()))?;
            let last = state.store.find_request(id).await?;
            Some((last.requested_at, id))
        }
    };
    let filter = QueueFilter {
        status,
        environment_id,
        number_search: Some(q.q.trim().to_owned()).filter(|s| !s.is_empty()),
        after,
        limit: PAGE_SIZE + 1,
    };
    let mut items = state.store.queue(&filter).await?;
    let has_more = items.len() as u64 > PAGE_SIZE;
    items.truncate(PAGE_SIZE as usize);

    // Counts for the open statuses only: counting the terminal ones costs O(table), and this
    // page must cost O(page) (bench/README.md).
    let open = state.store.open_request_counts().await?;
    let base = |s: &str| query_string(&[("status", s), ("env", &q.env), ("q", q.q.trim())]);
    let mut tabs: Vec<Tab> = RequestStatus::ALL
        .iter()
        .map(|&s| Tab {
            value: s.as_str(),
            label: capitalise(s.as_str()),
            count: open.iter().find(|(o, _)| *o == s).map(|&(_, n)| {
                if n > OPEN_COUNT_CAP {
                    format!("{OPEN_COUNT_CAP}+")
                } else {
                    n.to_string()
                }
            }),
            current: status == Some(s),
            href: format!("/console/requests{}", base(s.as_str())),
        })
        .collect();
    tabs.push(Tab {
        value: "all",
        label: "All".into(),
        count: None,
        current: status.is_none(),
        href: format!("/console/requests{}", base("all")),
    });

    let environments = state
        .store
        .list_environments()
        .await?
        .into_iter()
        .map(|e| EnvOption {
            selected: Some(e.id) == environment_id,
            id: e.id.to_string(),
            name: e.name,
        })
        .collect();

    let at = now();
    let levels = state.store.options().service_levels;
    let next_href = has_more.then(|| items.last()).flatten().map(|last| {
        let id = last.request.id.to_string();
        format!(
            "/console/requests{}",
            query_string(&[
                ("status", status_param),
                ("env", &q.env),
                ("q", q.q.trim()),
                ("after", &id)
            ])
        )
    });
    let first_href = filter
        .after
        .map(|_| format!("/console/requests{}", base(status_param)));
    let rows = items
        .into_iter()
        .map(|item| Row {
            href: format!("/console/requests/{}", item.request.id),
            phone_number: item.request.phone_number,
            environment: item.environment_name,
            status: item.request.status.as_str(),
            overdue: item.request.status == RequestStatus::Pending
                && levels.is_overdue(item.request.requested_at, at),
            reason: excerpt(&item.request.reason, 140),
            age: age(item.request.requested_at, at),
            requested_at: timestamp(item.request.requested_at),
        })
        .collect();

    let title = match status {
        Some(RequestStatus::Pending) => "Pending requests",
        _ => "Release requests",
    };
    let page = QueuePage {
        layout: Layout::signed_in(title, &staff, flash_of(&headers), "queue"),
        tabs,
        environments,
        status: status_param.to_owned(),
        search: q.q.trim().to_owned(),
        rows,
        next_href,
        first_href,
    };
    Ok(Html(page.render()?))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
