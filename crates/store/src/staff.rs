//! Staff accounts, console sessions and the sign-in throttle.
//!
//! The store keeps no secrets in the clear and does no cryptography: the console hashes
//! passwords (Argon2id) and session ids (SHA-256) and hands the store only the results, so a
//! copy of the database yields neither a password nor a usable session cookie.
//!
//! Sign-in, sign-out and a failed sign-in each write their audit event in the same transaction
//! as the session or throttle change they go with.

use chrono::{DateTime, TimeDelta, Utc};
use releasedesk_domain::{EmailAddress, StaffId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};

use crate::audit::Event;
use crate::entities::{login_throttle, staff_session, staff_user};
use crate::{Actor, AuditAction, Backend, Store, StoreError, now};

/// A staff account, as sign-in needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAccount {
    pub id: StaffId,
    pub email: String,
    pub name: String,
    /// PHC string (`$argon2id$…`).
    pub password_hash: String,
    pub disabled: bool,
}

impl StaffAccount {
    pub fn actor(&self) -> Actor {
        Actor::Staff {
            id: self.id,
            email: self.email.clone(),
        }
    }
}

/// A live console session, with the account it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    pub staff_id: StaffId,
    pub email: String,
    pub name: String,
    /// The per-session CSRF token every console form carries.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl StaffSession {
    pub fn actor(&self) -> Actor {
        Actor::Staff {
            id: self.staff_id,
            email: self.email.clone(),
        }
    }
}

/// What the console hands over to open a session.
#[derive(Debug, Clone)]
pub struct NewStaffSession<'a> {
    /// SHA-256 (hex) of the random id in the cookie.
    pub id_hash: &'a str,
    pub csrf_token: &'a str,
    /// The absolute end of the session, however active it stays.
    pub expires_at: DateTime<Utc>,
    pub remote_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The id hash of a session the browser still carried: removed in the same transaction, so
    /// a session id planted before sign-in never becomes a signed-in one.
    pub replaces: Option<&'a str>,
}

/// How failed sign-ins slow down guessing without locking anyone out for good.
///
/// Each key (an account, a remote address) gets `free_failures` failures within `window`; the
/// failure that reaches the limit locks the key for `first_lock`, each further one doubles the
/// lock up to `max_lock`. A window that has passed, with no lock running, starts again from zero;
/// a successful sign-in clears the account's key (not the address's: one valid login must not
/// buy an address fresh guesses at other accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInThrottle {
    pub free_failures: i32,
    pub window: TimeDelta,
    pub first_lock: TimeDelta,
    pub max_lock: TimeDelta,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self {
            free_failures: 5,
            window: TimeDelta::minutes(15),
            first_lock: TimeDelta::seconds(30),
            max_lock: TimeDelta::minutes(15),
        }
    }
}

impl SignInThrottle {
    /// The lock after `failures` failures in the window, if any.
    pub fn lock_for(&self, failures: i32) -> Option<TimeDelta> {
        let over = failures.checked_sub(self.free_failures)?;
        if over < 0 {
            return None;
        }
        // 2^over, saturating long before it could overflow: the cap is reached after a few steps.
        let factor = 1i32.checked_shl(over.min(20) as u32).unwrap_or(i32::MAX);
        Some(
            self.first_lock
                .checked_mul(factor)
                .unwrap_or(self.max_lock)
                .min(self.max_lock),
        )
    }
}

const MAX_NAME_CHARS: usize = 100;

/// A session's `last_seen_at` is refreshed at most this often: the idle timeout does not need
/// per-request precision, and a write per page view would be wasted work.
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(60);

impl Store {
    /// `releasedesk staff add`: stores an account with an already hashed password.
    pub async fn add_staff(
        &self,
        email: &EmailAddress,
        name: &str,
        password_hash: &str,
    ) -> Result<StaffId, StoreError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(StoreError::Invalid {
                field: "name",
                message: "must be 1–100 characters without control characters".into(),
            });
        }
        let id = StaffId::new();
        let at = now();
        self.transact(|tx| async move {
            staff_user::Entity::insert(staff_user::ActiveModel {
                id: Set(id.as_uuid()),
                email: Set(email.as_str().to_owned()),
                name: Set(name.to_owned()),
                password_hash: Set(password_hash.to_owned()),
                created_at: Set(at),
                disabled_at: Set(None),
            })
            .exec_without_returning(&tx)
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::DuplicateStaff
                } else {
                    e.into()
                }
            })
        })
        .await?;
        Ok(id)
    }

    /// The account signing in with this email, if there is one.
    pub async fn staff_for_sign_in(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<StaffAccount>, StoreError> {
        Ok(staff_user::Entity::find()
            .filter(staff_user::Column::Email.eq(email.as_str()))
            .one(self.reader())
            .await?
            .map(|m| StaffAccount {
                id: m.id.into(),
                email: m.email,
                name: m.name,
                password_hash: m.password_hash,
                disabled: m.disabled_at.is_some(),
            }))
    }

    /// The latest lock still running on any of `keys`.
    pub async fn sign_in_locked_until(
        &self,
        keys: &[String],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at = now();
        let rows = login_throttle::Entity::find()
            .filter(login_throttle::Column::Key.is_in(keys.iter().cloned()))
            .all(self.reader())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.locked_until)
            .filter(|&l| l > at)
            .max())
    }

    /// Counts a failed sign-in against each of `keys` and records it in the audit log, in one
    /// transaction. `account` is the account the email named, if any: an unknown email is not
    /// written to the log (people type passwords into the email field).
    pub async fn record_sign_in_failure(
        &self,
        keys: &[String],
        policy: &SignInThrottle,
        account: Option<&StaffAccount>,
        remote_addr: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at = now();
        self.transact(|tx| async move {
            let mut locked = None;
            for key in keys {
                let until = self.count_failure(&tx, key, policy, at).await?;
                locked = locked.max(until);
            }
            let actor = account.map_or(Actor::System, StaffAccount::actor);
            Event {
                actor: &actor,
                action: AuditAction::StaffSignInFailed,
                environment_id: None,
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({
                    "remote_addr": remote_addr,
                    "known_account": account.is_some(),
                    "locked_until": locked.map(|l: DateTime<Utc>| l.to_rfc3339()),
                })),
            }
            .record(&tx)
            .await?;
            Ok(locked)
        })
        .await
    }

    async fn count_failure(
        &self,
        tx: &impl ConnectionTrait,
        key: &str,
        policy: &SignInThrottle,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Insert-if-missing first, so two concurrent first failures cannot collide on the key.
        tx.execute_raw(self.stmt(
            "INSERT INTO login_throttle (\"key\", failures, window_started_at, locked_until) \
             VALUES ($1, 0, $2, NULL) ON CONFLICT (\"key\") DO NOTHING",
            [key.into(), at.into()],
        ))
        .await?;
        let mut q = login_throttle::Entity::find_by_id(key.to_owned());
        if self.backend() == Backend::Postgres {
            // SQLite's IMMEDIATE transaction already serialises writers.
            q = q.lock_exclusive();
        }
        let row = q
            .one(tx)
            .await?
            .ok_or(StoreError::Database(sea_orm::DbErr::RecordNotFound(
                "login_throttle row just inserted".into(),
            )))?;
        let lock_running = row.locked_until.is_some_and(|l| l > at);
        let (failures, window_started_at) =
            if at - row.window_started_at > policy.window && !lock_running {
                (1, at)
            } else {
                (row.failures.saturating_add(1), row.window_started_at)
            };
        let locked_until = policy
            .lock_for(failures)
            .map(|d| at + d)
            .or(row.locked_until);
        login_throttle::Entity::update(login_throttle::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(failures),
            window_started_at: Set(window_started_at),
            locked_until: Set(locked_until),
        })
        .exec(tx)
        .await?;
        Ok(locked_until.filter(|&l| l > at))
    }

    /// Opens a session for `account`: the session row, the end of the account's throttle and
    /// the audit event, in one transaction. Expired sessions of anyone are swept on the way.
    pub async fn start_staff_session(
        &self,
        account: &StaffAccount,
        session: NewStaffSession<'_>,
        clear_throttle_key: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        let session = &session;
        self.transact(|tx| async move {
            if let Some(old) = session.replaces {
                staff_session::Entity::delete_by_id(old.to_owned())
                    .exec(&tx)
                    .await?;
            }
            staff_session::Entity::delete_many()
                .filter(staff_session::Column::ExpiresAt.lt(at))
                .exec(&tx)
                .await?;
            staff_session::Entity::insert(staff_session::ActiveModel {
                id_hash: Set(session.id_hash.to_owned()),
                staff_id: Set(account.id.as_uuid()),
                csrf_token: Set(session.csrf_token.to_owned()),
                created_at: Set(at),
                last_seen_at: Set(at),
                expires_at: Set(session.expires_at),
                remote_addr: Set(session.remote_addr.map(str::to_owned)),
                user_agent: Set(session.user_agent.map(|u| u.chars().take(300).collect())),
            })
            .exec_without_returning(&tx)
            .await?;
            login_throttle::Entity::delete_by_id(clear_throttle_key.to_owned())
                .exec(&tx)
                .await?;
            Event {
                actor: &account.actor(),
                action: AuditAction::StaffSignedIn,
                environment_id: None,
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({ "remote_addr": session.remote_addr })),
            }
            .record(&tx)
            .await?;
            Ok(())
        })
        .await
    }

    /// The live session with this id hash. A session past its absolute end, idle longer than
    /// `idle`, or whose account is disabled is deleted and answers `None`.
    pub async fn staff_session(
        &self,
        id_hash: &str,
        idle: TimeDelta,
    ) -> Result<Option<StaffSession>, StoreError> {
        let at = now();
        let Some(session) = staff_session::Entity::find_by_id(id_hash.to_owned())
            .one(self.reader())
            .await?
        else {
            return Ok(None);
        };
        let account = staff_user::Entity::find_by_id(session.staff_id)
            .one(self.reader())
            .await?;
        let alive = at < session.expires_at && at - session.last_seen_at <= idle;
        let account = match account {
            Some(a) if alive && a.disabled_at.is_none() => a,
            _ => {
                let deleted = self
                    .transact(|tx| async move {
                        staff_session::Entity::delete_by_id(id_hash.to_owned())
                            .exec(&tx)
                            .await?;
                        Ok(())
                    })
                    .await;
                // The session is over either way; a row the database cannot delete now is
                // swept with the next sign-in (reading must not need writing).
                keep_reading_if_unavailable(deleted, "deleting an ended session")?;
                return Ok(None);
            }
        };
        if at - session.last_seen_at > TOUCH_EVERY {
            let touched = self
                .transact(|tx| async move {
                    staff_session::Entity::update_many()
                        .col_expr(staff_session::Column::LastSeenAt, at.into())
                        .filter(staff_session::Column::IdHash.eq(id_hash))
                        .exec(&tx)
                        .await?;
                    Ok(())
                })
                .await;
            // A missed touch costs at most one idle-timeout step; the page is still shown.
            keep_reading_if_unavailable(touched, "refreshing a session's last use")?;
        }
        Ok(Some(StaffSession {
            staff_id: account.id.into(),
            email: account.email,
            name: account.name,
            csrf_token: session.csrf_token,
            created_at: session.created_at,
            expires_at: session.expires_at,
        }))
    }

    /// Ends a session on the server (sign-out): the row goes, with an audit event in the same
    /// transaction. `false` when there was no such session.
    pub async fn end_staff_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        self.transact(|tx| async move {
            let Some(session) = staff_session::Entity::find_by_id(id_hash.to_owned())
                .one(&tx)
                .await?
            else {
                return Ok(false);
            };
            staff_session::Entity::delete_by_id(id_hash.to_owned())
                .exec(&tx)
                .await?;
            let email = staff_user::Entity::find_by_id(session.staff_id)
                .select_only()
                .column(staff_user::Column::Email)
                .into_tuple::<String>()
                .one(&tx)
                .await?
                .unwrap_or_default();
            Event {
                actor: &Actor::Staff {
                    id: session.staff_id.into(),
                    email,
                },
                action: AuditAction::StaffSignedOut,
                environment_id: None,
                request_id: None,
                phone_number_id: None,
                detail: None,
            }
            .record(&tx)
            .await?;
            Ok(true)
        })
        .await
    }
}

/// A write that only keeps bookkeeping fresh while serving a read: when the database cannot
/// take writes, it is skipped (and logged) rather than failing the read.
fn keep_reading_if_unavailable(
    written: Result<(), StoreError>,
    what: &str,
) -> Result<(), StoreError> {
    match written {
        Err(e @ StoreError::StorageUnavailable { .. }) => {
            tracing::warn!(error = %e.chain(), "{what} skipped");
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_starts_at_the_limit_grows_and_is_capped() {
        let p = SignInThrottle::default();
        assert_eq!(p.lock_for(4), None);
        assert_eq!(p.lock_for(5), Some(TimeDelta::seconds(30)));
        assert_eq!(p.lock_for(6), Some(TimeDelta::seconds(60)));
        assert_eq!(p.lock_for(9), Some(TimeDelta::minutes(8)));
        assert_eq!(p.lock_for(10), Some(TimeDelta::minutes(15)));
        assert_eq!(p.lock_for(i32::MAX), Some(TimeDelta::minutes(15)));
    }
}
