//! `GET/POST /console/login`, `POST /console/logout`.
//!
//! Before there is a session the sign-in form is protected by a double-submit token: a random
//! value in a `SameSite=Strict` cookie that the form must repeat.
//!
//! Every failed attempt (unknown email, wrong password, disabled account) gets the same message
//! and costs the same Argon2 verification. Before any password is checked, the attempt takes a
//! place in the bounded password-check line (full: "busy", at once) and then reserves its
//! failure with the sign-in throttle (`SignInThrottle` in the store), keyed on the account at
//! the client's address, the address, and the account from new addresses. While a key is
//! locked, attempts are refused without checking the password and do not extend the lock; a
//! right password gives the reservation back.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use releasedesk_domain::EmailAddress;
use releasedesk_store::{
    NewStaffSession, Reservation, SignInAttempt, SignInTicket, StaffAccount, now,
};
use serde::Deserialize;

use crate::client::client_address;
use crate::cookies;
use crate::error::HtmlError;
use crate::flash::{self, Flash};
use crate::password::MAX_PASSWORD_CHARS;
use crate::security::{constant_time_eq, random_token, sha256_hex};
use crate::session::{CsrfForm, Staff, TokenOnly, session_id_hash};
use crate::state::AppState;
use crate::view::{Layout, url_encode};

const FAILED: &str = "That email and password do not match an active staff account.";
/// The login CSRF cookie outlives a form left open over lunch.
const LOGIN_CSRF_MAX_AGE: i64 = 2 * 60 * 60;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    layout: Layout,
    csrf_token: String,
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NextQuery {
    next: String,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
    parts: Parts,
) -> Result<Response, HtmlError> {
    // Already signed in: straight on.
    if Staff::lookup(&parts, &state).await?.is_some() {
        return Ok(Redirect::to(safe_next(&q.next)).into_response());
    }
    let csrf_token = cookies::get_from(&parts, cookies::LOGIN_CSRF)
        .filter(|t| t.len() == 43)
        .map_or_else(random_token, str::to_owned);
    let mut layout = Layout::anonymous("Sign in");
    layout.flash = flash::read(&parts.headers);
    let page = LoginPage {
        layout,
        csrf_token: csrf_token.clone(),
        next: safe_next(&q.next).into(),
    };
    let mut res = Html(page.render()?).into_response();
    cookies::set(
        &mut res,
        cookies::LOGIN_CSRF,
        &csrf_token,
        Some(LOGIN_CSRF_MAX_AGE),
        state.config.secure_cookies,
    );
    Ok(res)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LoginForm {
    email: String,
    password: String,
    csrf_token: String,
    next: String,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, HtmlError> {
    let Ok(Form(form)) = form else {
        return Err(HtmlError::Forbidden);
    };
    let cookie_token = cookies::get_from(&parts, cookies::LOGIN_CSRF).unwrap_or_default();
    if cookie_token.is_empty() || !constant_time_eq(cookie_token, &form.csrf_token) {
        return Err(HtmlError::Forbidden);
    }
    // A place in the password-check line first: when it is full the answer is "busy" at once,
    // before anything is counted or looked up.
    let Some(admission) = state.passwords.admit() else {
        return Err(HtmlError::Busy);
    };
    let secure = state.config.secure_cookies;
    let back = format!("/console/login?next={}", url_encode(safe_next(&form.next)));
    let client = client_address(&parts, &state.config.trusted_proxies);
    let remote = client.map(|ip| ip.to_string());
    let email = EmailAddress::parse(&form.email).ok();
    let account = match &email {
        Some(e) => state.store.staff_for_sign_in(e).await?,
        None => None,
    };
    let account_digest = account_digest(&form.email);
    let attempt = SignInAttempt {
        account: &account_digest,
        address: client,
        staff: account.as_ref().map(|a| a.id),
    };
    let policy = state.config.sign_in_throttle;
    let ticket = match state.store.reserve_sign_in(&attempt, &policy).await? {
        Reservation::Granted(ticket) => ticket,
        Reservation::Refused { until } => {
            tracing::info!(
                known_account = account.is_some(),
                "console sign-in refused: throttled"
            );
            return Ok(locked(&back, until, secure));
        }
    };
    let usable = account
        .as_ref()
        .filter(|a| !a.disabled)
        .map(|a| a.password_hash.clone());
    let password_ok = form.password.chars().count() <= MAX_PASSWORD_CHARS
        && state
            .passwords
            .verify(admission, usable, form.password)
            .await;
    match account {
        Some(account) if password_ok => {
            sign_in(&state, &parts, &account, ticket, safe_next(&form.next)).await
        }
        other => {
            let lock = ticket.locks_until;
            state
                .store
                .record_sign_in_failure(ticket, other.as_ref(), remote.as_deref())
                .await?;
            tracing::info!(known_account = other.is_some(), "console sign-in failed");
            Ok(match lock {
                Some(until) => locked(&back, until, secure),
                None => flash::redirect(&back, Flash::error(FAILED), secure),
            })
        }
    }
}

async fn sign_in(
    state: &AppState,
    parts: &Parts,
    account: &StaffAccount,
    ticket: SignInTicket,
    next: &str,
) -> Result<Response, HtmlError> {
    // A fresh id at every sign-in; a session id the browser already carried is dropped with it.
    let session_id = random_token();
    let id_hash = sha256_hex(&session_id);
    let csrf_token = random_token();
    let old = session_id_hash(parts);
    let remote = client_address(parts, &state.config.trusted_proxies).map(|ip| ip.to_string());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let absolute = state.absolute_timeout();
    state
        .store
        .start_staff_session(
            account,
            NewStaffSession {
                id_hash: &id_hash,
                csrf_token: &csrf_token,
                expires_at: now() + absolute,
                remote_addr: remote.as_deref(),
                user_agent,
                replaces: old.as_deref(),
            },
            ticket,
        )
        .await?;
    tracing::info!(staff = %account.id, "console sign-in");
    let secure = state.config.secure_cookies;
    let mut res = flash::redirect(
        next,
        Flash::success(format!("Signed in as {}.", account.name)),
        secure,
    );
    cookies::set(
        &mut res,
        cookies::SESSION,
        &session_id,
        Some(absolute.num_seconds().max(1)),
        secure,
    );
    cookies::clear(&mut res, cookies::LOGIN_CSRF, secure);
    Ok(res)
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    CsrfForm(_staff, _form): CsrfForm<TokenOnly>,
) -> Result<Response, HtmlError> {
    if let Some(hash) = cookies::get(&headers, cookies::SESSION).map(sha256_hex) {
        state.store.end_staff_session(&hash).await?;
    }
    let secure = state.config.secure_cookies;
    let mut res = flash::redirect("/console/login", Flash::success("Signed out."), secure);
    cookies::clear(&mut res, cookies::SESSION, secure);
    Ok(res)
}

/// The throttle's name for the account an attempt names (whether or not it exists, so the
/// throttle says nothing about which emails are real): a digest of the email as typed,
/// normalised, so the throttle table keeps no typed text — people type passwords into the
/// email field.
fn account_digest(email: &str) -> String {
    let account: String = email.trim().to_lowercase().chars().take(254).collect();
    sha256_hex(&account)
}

fn locked(back: &str, until: DateTime<Utc>, secure: bool) -> Response {
    let minutes = ((until - Utc::now()).num_seconds().max(1) + 59) / 60;
    let text = format!(
        "Too many failed sign-ins. Try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    );
    flash::redirect(back, Flash::error(text), secure)
}

/// Only paths inside the console are followed after sign-in (no open redirect).
fn safe_next(next: &str) -> &str {
    let inside = next.starts_with("/console/")
        && !next.starts_with("/console/login")
        && !next.contains("//")
        && !next.contains('\\')
        && next.chars().all(|c| !c.is_control());
    if inside { next } else { "/console/requests" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(safe_next("/console/requests/abc"), "/console/requests/abc");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/console//evil",
            "/api/v1",
            "",
            "/console/login",
        ] {
            assert_eq!(safe_next(bad), "/console/requests", "{bad}");
        }
    }
}
