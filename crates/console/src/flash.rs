//! One-shot messages across a POST → 303 → GET: a short-lived cookie, shown once, then cleared.
//!
//! The text is always rendered escaped, so a forged flash cookie can at worst show its owner a
//! harmless message.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::cookies;
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FlashKind {
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

impl Flash {
    pub fn success(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Success,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }
    pub fn is_error(&self) -> bool {
        self.kind == FlashKind::Error
    }
}

/// Cookies are limited to about 4 KB; no flash needs more than this.
const MAX_TEXT_CHARS: usize = 1000;

/// A 303 to `to` carrying `flash`.
pub(crate) fn redirect(to: &str, flash: Flash, secure: bool) -> Response {
    let flash = Flash {
        text: flash.text.chars().take(MAX_TEXT_CHARS).collect(),
        ..flash
    };
    let mut res = Redirect::to(to).into_response();
    if let Ok(json) = serde_json::to_vec(&flash) {
        cookies::set(
            &mut res,
            cookies::FLASH,
            &URL_SAFE_NO_PAD.encode(json),
            Some(60),
            secure,
        );
    }
    res
}

/// The flash the request carries, if any.
pub(crate) fn read(headers: &HeaderMap) -> Option<Flash> {
    let raw = cookies::get(headers, cookies::FLASH)?;
    let json = URL_SAFE_NO_PAD.decode(raw).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Clears the flash cookie once a page has been shown with it (not on redirects, so the message
/// survives to the page the redirect leads to).
pub(crate) async fn clear_after_showing(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let had_flash = cookies::get(req.headers(), cookies::FLASH).is_some();
    let mut res = next.run(req).await;
    if had_flash && !res.status().is_redirection() && !sets_cookie(&res, cookies::FLASH) {
        cookies::clear(&mut res, cookies::FLASH, state.config.secure_cookies);
    }
    res
}

fn sets_cookie(res: &Response, name: &str) -> bool {
    res.headers()
        .get_all(axum::http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with(&format!("{name}=")))
}
