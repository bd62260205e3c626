//! Staff passwords: Argon2id (the argon2 crate's default parameters), PHC strings.
//!
//! Hashing is deliberately slow, so it runs on the blocking pool, not on the async workers.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use crate::CreateStaffError;

/// The shortest password `create_staff` accepts (characters, not bytes).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer input is refused without hashing: a megabyte "password" would only be a way to burn CPU.
pub(crate) const MAX_PASSWORD_CHARS: usize = 1024;

/// A hash of a random password, verified against when the email names no account, so that an
/// unknown email costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking(&crate::security::random_token()).unwrap_or_default());

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Hashes a new password after checking its length.
pub(crate) async fn hash_new(password: &str) -> Result<String, CreateStaffError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(CreateStaffError::PasswordTooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(CreateStaffError::Hash(format!(
            "the password must be at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| CreateStaffError::Hash(e.to_string()))?
        .map_err(|e| CreateStaffError::Hash(e.to_string()))
}

/// Does `password` match `stored`? With no stored hash (unknown account), a dummy hash is
/// verified anyway and the answer is `false`.
pub(crate) async fn verify(stored: Option<String>, password: String) -> bool {
    let known = stored.is_some();
    let result = tokio::task::spawn_blocking(move || {
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    known && result
}

/// Computes the dummy hash ahead of the first sign-in, so that first unknown-email attempt is
/// not slower than the rest.
pub(crate) fn warm_up() {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn_blocking(|| LazyLock::force(&DUMMY_HASH).len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash_new("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify(Some(hash.clone()), "correct horse battery".into()).await);
        assert!(!verify(Some(hash), "wrong horse battery".into()).await);
        assert!(!verify(None, "anything at all".into()).await);
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        assert!(matches!(
            hash_new("elevenchars").await,
            Err(CreateStaffError::PasswordTooShort)
        ));
    }
}
