//! Environments (tenants): each has its own numbers, agents, requests, tokens and notification
//! address; nothing of one is visible through another's token.

use chrono::{DateTime, Utc};
use releasedesk_domain::{EmailAddress, EnvironmentId, RequiredApprovals};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::audit::Event;
use crate::entities::environment;
use crate::{Actor, AuditAction, Store, StoreError, now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentInfo {
    pub id: EnvironmentId,
    pub name: String,
    pub notify_email: String,
    pub created_at: DateTime<Utc>,
    /// How many different reviewers must approve a release of one of its numbers.
    pub required_approvals: RequiredApprovals,
}

impl TryFrom<environment::Model> for EnvironmentInfo {
    type Error = StoreError;
    fn try_from(m: environment::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id.into(),
            name: m.name,
            notify_email: m.notify_email,
            created_at: m.created_at,
            required_approvals: required_approvals_column(m.required_approvals)?,
        })
    }
}

/// A stored policy the domain does not know is corrupt data, not user error.
pub(crate) fn required_approvals_column(n: i32) -> Result<RequiredApprovals, StoreError> {
    RequiredApprovals::new(i64::from(n)).map_err(|e| {
        StoreError::Database(sea_orm::DbErr::Type(format!(
            "environments.required_approvals: {e}"
        )))
    })
}

impl Store {
    /// An environment whose releases need one approval.
    pub async fn create_environment(
        &self,
        name: &str,
        notify_email: &EmailAddress,
    ) -> Result<EnvironmentInfo, StoreError> {
        self.create_environment_with(name, notify_email, RequiredApprovals::default())
            .await
    }

    /// `releasedesk env create`: an environment with its approval policy.
    pub async fn create_environment_with(
        &self,
        name: &str,
        notify_email: &EmailAddress,
        required_approvals: RequiredApprovals,
    ) -> Result<EnvironmentInfo, StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                field: "name",
                message: "must be 1–100 characters without control characters".into(),
            });
        }
        let model = environment::Model {
            id: EnvironmentId::new().as_uuid(),
            name: name.to_owned(),
            notify_email: notify_email.as_str().to_owned(),
            created_at: now(),
            required_approvals: i32::from(required_approvals.get()),
        };
        let row = &model;
        self.transact(|tx| async move {
            environment::Entity::insert(environment::ActiveModel::from(row.clone()))
                .exec_without_returning(&tx)
                .await?;
            Ok(())
        })
        .await?;
        model.try_into()
    }

    /// `releasedesk env set --required-approvals N`: the environment's approval policy, with
    /// an audit event. It applies to every approval from now on, including approvals of
    /// requests already pending.
    pub async fn set_required_approvals(
        &self,
        actor: &Actor,
        id: EnvironmentId,
        required: RequiredApprovals,
    ) -> Result<EnvironmentInfo, StoreError> {
        self.transact(|tx| async move {
            let before: EnvironmentInfo = environment::Entity::find_by_id(id.as_uuid())
                .one(&tx)
                .await?
                .ok_or(StoreError::EnvironmentNotFound)?
                .try_into()?;
            environment::Entity::update_many()
                .col_expr(
                    environment::Column::RequiredApprovals,
                    i32::from(required.get()).into(),
                )
                .filter(environment::Column::Id.eq(id.as_uuid()))
                .exec(&tx)
                .await?;
            Event {
                actor,
                action: AuditAction::EnvironmentPolicyChanged,
                environment_id: Some(id),
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({
                    "required_approvals": required.get(),
                    "was": before.required_approvals.get(),
                })),
            }
            .record(&tx)
            .await?;
            Ok(EnvironmentInfo {
                required_approvals: required,
                ..before
            })
        })
        .await
    }

    pub async fn get_environment(&self, id: EnvironmentId) -> Result<EnvironmentInfo, StoreError> {
        environment::Entity::find_by_id(id.as_uuid())
            .one(self.reader())
            .await?
            .ok_or(StoreError::EnvironmentNotFound)?
            .try_into()
    }

    pub async fn list_environments(&self) -> Result<Vec<EnvironmentInfo>, StoreError> {
        environment::Entity::find()
            .order_by_asc(environment::Column::Name)
            .all(self.reader())
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }
}

/// The environment's notification address. One that no longer parses (edited by hand) is
/// skipped rather than blocking the decision: the decision matters more than the email.
pub(crate) async fn notify_email(
    db: &impl sea_orm::ConnectionTrait,
    env: EnvironmentId,
) -> Result<Option<EmailAddress>, StoreError> {
    let email = environment::Entity::find_by_id(env.as_uuid())
        .select_only()
        .column(environment::Column::NotifyEmail)
        .into_tuple::<String>()
        .one(db)
        .await?;
    Ok(email.and_then(|e| EmailAddress::parse(&e).ok()))
}

/// The environment's approval policy, read inside the approval's transaction.
pub(crate) async fn required_approvals(
    db: &impl sea_orm::ConnectionTrait,
    env: EnvironmentId,
) -> Result<RequiredApprovals, StoreError> {
    let n = environment::Entity::find_by_id(env.as_uuid())
        .select_only()
        .column(environment::Column::RequiredApprovals)
        .into_tuple::<i32>()
        .one(db)
        .await?
        .ok_or(StoreError::EnvironmentNotFound)?;
    required_approvals_column(n)
}
