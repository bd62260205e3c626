//! Environment API tokens: `talq_` + 40 random base62 characters.
//!
//! Only the SHA-256 of the whole token is stored (with a short display prefix), so a database
//! leak does not leak usable tokens. Tokens have 238 bits of entropy, so a fast unsalted hash is
//! the right tool (a slow password hash would only cost every API call).

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "talq_";
const RANDOM_CHARS: usize = 40;
const MIN_RANDOM_CHARS: usize = 32;
const MAX_TOKEN_LEN: usize = 128;
/// Characters shown in listings and accepted by `token revoke --prefix`: `talq_` + 8.
pub const DISPLAY_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 8;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed token")]
pub struct TokenError;

/// A token in plain text. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

/// The SHA-256 of a token, hex-encoded: what the database stores and looks up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl ApiToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let random: String = (0..RANDOM_CHARS)
            .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
            .collect();
        Self(format!("{TOKEN_PREFIX}{random}"))
    }

    /// Checks the shape only (`talq_` + ≥32 base62); whether it exists is the store's question.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let rest = s.strip_prefix(TOKEN_PREFIX).ok_or(TokenError)?;
        if rest.len() < MIN_RANDOM_CHARS
            || s.len() > MAX_TOKEN_LEN
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(TokenError);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_LEN]
    }

    /// The secret itself, to show once when issued.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}…)", self.display_prefix())
    }
}

impl TokenHash {
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a, b);
        assert_eq!(ApiToken::parse(a.expose()), Ok(a.clone()));
        assert_eq!(a.expose().len(), 45);
        assert!(a.display_prefix().starts_with("talq_"));
        assert_eq!(a.display_prefix().len(), 13);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let ok_rest = "a".repeat(32);
        assert!(ApiToken::parse(&format!("talq_{ok_rest}")).is_ok());
        for bad in [
            String::new(),
            "talq_".into(),
            format!("talq_{}", "a".repeat(31)),
            format!("TALQ_{ok_rest}"),
            format!("talq_{}-", "a".repeat(32)),
            format!("talq_{}", "a".repeat(200)),
            format!("talq_{}é", "a".repeat(32)),
        ] {
            assert_eq!(ApiToken::parse(&bad), Err(TokenError), "{bad}");
        }
    }

    #[test]
    fn hash_is_hex_sha256_and_debug_hides_the_secret() {
        let t = ApiToken::parse(&format!("talq_{}", "x".repeat(32))).unwrap();
        assert_eq!(t.hash().as_str().len(), 64);
        assert_eq!(t.hash(), t.clone().hash());
        assert!(!format!("{t:?}").contains(&"x".repeat(32)));
    }
}
