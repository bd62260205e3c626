//! Idempotent requests: the key a client sends with a `POST` so that a retry is answered with the
//! first attempt's response instead of acting twice, and the fingerprint that tells a retry of
//! the same request from a different request reusing the key.

use std::fmt;

use sha2::{Digest, Sha256};

/// Longest accepted key, in characters (all ASCII, so also bytes).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 255 printable ASCII characters (space to tilde)")]
pub struct IdempotencyKeyError;

/// An `Idempotency-Key` header value: 1–255 printable ASCII characters (`0x20`–`0x7E`), taken
/// exactly as sent. Keys are opaque: a UUID is a good choice, but anything in that range works,
/// including the quoted form of the IETF draft (the quotes are then part of the key).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks the header's raw bytes. HTTP already strips the whitespace around a field value.
    pub fn parse(raw: &[u8]) -> Result<Self, IdempotencyKeyError> {
        if raw.is_empty()
            || raw.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !raw.iter().all(|b| (0x20..=0x7e).contains(b))
        {
            return Err(IdempotencyKeyError);
        }
        // Printable ASCII is valid UTF-8.
        String::from_utf8(raw.to_vec())
            .map(Self)
            .map_err(|_| IdempotencyKeyError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// What makes two requests "the same request": the SHA-256 of the method, the request target
/// (path and query) and the body bytes. A key sent again with another fingerprint is a reuse,
/// not a retry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// `target` is the path with its query, if any (`/api/v1/…?x=1`). Neither a method nor a
    /// target can contain a newline, so the three parts cannot run into each other.
    pub fn of(method: &str, target: &str, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(method.as_bytes());
        hash.update(b"\n");
        hash.update(target.as_bytes());
        hash.update(b"\n");
        hash.update(body);
        Self(hash.finalize().into())
    }

    /// Lower-case hex, 64 characters: how it is stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestFingerprint({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_1_to_255_printable_ascii_characters_are_accepted() {
        for ok in [
            "a",
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
            "\"quoted as in the draft\"",
            "with spaces and ~!@#$%^&*()_+{}|:<>?",
        ] {
            assert_eq!(IdempotencyKey::parse(ok.as_bytes()).unwrap().as_str(), ok);
        }
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN);
        assert!(IdempotencyKey::parse(longest.as_bytes()).is_ok());
    }

    #[test]
    fn empty_long_control_and_non_ascii_keys_are_refused() {
        let too_long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        for bad in [
            &b""[..],
            too_long.as_bytes(),
            b"tab\there",
            b"new\nline",
            b"del\x7f",
            "caf\u{e9}".as_bytes(),
            b"\xff\xfe",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(IdempotencyKeyError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_fingerprint_changes_with_method_target_and_body() {
        let base = RequestFingerprint::of("POST", "/a", b"{}");
        assert_eq!(base, RequestFingerprint::of("POST", "/a", b"{}"));
        assert_ne!(base, RequestFingerprint::of("PUT", "/a", b"{}"));
        assert_ne!(base, RequestFingerprint::of("POST", "/b", b"{}"));
        assert_ne!(base, RequestFingerprint::of("POST", "/a", b"{ }"));
        assert_ne!(base, RequestFingerprint::of("POST", "/a?x=1", b"{}"));
        // The separator keeps parts from sliding into each other.
        assert_ne!(
            RequestFingerprint::of("POST", "/a", b"b"),
            RequestFingerprint::of("POST", "/ab", b"")
        );
        assert_eq!(base.to_hex().len(), 64);
    }
}
