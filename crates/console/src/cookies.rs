//! The console's cookies. All are `HttpOnly`, `SameSite=Strict`, `Path=/console`, and `Secure`
//! when configured. Values are base64url or hex, so they need no quoting.

use axum::http::header::{COOKIE, HeaderValue, SET_COOKIE};
use axum::http::{HeaderMap, request::Parts};
use axum::response::Response;

/// The session id (its SHA-256 is the session row's key).
pub(crate) const SESSION: &str = "rd_session";
/// The sign-in form's CSRF token, before there is a session (double submit).
pub(crate) const LOGIN_CSRF: &str = "rd_login_csrf";
/// A message for the page after a redirect.
pub(crate) const FLASH: &str = "rd_flash";

/// The value of cookie `name` in the request, if any.
pub(crate) fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

pub(crate) fn get_from<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    get(&parts.headers, name)
}

/// `Set-Cookie` for `name=value`; `max_age` in seconds (`None`: a browser-session cookie).
pub(crate) fn set(res: &mut Response, name: &str, value: &str, max_age: Option<i64>, secure: bool) {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(SET_COOKIE, v);
    }
}

pub(crate) fn clear(res: &mut Response, name: &str, secure: bool) {
    set(res, name, "", Some(0), secure);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; rd_session=xyz; b=2"));
        assert_eq!(get(&h, "rd_session"), Some("xyz"));
        assert_eq!(get(&h, "rd_sess"), None);
    }
}
