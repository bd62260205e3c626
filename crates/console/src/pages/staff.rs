//! The admin's staff page: `GET /console/staff` lists the accounts; `POST /console/staff` adds
//! one with a role; `POST /console/staff/{id}/role`, `/disable`, `/enable` and `/password`
//! change one. Only admins reach these routes (see `roles`); every change is audited by the
//! store, as the admin.
//!
//! A new account — or one whose password was lost — gets a generated password, shown once on
//! the page that answers the form (never put in a cookie, a redirect or a log) for the admin to
//! hand over. The admin never chooses it, so it is always long and random; it is hashed with
//! Argon2id like every other.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use rand::Rng;
use releasedesk_domain::{EmailAddress, StaffId, StaffRole};
use releasedesk_store::{StaffMember, StoreError};
use serde::Deserialize;

use super::flash_of;
use crate::error::HtmlError;
use crate::flash::{self, Flash};
use crate::session::{CsrfField, CsrfForm, Staff, TokenOnly};
use crate::state::AppState;
use crate::view::{Layout, rfc3339, timestamp};
use crate::{CreateStaffError, create_staff_with_role, reset_staff_password};

/// Length of a generated password: well past the 12-character minimum.
const GENERATED_PASSWORD_CHARS: usize = 20;
/// No characters that read alike (0/O, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

const BACK: &str = "/console/staff";

pub(crate) struct RoleChoice {
    pub value: &'static str,
    pub selected: bool,
}

pub(crate) struct StaffRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<RoleChoice>,
    pub disabled: bool,
    pub is_you: bool,
    pub created_at: String,
    pub created_at_full: String,
}

#[derive(Template)]
#[template(path = "console/staff.html")]
struct StaffPage {
    layout: Layout,
    rows: Vec<StaffRow>,
    roles: Vec<RoleChoice>,
    csrf_token: String,
}

/// The page that shows a generated password, once.
#[derive(Template)]
#[template(path = "console/staff_added.html")]
struct PasswordPage {
    layout: Layout,
    /// A new account (rather than a new password for an existing one).
    added: bool,
    email: String,
    name: String,
    role: &'static str,
    password: String,
}

fn role_choices(current: StaffRole) -> Vec<RoleChoice> {
    StaffRole::ALL
        .iter()
        .map(|&r| RoleChoice {
            value: r.as_str(),
            selected: r == current,
        })
        .collect()
}

pub(crate) async fn show(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
) -> Result<Html<String>, HtmlError> {
    let rows = state
        .store
        .list_staff()
        .await?
        .into_iter()
        .map(|m| row(m, staff.session.staff_id))
        .collect();
    let page = StaffPage {
        layout: Layout::signed_in("Staff", &staff, flash_of(&headers), "staff"),
        rows,
        roles: role_choices(StaffRole::DEFAULT),
        csrf_token: staff.session.csrf_token.clone(),
    };
    Ok(Html(page.render()?))
}

fn row(m: StaffMember, you: StaffId) -> StaffRow {
    StaffRow {
        id: m.id.to_string(),
        is_you: m.id == you,
        disabled: m.is_disabled(),
        roles: role_choices(m.role),
        created_at: timestamp(m.created_at),
        created_at_full: rfc3339(m.created_at),
        email: m.email,
        name: m.name,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AddForm {
    csrf_token: String,
    email: String,
    name: String,
    role: String,
}

impl CsrfField for AddForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(crate) async fn add(
    State(state): State<AppState>,
    CsrfForm(staff, form): CsrfForm<AddForm>,
) -> Result<Response, HtmlError> {
    let secure = state.config.secure_cookies;
    let refuse = |msg: String| Ok(flash::redirect(BACK, Flash::error(msg), secure));
    let Ok(email) = EmailAddress::parse(form.email.trim()) else {
        return refuse("That is not an email address. Nothing changed.".into());
    };
    let Ok(role) = form.role.parse::<StaffRole>() else {
        return refuse("Choose a role: viewer, reviewer or admin. Nothing changed.".into());
    };
    let password = generate_password();
    let created = create_staff_with_role(
        &state.store,
        &staff.session.actor(),
        &email,
        &form.name,
        &password,
        role,
    )
    .await;
    match created {
        Ok(id) => {
            tracing::info!(staff = %staff.session.staff_id, added = %id, %role, "staff account added");
            let page = PasswordPage {
                layout: Layout::signed_in("Staff account added", &staff, None, "staff"),
                added: true,
                email: email.as_str().to_owned(),
                name: form.name.trim().to_owned(),
                role: role.as_str(),
                password,
            };
            Ok(Html(page.render()?).into_response())
        }
        Err(CreateStaffError::Store(StoreError::DuplicateStaff)) => {
            refuse(format!("{email} already has an account. Nothing changed."))
        }
        Err(CreateStaffError::Store(StoreError::Invalid { field, message })) => {
            refuse(format!("The {field} {message}. Nothing changed."))
        }
        Err(e) => Err(HtmlError::internal(e)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoleForm {
    csrf_token: String,
    role: String,
}

impl CsrfField for RoleForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(crate) async fn set_role(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, form): CsrfForm<RoleForm>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id)?;
    let Ok(role) = form.role.parse::<StaffRole>() else {
        return Err(HtmlError::BadRequest(format!(
            "unknown role {:?}",
            form.role
        )));
    };
    let outcome = state
        .store
        .set_staff_role(&staff.session.actor(), id, role)
        .await;
    let flash = match outcome {
        Ok(m) => Flash::success(format!("{} is now {}.", m.email, m.role)),
        Err(e) => refused(e)?,
    };
    Ok(flash::redirect(BACK, flash, state.config.secure_cookies))
}

pub(crate) async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, _form): CsrfForm<TokenOnly>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id)?;
    let outcome = state.store.disable_staff(&staff.session.actor(), id).await;
    let flash = match outcome {
        Ok(m) => Flash::success(format!(
            "{} is disabled; their sessions have ended.",
            m.email
        )),
        Err(e) => refused(e)?,
    };
    // Disabling yourself ends this session too: the redirect then leads to the sign-in form.
    Ok(flash::redirect(BACK, flash, state.config.secure_cookies))
}

pub(crate) async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, _form): CsrfForm<TokenOnly>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id)?;
    let outcome = state.store.enable_staff(&staff.session.actor(), id).await;
    let flash = match outcome {
        Ok(m) => Flash::success(format!("{} can sign in again.", m.email)),
        Err(e) => refused(e)?,
    };
    Ok(flash::redirect(BACK, flash, state.config.secure_cookies))
}

pub(crate) async fn new_password(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(staff, _form): CsrfForm<TokenOnly>,
) -> Result<Response, HtmlError> {
    let id = parse_id(&id)?;
    let password = generate_password();
    match reset_staff_password(&state.store, &staff.session.actor(), id, &password).await {
        Ok(m) => {
            tracing::info!(staff = %staff.session.staff_id, account = %id, "staff password reset");
            let page = PasswordPage {
                layout: Layout::signed_in("New password", &staff, None, "staff"),
                added: false,
                email: m.email,
                name: m.name,
                role: m.role.as_str(),
                password,
            };
            Ok(Html(page.render()?).into_response())
        }
        Err(CreateStaffError::Store(e)) => {
            let flash = refused(e)?;
            Ok(flash::redirect(BACK, flash, state.config.secure_cookies))
        }
        Err(e) => Err(HtmlError::internal(e)),
    }
}

/// The refusals staff changes share; anything else is an error page.
fn refused(e: StoreError) -> Result<Flash, HtmlError> {
    match e {
        StoreError::LastAdmin => Ok(Flash::error(
            "That would leave no enabled admin. Nothing changed: make another account admin first.",
        )),
        StoreError::StaffNotFound => Err(HtmlError::NotFound("There is no such staff account.")),
        other => Err(other.into()),
    }
}

fn parse_id(id: &str) -> Result<StaffId, HtmlError> {
    StaffId::parse(id).map_err(|_| HtmlError::NotFound("There is no such staff account."))
}

fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_PASSWORD_CHARS)
        .map(|_| PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_random_and_unambiguous() {
        let a = generate_password();
        assert_eq!(a.chars().count(), GENERATED_PASSWORD_CHARS);
        assert!(a.chars().count() >= crate::MIN_PASSWORD_CHARS);
        assert!(a.chars().all(|c| PASSWORD_ALPHABET.contains(&(c as u8))));
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
        assert_ne!(a, generate_password());
    }
}
