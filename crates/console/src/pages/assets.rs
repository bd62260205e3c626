//! `GET /console/static/console.css`: the stylesheet, compiled into the binary (no CDN, no
//! files to deploy), cached briefly and revalidated by ETag.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../../static/console.css");

static ETAG: LazyLock<String> =
    LazyLock::new(|| format!("\"{}\"", &crate::security::sha256_hex(CSS)[..16]));

pub(crate) async fn stylesheet(headers: HeaderMap) -> Response {
    let etag = ETAG.as_str();
    let cache = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600, must-revalidate"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"css\"")),
        ),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        CSS,
    )
        .into_response()
}
