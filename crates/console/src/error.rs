//! `HtmlError`: every console failure, rendered as a friendly page with the right status.
//!
//! A handler returns `HtmlError`; its response carries only an [`ErrorPage`] marker, and the
//! [`render_error_pages`] middleware turns the marker into the HTML page. That way the page can
//! show the request id (a header of the *request*, which `IntoResponse` cannot see) and the
//! cause is logged exactly once, here.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use releasedesk_domain::{Permission, StaffRole};
use releasedesk_store::{STORAGE_RETRY_AFTER_SECS, StorageFault, StoreError};

use crate::view::Layout;

/// Seconds a "busy" answer asks the client to wait: a few checks' time.
const BUSY_RETRY_AFTER: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The CSRF token was missing or wrong: nothing was changed.
    #[error("forbidden: CSRF token missing or wrong")]
    Forbidden,
    /// The signed-in staff member's role does not allow the action: nothing was changed.
    #[error("forbidden: a {role} may not {}", permission.describe())]
    NotAllowed {
        role: StaffRole,
        permission: Permission,
    },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Too many sign-ins are being checked already: nothing was checked or counted.
    #[error("busy: the sign-in line is full")]
    Busy,
    /// The database cannot take writes now (full disk, read-only file, failover): the change
    /// was not saved, and the page says so.
    #[error("storage unavailable: {0}")]
    Unavailable(StorageFault),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HtmlError {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }
}

impl From<StoreError> for HtmlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RequestNotFound => HtmlError::NotFound("There is no such release request."),
            StoreError::EnvironmentNotFound => HtmlError::NotFound("There is no such environment."),
            StoreError::PhoneNumberNotFound => {
                HtmlError::NotFound("There is no such phone number.")
            }
            StoreError::Invalid { field, message } => {
                HtmlError::BadRequest(format!("{field}: {message}"))
            }
            StoreError::StorageUnavailable { fault, source } => {
                tracing::warn!(%fault, error = %source, "console request refused: storage unavailable");
                HtmlError::Unavailable(fault)
            }
            other => HtmlError::internal(other),
        }
    }
}

impl From<askama::Error> for HtmlError {
    fn from(e: askama::Error) -> Self {
        HtmlError::internal(e)
    }
}

/// What the error page shows; set on the response as an extension.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPage {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        let page = match &self {
            HtmlError::NotFound(what) => ErrorPage {
                status: StatusCode::NOT_FOUND,
                title: "Not found",
                message: (*what).to_owned(),
            },
            HtmlError::Forbidden => ErrorPage {
                status: StatusCode::FORBIDDEN,
                title: "Form expired",
                message: "This form could not be verified (it may be from an old page or another \
                          site). Nothing was changed. Go back, reload the page and try again."
                    .into(),
            },
            HtmlError::NotAllowed { role, permission } => ErrorPage {
                status: StatusCode::FORBIDDEN,
                title: "Not allowed",
                message: format!(
                    "Your role ({role}) does not allow you to {}. Nothing was changed. Ask an \
                     admin if you need it.",
                    permission.describe()
                ),
            },
            HtmlError::BadRequest(why) => ErrorPage {
                status: StatusCode::BAD_REQUEST,
                title: "Bad request",
                message: why.clone(),
            },
            HtmlError::Busy => ErrorPage {
                status: StatusCode::SERVICE_UNAVAILABLE,
                title: "Busy",
                message: "Too many sign-ins are being checked right now. Nothing was checked or \
                          counted; please try again in a few seconds."
                    .into(),
            },
            HtmlError::Unavailable(fault) => ErrorPage {
                status: StatusCode::SERVICE_UNAVAILABLE,
                title: "Not saved",
                message: match fault {
                    StorageFault::CommitUnconfirmed => format!(
                        "The database stopped answering while your change was being saved \
                         ({fault}). Open the request again to see whether it was saved before \
                         trying again."
                    ),
                    StorageFault::Full
                    | StorageFault::ReadOnly
                    | StorageFault::Io
                    | StorageFault::Busy
                    | StorageFault::ConnectionLost
                    | StorageFault::Unreachable => format!(
                        "Your change was not saved: the database cannot take changes right now \
                         ({fault}). Nothing was changed. Go back and try again in a minute."
                    ),
                },
            },
            HtmlError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "console request failed");
                ErrorPage {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    title: "Something went wrong",
                    message: "The console could not complete this request. Nothing you did was \
                              lost; please try again in a moment."
                        .into(),
                }
            }
        };
        match &self {
            HtmlError::Forbidden => {
                tracing::warn!("console POST refused: CSRF token missing or wrong");
            }
            HtmlError::NotAllowed { role, permission } => {
                tracing::warn!(%role, ?permission, "console action refused: the role does not allow it");
            }
            HtmlError::NotFound(_)
            | HtmlError::BadRequest(_)
            | HtmlError::Busy
            | HtmlError::Unavailable(_)
            | HtmlError::Internal(_) => {}
        }
        let mut res = page.status.into_response();
        let retry_after = match &self {
            HtmlError::Busy => Some(HeaderValue::from_static(BUSY_RETRY_AFTER)),
            HtmlError::Unavailable(_) => Some(HeaderValue::from(STORAGE_RETRY_AFTER_SECS)),
            HtmlError::Forbidden
            | HtmlError::NotAllowed { .. }
            | HtmlError::NotFound(_)
            | HtmlError::BadRequest(_)
            | HtmlError::Internal(_) => None,
        };
        if let Some(retry_after) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, retry_after);
        }
        res.extensions_mut().insert(page);
        res
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorTemplate {
    layout: Layout,
    status: u16,
    message: String,
    request_id: Option<String>,
}

/// Renders [`ErrorPage`] markers (see the module docs).
pub(crate) async fn render_error_pages(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 100)
        .map(str::to_owned);
    let res = next.run(req).await;
    let Some(page) = res.extensions().get::<ErrorPage>().cloned() else {
        return res;
    };
    let template = ErrorTemplate {
        layout: Layout::anonymous(page.title),
        status: page.status.as_u16(),
        message: page.message,
        request_id,
    };
    let body = template.render().unwrap_or_else(|_| page.title.to_owned());
    let mut out = (page.status, Html(body)).into_response();
    // Keep what the handler set besides the body (cookies, for one).
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    out
}
