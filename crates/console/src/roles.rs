//! Who may do what: every console route but sign-in and sign-out sits behind [`require`] with
//! the [`Permission`] it needs (the table of routes is in `lib.rs`, the table of roles in the
//! domain's [`StaffRole::allows`]). A signed-out visitor goes to the sign-in form; a role that
//! does not allow the action gets the 403 page before any handler runs, so nothing changes.
//!
//! Pages also hide what the role cannot use ([`Staff::can`]), but hiding is a courtesy: the
//! check here is what holds.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use releasedesk_domain::Permission;

use crate::error::HtmlError;
use crate::session::Staff;
use crate::state::AppState;

impl Staff {
    /// Does the signed-in member's role (as it is now) allow `permission`?
    pub fn can(&self, permission: Permission) -> bool {
        self.session.role.allows(permission)
    }
}

/// The middleware of a group of routes that need `permission`: loads the session once (the
/// handlers' [`Staff`] extractor reuses it) and refuses a role without the permission.
pub(crate) async fn require(
    State((state, permission)): State<(AppState, Permission)>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let staff = match Staff::from_request_parts(&mut parts, &state).await {
        Ok(staff) => staff,
        Err(to_sign_in) => return to_sign_in,
    };
    if !staff.can(permission) {
        return HtmlError::NotAllowed {
            role: staff.session.role,
            permission,
        }
        .into_response();
    }
    parts.extensions.insert(staff);
    next.run(Request::from_parts(parts, body)).await
}
