//! The request id. A caller may choose its own `X-Request-Id` (to follow one call through
//! their logs and ours), but it is echoed in the response and written into every log line, so
//! only a short, plain one is kept: 1–128 characters of `[A-Za-z0-9._-]`. Anything else —
//! too long, other characters, empty, or the header sent twice — is dropped before
//! `SetRequestIdLayer`, which then makes a new one.

use axum::http::{HeaderName, HeaderValue, Request};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
pub const MAX_LEN: usize = 128;

/// Whether a caller's request id is kept as it is.
pub fn is_acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes a caller's `X-Request-Id` that is not kept (see the module), for
/// `tower::util::MapRequestLayer` in front of `SetRequestIdLayer`.
pub fn drop_unacceptable<B>(mut request: Request<B>) -> Request<B> {
    let mut values = request.headers().get_all(&HEADER).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => return request,
        (Some(only), None) => is_acceptable(only),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        request.headers_mut().remove(&HEADER);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(values: &[&[u8]]) -> Request<()> {
        let mut request = Request::new(());
        for v in values {
            request
                .headers_mut()
                .append(HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        request
    }

    #[test]
    fn short_plain_ids_are_kept() {
        let max = "a".repeat(MAX_LEN);
        for id in ["caller-chosen-id", "A.b_C-9", "0", max.as_str()] {
            let request = drop_unacceptable(request_with(&[id.as_bytes()]));
            assert_eq!(request.headers()[HEADER], id);
        }
    }

    #[test]
    fn long_empty_foreign_or_repeated_ids_are_dropped() {
        let long = "a".repeat(MAX_LEN + 1);
        let huge = "b".repeat(8_000);
        for id in [
            long.as_bytes(),
            huge.as_bytes(),
            b"",
            b"with space",
            b"semi;colon",
            b"<script>",
            b"id\tx",
            b"caf\xc3\xa9",
            b"\xff",
        ] {
            let request = drop_unacceptable(request_with(&[id]));
            assert!(
                request.headers().get(HEADER).is_none(),
                "{:?}",
                String::from_utf8_lossy(id)
            );
        }
        let twice = drop_unacceptable(request_with(&[b"one", b"two"]));
        assert!(twice.headers().get(HEADER).is_none());
    }

    #[test]
    fn a_request_without_an_id_is_untouched() {
        let request = drop_unacceptable(request_with(&[]));
        assert!(request.headers().is_empty());
    }
}
