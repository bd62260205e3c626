//! Environments (tenants): each has its own numbers, agents, requests, tokens and notification
//! address; nothing of one is visible through another's token.

use chrono::{DateTime, Utc};
use releasedesk_domain::{EmailAddress, EnvironmentId};
use sea_orm::{EntityTrait, QueryOrder, QuerySelect};

use crate::entities::environment;
use crate::{Store, StoreError, now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentInfo {
    pub id: EnvironmentId,
    pub name: String,
    pub notify_email: String,
    pub created_at: DateTime<Utc>,
}

impl From<environment::Model> for EnvironmentInfo {
    fn from(m: environment::Model) -> Self {
        Self {
            id: m.id.into(),
            name: m.name,
            notify_email: m.notify_email,
            created_at: m.created_at,
        }
    }
}

impl Store {
    pub async fn create_environment(
        &self,
        name: &str,
        notify_email: &EmailAddress,
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
        };
        environment::Entity::insert(environment::ActiveModel::from(model.clone()))
            .exec_without_returning(self.writer())
            .await?;
        Ok(model.into())
    }

    pub async fn get_environment(&self, id: EnvironmentId) -> Result<EnvironmentInfo, StoreError> {
        environment::Entity::find_by_id(id.as_uuid())
            .one(self.reader())
            .await?
            .map(Into::into)
            .ok_or(StoreError::EnvironmentNotFound)
    }

    pub async fn list_environments(&self) -> Result<Vec<EnvironmentInfo>, StoreError> {
        Ok(environment::Entity::find()
            .order_by_asc(environment::Column::Name)
            .all(self.reader())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
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
