//! `POST /console/requests/{id}/approve` and `/reject`: the two decisions, through the same
//! store use cases as everything else (one transaction: guarded update, audit event, outbox).
//!
//! Every outcome is a 303 back to the request page with a flash saying what happened; a refusal
//! always says that nothing changed. Only roles that may decide reach these handlers (see
//! `roles`). With four eyes, an approval may be recorded while the request waits for a second
//! reviewer's.

use axum::extract::{Path, State};
use axum::response::Response;
use releasedesk_domain::{ApprovalNote, RejectionNote, RequestId, RequestStatus};
use releasedesk_store::StoreError;
use serde::Deserialize;

use crate::error::HtmlError;
use crate::flash::{self, Flash};
use crate::session::{CsrfField, CsrfForm};
use crate::state::AppState;
use crate::view::normalise_newlines;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ApproveForm {
    csrf_token: String,
    confirm_number: String,
    note: String,
}

impl CsrfField for ApproveForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RejectForm {
    csrf_token: String,
    note: String,
}

impl CsrfField for RejectForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, form): CsrfForm<ApproveForm>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id)?;
    let back = format!("/console/requests/{id}");
    let secure = state.config.secure_cookies;
    let note = match normalise_newlines(&form.note).trim() {
        "" => None,
        text => match ApprovalNote::parse(text) {
            Ok(n) => Some(n),
            Err(e) => {
                let msg = format!("The note {e}. Nothing changed.");
                return Ok(flash::redirect(&back, Flash::error(msg), secure));
            }
        },
    };
    let outcome = state
        .store
        .approve(&staff.session.actor(), id, &form.confirm_number, note)
        .await;
    let flash = match outcome {
        Ok(r) if r.status == RequestStatus::Pending => {
            tracing::info!(request = %id, staff = %staff.session.staff_id, "approval recorded; another reviewer must approve");
            Flash::success(format!(
                "Your approval is recorded. {} is released once a different reviewer approves too.",
                r.phone_number
            ))
        }
        Ok(r) => {
            tracing::info!(request = %id, staff = %staff.session.staff_id, "request approved");
            Flash::success(format!(
                "Approved. {} will be released and the customer is emailed.",
                r.phone_number
            ))
        }
        Err(StoreError::SameReviewer) => Flash::error(
            "You already approved this request. Nothing changed: the next approval must come from \
             a different reviewer.",
        ),
        Err(StoreError::ConfirmationMismatch) => Flash::error(
            "The number you typed does not match this request's number. Nothing changed: type \
             the number exactly as shown, including the +.",
        ),
        Err(StoreError::PhoneNumberInUse { agents }) => {
            let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
            Flash::error(format!(
                "Approval refused: the number is in use by active agent{} {}. Nothing changed. \
                 The customer must detach the number (or pause the agent) first.",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ))
        }
        Err(e) => decision_refused(e)?,
    };
    Ok(flash::redirect(&back, flash, secure))
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, form): CsrfForm<RejectForm>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id)?;
    let back = format!("/console/requests/{id}");
    let secure = state.config.secure_cookies;
    let note = match RejectionNote::parse(&normalise_newlines(&form.note)) {
        Ok(n) => n,
        Err(e) => {
            let msg = format!(
                "A rejection needs a note for the customer of {}–{} characters: it {e}. Nothing changed.",
                RejectionNote::MIN_CHARS,
                RejectionNote::MAX_CHARS
            );
            return Ok(flash::redirect(&back, Flash::error(msg), secure));
        }
    };
    let flash = match state.store.reject(&staff.session.actor(), id, note).await {
        Ok(_) => {
            tracing::info!(request = %id, staff = %staff.session.staff_id, "request rejected");
            Flash::success("Rejected. The customer is emailed your note.")
        }
        Err(e) => decision_refused(e)?,
    };
    Ok(flash::redirect(&back, flash, secure))
}

/// The refusals both decisions share; anything else is an error page.
fn decision_refused(e: StoreError) -> Result<Flash, HtmlError> {
    match e {
        StoreError::NotPending(status) => Ok(Flash::error(format!(
            "This request was already {status}; nothing changed."
        ))),
        other => Err(other.into()),
    }
}

fn parse_id(id: &str) -> Result<RequestId, HtmlError> {
    RequestId::parse(id).map_err(|_| HtmlError::NotFound("There is no such release request."))
}
