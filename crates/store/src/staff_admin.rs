//! Managing staff accounts: add one with a role, change a role, disable and enable an account,
//! give it a new password.
//! Each change writes its audit event in the same transaction, whoever makes it (an admin in the
//! console, an operator at the command line).
//!
//! Two rules hold whatever the order of concurrent changes:
//!
//! - a disabled account's sessions end at once (they are deleted with the change, and a session
//!   of a disabled account is refused anyway, see [`Store::staff_session`]);
//! - at least one enabled admin remains: a change that would remove the last one is refused
//!   ([`StoreError::LastAdmin`]). The enabled admins' rows are locked before they are counted
//!   (PostgreSQL; SQLite's write transactions already take turns), so two admins demoting each
//!   other at the same moment cannot both succeed.

use chrono::{DateTime, Utc};
use releasedesk_domain::{EmailAddress, StaffId, StaffRole};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::audit::Event;
use crate::entities::staff_user;
use crate::staff::MAX_NAME_CHARS;
use crate::views::parse_column;
use crate::{Actor, AuditAction, Backend, Store, StoreError, now};

/// A staff account as the admin page lists it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub id: StaffId,
    pub email: String,
    pub name: String,
    pub role: StaffRole,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl StaffMember {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

impl TryFrom<staff_user::Model> for StaffMember {
    type Error = StoreError;
    fn try_from(m: staff_user::Model) -> Result<Self, StoreError> {
        Ok(Self {
            role: parse_column("staff_users.role", &m.role)?,
            id: m.id.into(),
            email: m.email,
            name: m.name,
            created_at: m.created_at,
            disabled_at: m.disabled_at,
        })
    }
}

impl Store {
    /// Stores an account with a role and an already hashed password, audited as `actor`.
    pub async fn create_staff_account(
        &self,
        actor: &Actor,
        email: &EmailAddress,
        name: &str,
        password_hash: &str,
        role: StaffRole,
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
        self.transact(|tx| async move {
            staff_user::Entity::insert(staff_user::ActiveModel {
                id: Set(id.as_uuid()),
                email: Set(email.as_str().to_owned()),
                name: Set(name.to_owned()),
                password_hash: Set(password_hash.to_owned()),
                created_at: Set(now()),
                disabled_at: Set(None),
                role: Set(role.as_str().to_owned()),
            })
            .exec_without_returning(&tx)
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::DuplicateStaff
                } else {
                    e.into()
                }
            })?;
            staff_event(
                &tx,
                actor,
                AuditAction::StaffAdded,
                serde_json::json!({ "email": email.as_str(), "name": name, "role": role.as_str() }),
            )
            .await?;
            Ok(id)
        })
        .await
    }

    /// Every staff account, enabled ones first, then by email.
    pub async fn list_staff(&self) -> Result<Vec<StaffMember>, StoreError> {
        let mut staff = staff_user::Entity::find()
            .order_by_asc(staff_user::Column::Email)
            .all(self.reader())
            .await?
            .into_iter()
            .map(StaffMember::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        staff.sort_by_key(StaffMember::is_disabled);
        Ok(staff)
    }

    pub async fn staff_member(&self, id: StaffId) -> Result<StaffMember, StoreError> {
        staff_user::Entity::find_by_id(id.as_uuid())
            .one(self.reader())
            .await?
            .ok_or(StoreError::StaffNotFound)?
            .try_into()
    }

    pub async fn staff_by_email(&self, email: &EmailAddress) -> Result<StaffMember, StoreError> {
        staff_user::Entity::find()
            .filter(staff_user::Column::Email.eq(email.as_str()))
            .one(self.reader())
            .await?
            .ok_or(StoreError::StaffNotFound)?
            .try_into()
    }

    /// Gives the account `role`; effective at its next click (sessions read the role each
    /// time). Setting the role it already has changes nothing and logs nothing.
    pub async fn set_staff_role(
        &self,
        actor: &Actor,
        id: StaffId,
        role: StaffRole,
    ) -> Result<StaffMember, StoreError> {
        self.transact(|tx| async move {
            let admins = self.lock_admins(&tx).await?;
            let before = self.lock_staff(&tx, id).await?;
            if before.role == role {
                return Ok(before);
            }
            keep_an_admin(&admins, id)?;
            staff_user::Entity::update_many()
                .col_expr(staff_user::Column::Role, role.as_str().into())
                .filter(staff_user::Column::Id.eq(id.as_uuid()))
                .exec(&tx)
                .await?;
            staff_event(
                &tx,
                actor,
                AuditAction::StaffRoleChanged,
                serde_json::json!({
                    "email": before.email,
                    "from": before.role.as_str(),
                    "to": role.as_str(),
                }),
            )
            .await?;
            Ok(StaffMember { role, ..before })
        })
        .await
    }

    /// Disables the account and ends its sessions, in one transaction. Disabling a disabled
    /// account changes nothing.
    pub async fn disable_staff(
        &self,
        actor: &Actor,
        id: StaffId,
    ) -> Result<StaffMember, StoreError> {
        self.transact(|tx| async move {
            let admins = self.lock_admins(&tx).await?;
            let before = self.lock_staff(&tx, id).await?;
            if before.is_disabled() {
                return Ok(before);
            }
            keep_an_admin(&admins, id)?;
            let at = now();
            staff_user::Entity::update_many()
                .col_expr(staff_user::Column::DisabledAt, Some(at).into())
                .filter(staff_user::Column::Id.eq(id.as_uuid()))
                .exec(&tx)
                .await?;
            let ended = crate::staff::end_sessions(&tx, id.as_uuid()).await?;
            staff_event(
                &tx,
                actor,
                AuditAction::StaffDisabled,
                serde_json::json!({ "email": before.email, "sessions_ended": ended }),
            )
            .await?;
            Ok(StaffMember {
                disabled_at: Some(at),
                ..before
            })
        })
        .await
    }

    /// Enables a disabled account again (with its role and password as they were).
    pub async fn enable_staff(
        &self,
        actor: &Actor,
        id: StaffId,
    ) -> Result<StaffMember, StoreError> {
        self.transact(|tx| async move {
            let before = self.lock_staff(&tx, id).await?;
            if !before.is_disabled() {
                return Ok(before);
            }
            staff_user::Entity::update_many()
                .col_expr(
                    staff_user::Column::DisabledAt,
                    Option::<DateTime<Utc>>::None.into(),
                )
                .filter(staff_user::Column::Id.eq(id.as_uuid()))
                .exec(&tx)
                .await?;
            staff_event(
                &tx,
                actor,
                AuditAction::StaffEnabled,
                serde_json::json!({ "email": before.email }),
            )
            .await?;
            Ok(StaffMember {
                disabled_at: None,
                ..before
            })
        })
        .await
    }

    /// Replaces the account's password with an already hashed one and ends its sessions (an
    /// admin handing out a new password because the old one is lost or leaked).
    pub async fn reset_staff_password(
        &self,
        actor: &Actor,
        id: StaffId,
        password_hash: &str,
    ) -> Result<StaffMember, StoreError> {
        self.transact(|tx| async move {
            let before = self.lock_staff(&tx, id).await?;
            staff_user::Entity::update_many()
                .col_expr(staff_user::Column::PasswordHash, password_hash.into())
                .filter(staff_user::Column::Id.eq(id.as_uuid()))
                .exec(&tx)
                .await?;
            let ended = crate::staff::end_sessions(&tx, id.as_uuid()).await?;
            staff_event(
                &tx,
                actor,
                AuditAction::StaffPasswordReset,
                serde_json::json!({ "email": before.email, "sessions_ended": ended }),
            )
            .await?;
            Ok(before)
        })
        .await
    }

    /// The account's row, locked for the rest of the transaction (PostgreSQL).
    async fn lock_staff(
        &self,
        tx: &impl ConnectionTrait,
        id: StaffId,
    ) -> Result<StaffMember, StoreError> {
        let mut q = staff_user::Entity::find_by_id(id.as_uuid());
        if self.backend() == Backend::Postgres {
            q = q.lock_exclusive();
        }
        q.one(tx)
            .await?
            .ok_or(StoreError::StaffNotFound)?
            .try_into()
    }

    /// The enabled admins, their rows locked (PostgreSQL) in id order — the order every change
    /// takes them in, so two changes never wait for each other in a circle. Taken before the
    /// changed account's own row.
    async fn lock_admins(&self, tx: &impl ConnectionTrait) -> Result<Vec<StaffId>, StoreError> {
        let mut q = staff_user::Entity::find()
            .select_only()
            .column(staff_user::Column::Id)
            .filter(staff_user::Column::Role.eq(StaffRole::Admin.as_str()))
            .filter(staff_user::Column::DisabledAt.is_null())
            .order_by_asc(staff_user::Column::Id);
        if self.backend() == Backend::Postgres {
            q = q.lock_exclusive();
        }
        Ok(q.into_tuple::<uuid::Uuid>()
            .all(tx)
            .await?
            .into_iter()
            .map(StaffId::from)
            .collect())
    }
}

/// Refuses a change that takes `leaving` out of the enabled `admins` when no other is left
/// (a change to an account that is not an enabled admin is always fine).
fn keep_an_admin(admins: &[StaffId], leaving: StaffId) -> Result<(), StoreError> {
    if !admins.contains(&leaving) || admins.iter().any(|a| *a != leaving) {
        Ok(())
    } else {
        Err(StoreError::LastAdmin)
    }
}

async fn staff_event(
    tx: &impl ConnectionTrait,
    actor: &Actor,
    action: AuditAction,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    Event {
        actor,
        action,
        environment_id: None,
        request_id: None,
        phone_number_id: None,
        detail: Some(detail),
    }
    .record(tx)
    .await
}
