//! Staff accounts and console sessions (the sign-in throttle is in `sign_in`).
//!
//! The store keeps no secrets in the clear and does no cryptography: the console hashes
//! passwords (Argon2id) and session ids (SHA-256) and hands the store only the results, so a
//! copy of the database yields neither a password nor a usable session cookie.
//!
//! Sign-in, sign-out and a failed sign-in each write their audit event in the same transaction
//! as the session or throttle change they go with.

use chrono::{DateTime, TimeDelta, Utc};
use releasedesk_domain::{EmailAddress, StaffId};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::audit::Event;
use crate::entities::{staff_session, staff_user};
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
        staff_user::Entity::insert(staff_user::ActiveModel {
            id: Set(id.as_uuid()),
            email: Set(email.as_str().to_owned()),
            name: Set(name.to_owned()),
            password_hash: Set(password_hash.to_owned()),
            created_at: Set(now()),
            disabled_at: Set(None),
        })
        .exec_without_returning(self.writer())
        .await
        .map_err(|e| {
            if StoreError::is_unique_violation(&e) {
                StoreError::DuplicateStaff
            } else {
                e.into()
            }
        })?;
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
                staff_session::Entity::delete_by_id(id_hash.to_owned())
                    .exec(self.writer())
                    .await?;
                return Ok(None);
            }
        };
        if at - session.last_seen_at > TOUCH_EVERY {
            staff_session::Entity::update_many()
                .col_expr(staff_session::Column::LastSeenAt, at.into())
                .filter(staff_session::Column::IdHash.eq(id_hash))
                .exec(self.writer())
                .await?;
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
