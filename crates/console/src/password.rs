//! Staff passwords: Argon2id (the argon2 crate's default parameters), PHC strings.
//!
//! Hashing is deliberately slow and memory-hard, so sign-ins check passwords through
//! [`PasswordChecks`]: on the blocking pool, a bounded number at a time, in reused memory.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Password checks, bounded: at most `checks` Argon2 verifications run at once (each on the
/// blocking pool, so the async workers never wait on one), and at most `queue` more sign-ins
/// wait for a turn. A sign-in beyond that is not admitted at all and is answered "busy" at
/// once, so a flood of sign-ins costs neither memory nor a growing wait.
///
/// Each running check fills Argon2's memory (19 MiB with the default parameters). That memory
/// is kept in a pool of at most `checks` buffers and reused, so the process's footprint for
/// hashing is fixed however many sign-ins arrive and whichever threads run them.
pub(crate) struct PasswordChecks {
    /// Sign-ins checking or waiting to check: `checks + queue` permits.
    admitted: Arc<Semaphore>,
    /// Checks running: `checks` permits.
    running: Arc<Semaphore>,
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Sign-ins answered busy since the last warning, and when that was: a flood is logged
    /// once in a while, not once per request.
    busy: Mutex<(u64, Option<Instant>)>,
}

/// How often a full line is logged at most.
const BUSY_WARN_EVERY: Duration = Duration::from_secs(10);

/// A sign-in's place among those checking or waiting to check a password.
pub(crate) struct Admission {
    /// Held, never read: the place is given back when the admission is dropped.
    _place: OwnedSemaphorePermit,
}

impl PasswordChecks {
    pub fn new(checks: usize, queue: usize) -> Self {
        let checks = checks.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(checks.saturating_add(queue))),
            running: Arc::new(Semaphore::new(checks)),
            memory: Arc::default(),
            busy: Mutex::new((0, None)),
        }
    }

    /// A place in line, or `None` when the line is full.
    pub fn admit(&self) -> Option<Admission> {
        let place = self.admitted.clone().try_acquire_owned().ok();
        if place.is_none() {
            self.note_busy();
        }
        place.map(|place| Admission { _place: place })
    }

    fn note_busy(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        busy.0 += 1;
        if busy.1.is_none_or(|at| at.elapsed() >= BUSY_WARN_EVERY) {
            tracing::warn!(
                answered_busy = busy.0,
                "sign-ins answered busy: the password-check line is full"
            );
            *busy = (0, Some(Instant::now()));
        }
    }

    /// Does `password` match `stored`? With no stored hash (unknown account), a dummy hash is
    /// verified anyway and the answer is `false`.
    pub async fn verify(
        &self,
        admission: Admission,
        stored: Option<String>,
        password: String,
    ) -> bool {
        let known = stored.is_some();
        let Ok(running) = self.running.clone().acquire_owned().await else {
            return false;
        };
        let pool = self.memory.clone();
        let matched = tokio::task::spawn_blocking(move || {
            // The permits go with the check, not with the request: a sign-in whose client
            // went away must not make room for another hash while its own still runs.
            let _permits = (admission, running);
            let mut memory = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            let hash = stored.as_deref().unwrap_or(DUMMY_HASH.as_str());
            let matched = verify_in(&mut memory, hash, password.as_bytes());
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            matched
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

/// Verifies `password` against the PHC string `phc` using `memory` as Argon2's working memory
/// (grown to what the hash's parameters need). What `Argon2::verify_password` does, minus its
/// allocation per call.
fn verify_in(memory: &mut Vec<Block>, phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params);
    Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    // `Output`'s equality is constant-time.
    .is_ok_and(|computed| computed == expected)
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
        let checks = PasswordChecks::new(1, 0);
        let verify = async |stored: Option<&str>, password: &str| {
            let admission = checks.admit().expect("an idle gate admits");
            checks
                .verify(admission, stored.map(str::to_owned), password.to_owned())
                .await
        };
        let hash = hash_new("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify(Some(&hash), "correct horse battery").await);
        assert!(!verify(Some(&hash), "wrong horse battery").await);
        assert!(!verify(None, "anything at all").await);
        assert!(!verify(Some("not a PHC string"), "anything at all").await);
    }

    #[tokio::test]
    async fn a_full_line_admits_nobody_until_a_place_frees() {
        let checks = PasswordChecks::new(2, 1);
        let places: Vec<_> = (0..3).map(|_| checks.admit().expect("a place")).collect();
        assert!(
            checks.admit().is_none(),
            "two checking and one waiting: full"
        );
        drop(places);
        assert!(checks.admit().is_some());
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        assert!(matches!(
            hash_new("elevenchars").await,
            Err(CreateStaffError::PasswordTooShort)
        ));
    }
}
