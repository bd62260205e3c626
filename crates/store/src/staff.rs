//! Staff accounts and console sessions (the sign-in throttle is in `sign_in`).
//!
//! The store keeps no secrets in the clear and does no cryptography: the console hashes
//! passwords (Argon2id) and session ids (SHA-256) and hands the store only the results, so a
//! copy of the database yields neither a password nor a usable session cookie.
//!
//! Sign-in, sign-out and a failed sign-in each write their audit event in the same transaction
//! as the session or throttle change they go with.

use chrono::{DateTime, TimeDelta, Utc};
use releasedesk_domain::{EmailAddress, StaffId, StaffRole};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::audit::Event;
use crate::entities::{staff_session, staff_user};
use crate::views::parse_column;
use crate::{Actor, AuditAction, SignInTicket, Store, StoreError, now};

/// A staff account, as sign-in needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAccount {
    pub id: StaffId,
    pub email: String,
    pub name: String,
    /// PHC string (`$argon2id$…`).
    pub password_hash: String,
    pub disabled: bool,
    pub role: StaffRole,
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
    /// The account's role as it is now (read with the session, so a change applies at once).
    pub role: StaffRole,
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

pub(crate) const MAX_NAME_CHARS: usize = 100;

/// A session's `last_seen_at` is refreshed at most this often: the idle timeout does not need
/// per-request precision, and a write per page view would be wasted work.
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(60);

impl Store {
    /// Stores a `reviewer` account with an already hashed password (audited as the command
    /// line). See [`Store::create_staff_account`] for the other roles.
    pub async fn add_staff(
        &self,
        email: &EmailAddress,
        name: &str,
        password_hash: &str,
    ) -> Result<StaffId, StoreError> {
        self.create_staff_account(&Actor::Cli, email, name, password_hash, StaffRole::DEFAULT)
            .await
    }

    /// The account signing in with this email, if there is one.
    pub async fn staff_for_sign_in(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<StaffAccount>, StoreError> {
        staff_user::Entity::find()
            .filter(staff_user::Column::Email.eq(email.as_str()))
            .one(self.reader())
            .await?
            .map(|m| {
                Ok(StaffAccount {
                    role: parse_column("staff_users.role", &m.role)?,
                    id: m.id.into(),
                    email: m.email,
                    name: m.name,
                    password_hash: m.password_hash,
                    disabled: m.disabled_at.is_some(),
                })
            })
            .transpose()
    }

    /// Opens a session for `account` after a granted sign-in: the session row, the sign-in's
    /// reservation given back (see [`SignInTicket`]) and the audit event, in one transaction.
    /// Expired sessions of anyone are swept on the way.
    pub async fn start_staff_session(
        &self,
        account: &StaffAccount,
        session: NewStaffSession<'_>,
        ticket: SignInTicket,
    ) -> Result<(), StoreError> {
        let ticket = &ticket;
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
            self.release_sign_in(&tx, ticket, account.id, at).await?;
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
            role: parse_column("staff_users.role", &account.role)?,
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

    /// Replaces an account's password hash and ends its sessions, in one transaction. `false`
    /// when no account has this email. `releasedesk demo` uses it so that every run prints a
    /// sign-in that works for the one demo account.
    pub async fn set_staff_password(
        &self,
        email: &EmailAddress,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        self.transact(|tx| async move {
            let Some(account) = staff_user::Entity::find()
                .filter(staff_user::Column::Email.eq(email.as_str()))
                .one(&tx)
                .await?
            else {
                return Ok(false);
            };
            staff_user::Entity::update_many()
                .col_expr(staff_user::Column::PasswordHash, password_hash.into())
                .filter(staff_user::Column::Id.eq(account.id))
                .exec(&tx)
                .await?;
            end_sessions(&tx, account.id).await?;
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

/// Ends every session of the staff account (signs it out everywhere); how many there were.
pub(crate) async fn end_sessions(
    tx: &impl sea_orm::ConnectionTrait,
    staff_id: uuid::Uuid,
) -> Result<u64, sea_orm::DbErr> {
    Ok(staff_session::Entity::delete_many()
        .filter(staff_session::Column::StaffId.eq(staff_id))
        .exec(tx)
        .await?
        .rows_affected)
}
