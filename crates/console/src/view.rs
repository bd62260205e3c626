//! What every page shares: the layout's data and small formatting helpers.

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::flash::Flash;
use crate::session::Staff;

/// The data `console/base.html` needs; every page struct has one, named `layout`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub title: String,
    pub staff: Option<NavStaff>,
    pub flash: Option<Flash>,
    /// Which navigation entry is current: `queue`, `audit`, `outbox`, `staff` or empty.
    pub section: &'static str,
}

/// The signed-in header: the name, and the token of the sign-out form.
#[derive(Debug, Clone)]
pub(crate) struct NavStaff {
    pub name: String,
    pub email: String,
    pub csrf_token: String,
    pub role: &'static str,
    /// Show the staff page in the navigation (admins only).
    pub manages_staff: bool,
}

impl Layout {
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            staff: None,
            flash: None,
            section: "",
        }
    }

    pub fn signed_in(
        title: &str,
        staff: &Staff,
        flash: Option<Flash>,
        section: &'static str,
    ) -> Self {
        Self {
            title: title.to_owned(),
            staff: Some(NavStaff {
                name: staff.session.name.clone(),
                email: staff.session.email.clone(),
                csrf_token: staff.session.csrf_token.clone(),
                role: staff.session.role.as_str(),
                manages_staff: staff.can(releasedesk_domain::Permission::ManageStaff),
            }),
            flash,
            section,
        }
    }
}

/// How long ago, as a reviewer reads it at a glance: "just now", "12 min", "3 h", "4 d".
pub(crate) fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - since).num_minutes().max(0);
    match minutes {
        0 => "just now".into(),
        1..=59 => format!("{minutes} min"),
        60..=2879 => format!("{} h", minutes / 60),
        _ => format!("{} d", minutes / 1440),
    }
}

/// A timestamp in UTC to the minute (the title attribute carries the full RFC 3339 value).
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Everything but RFC 3986's unreserved characters (ALPHA / DIGIT / "-" / "." / "_" / "~").
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters, so the value is safe in
/// any part of a URL (a space is `%20`, a `+` is `%2B`).
pub(crate) fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// `?a=1&b=2` from the pairs whose value is not empty; empty when none is.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{}…", head.trim_end())
    } else {
        head
    }
}

/// Browsers send textarea line breaks as CRLF; the domain's text rules refuse `\r`.
pub(crate) fn normalise_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn ages_read_at_a_glance() {
        let now = Utc::now();
        assert_eq!(age(now - TimeDelta::seconds(30), now), "just now");
        assert_eq!(age(now - TimeDelta::minutes(12), now), "12 min");
        assert_eq!(age(now - TimeDelta::minutes(190), now), "3 h");
        assert_eq!(age(now - TimeDelta::hours(47), now), "47 h");
        assert_eq!(age(now - TimeDelta::days(4), now), "4 d");
        assert_eq!(age(now + TimeDelta::minutes(5), now), "just now");
    }

    #[test]
    fn query_strings_skip_empty_values_and_encode() {
        assert_eq!(
            query_string(&[("q", "+1 555"), ("status", "")]),
            "?q=%2B1%20555"
        );
        assert_eq!(query_string(&[("q", "")]), "");
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("ééééé", 3), "ééé…");
        assert_eq!(excerpt("abc", 3), "abc");
    }

    #[test]
    fn crlf_becomes_lf() {
        assert_eq!(normalise_newlines("a\r\nb\rc"), "a\nb\nc");
    }
}
