//! Who is signed in, and the CSRF check every POST goes through.
//!
//! [`Staff`] loads the session named by the cookie (its SHA-256 is the row's key, so the
//! database never holds a usable cookie). Without a live session a page redirects to the
//! sign-in form, remembering where the reviewer was going.
//!
//! [`CsrfForm`] is the only way a signed-in POST handler gets its form: it requires the session
//! and compares the form's `csrf_token` with the session's in constant time before the handler
//! runs, so no handler can forget the check.

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use releasedesk_store::StaffSession;
use serde::de::DeserializeOwned;

use crate::cookies;
use crate::error::HtmlError;
use crate::security::{constant_time_eq, sha256_hex};
use crate::state::AppState;
use crate::view::url_encode;

/// The signed-in staff member of this request.
#[derive(Debug, Clone)]
pub(crate) struct Staff {
    pub session: StaffSession,
}

impl Staff {
    /// The live session the request's cookie names, if any.
    pub async fn lookup(parts: &Parts, state: &AppState) -> Result<Option<Staff>, HtmlError> {
        let Some(hash) = session_id_hash(parts) else {
            return Ok(None);
        };
        let session = state
            .store
            .staff_session(&hash, state.idle_timeout())
            .await?;
        Ok(session.map(|session| Staff { session }))
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Staff::lookup(parts, state).await {
            Ok(Some(staff)) => Ok(staff),
            Ok(None) => Err(to_sign_in(parts).into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The SHA-256 of the session cookie, as the store keys sessions.
pub(crate) fn session_id_hash(parts: &Parts) -> Option<String> {
    cookies::get_from(parts, cookies::SESSION).map(sha256_hex)
}

/// Back to the sign-in form; a GET remembers its page to come back to after sign-in.
fn to_sign_in(parts: &Parts) -> Redirect {
    if parts.method == axum::http::Method::GET {
        let here = parts
            .uri
            .path_and_query()
            .map_or("/console/requests", |p| p.as_str());
        Redirect::to(&format!("/console/login?next={}", url_encode(here)))
    } else {
        Redirect::to("/console/login")
    }
}

/// A form with the CSRF token field.
pub(crate) trait CsrfField {
    fn csrf_token(&self) -> &str;
}

/// A POST's signed-in staff member and form, CSRF-checked (see the module docs).
pub(crate) struct CsrfForm<T>(pub Staff, pub T);

impl<T> FromRequest<AppState> for CsrfForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        // Form fields all default, so the only way parsing fails is a body that is not a form
        // at all: no token could be checked, so it is refused like a wrong token.
        let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| HtmlError::Forbidden.into_response())?;
        if !constant_time_eq(form.csrf_token(), &staff.session.csrf_token) {
            return Err(HtmlError::Forbidden.into_response());
        }
        Ok(CsrfForm(staff, form))
    }
}

/// A form with nothing but the token (sign-out, retry).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct TokenOnly {
    pub csrf_token: String,
}

impl CsrfField for TokenOnly {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}
