//! Environments, their tokens, numbers and agents: the admin commands and the customer's
//! read/assign endpoints.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use releasedesk_domain::{
    AgentId, AgentStatus, ApiToken, Direction, E164, EmailAddress, EnvironmentId, PhoneNumberId,
    PhoneNumberStatus, RequestId, RequestStatus, TokenHash,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::audit::Event;
use crate::entities::{
    agent, agent_phone_number, api_token, environment, phone_number, release_request,
};
use crate::requests::{Cursor, Page};
use crate::views::parse_column;
use crate::{AgentView, AssignedAgent, AuditAction, PhoneNumberView, Store, StoreError, now};

/// Who is calling the API: the environment of a valid, unrevoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub environment_id: EnvironmentId,
    pub token_id: Uuid,
    pub token_prefix: String,
}

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

/// A token just issued: the only time its secret exists outside the caller's hands.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: Uuid,
    pub token: ApiToken,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: Uuid,
    pub environment_id: EnvironmentId,
    pub prefix: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_token::Model> for TokenInfo {
    fn from(m: api_token::Model) -> Self {
        Self {
            id: m.id,
            environment_id: m.environment_id.into(),
            prefix: m.prefix,
            label: m.label,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// Most numbers an agent can hold (a body limit for `PUT /agents/{id}/calling`).
pub const MAX_AGENT_NUMBERS: usize = 100;

impl Store {
    // ---- environments and tokens --------------------------------------------------------

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
        let row = &model;
        self.transact(|tx| async move {
            environment::Entity::insert(environment::ActiveModel::from(row.clone()))
                .exec_without_returning(&tx)
                .await?;
            Ok(())
        })
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

    pub async fn issue_token(
        &self,
        environment_id: EnvironmentId,
        label: Option<&str>,
    ) -> Result<IssuedToken, StoreError> {
        self.get_environment(environment_id).await?;
        let token = ApiToken::generate();
        let model = api_token::Model {
            id: Uuid::now_v7(),
            environment_id: environment_id.as_uuid(),
            token_hash: token.hash().as_str().to_owned(),
            prefix: token.display_prefix().to_owned(),
            label: label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()),
            created_at: now(),
            revoked_at: None,
        };
        let row = &model;
        self.transact(|tx| async move {
            api_token::Entity::insert(api_token::ActiveModel::from(row.clone()))
                .exec_without_returning(&tx)
                .await?;
            Ok(())
        })
        .await?;
        Ok(IssuedToken {
            id: model.id,
            token,
            info: model.into(),
        })
    }

    /// Revokes every live token with this display prefix; returns how many.
    pub async fn revoke_token(&self, prefix: &str) -> Result<u64, StoreError> {
        let at = now();
        self.transact(|tx| async move {
            let res = api_token::Entity::update_many()
                .col_expr(api_token::Column::RevokedAt, Some(at).into())
                .filter(api_token::Column::Prefix.eq(prefix))
                .filter(api_token::Column::RevokedAt.is_null())
                .exec(&tx)
                .await?;
            Ok(res.rows_affected)
        })
        .await
    }

    /// One indexed lookup by the token's hash.
    pub async fn authenticate(&self, hash: &TokenHash) -> Result<Option<AuthContext>, StoreError> {
        let row = api_token::Entity::find()
            .select_only()
            .column(api_token::Column::Id)
            .column(api_token::Column::EnvironmentId)
            .column(api_token::Column::Prefix)
            .filter(api_token::Column::TokenHash.eq(hash.as_str()))
            .filter(api_token::Column::RevokedAt.is_null())
            .into_tuple::<(Uuid, Uuid, String)>()
            .one(self.reader())
            .await?;
        Ok(row.map(|(token_id, env, token_prefix)| AuthContext {
            environment_id: env.into(),
            token_id,
            token_prefix,
        }))
    }

    // ---- phone numbers ------------------------------------------------------------------

    pub async fn add_phone_number(
        &self,
        environment_id: EnvironmentId,
        number: &E164,
    ) -> Result<PhoneNumberView, StoreError> {
        self.get_environment(environment_id).await?;
        let at = now();
        let model = phone_number::Model {
            id: PhoneNumberId::new().as_uuid(),
            environment_id: environment_id.as_uuid(),
            e164: number.as_str().to_owned(),
            status: PhoneNumberStatus::Active.as_str().into(),
            created_at: at,
            updated_at: at,
            released_at: None,
        };
        let row = &model;
        self.transact(|tx| async move {
            phone_number::Entity::insert(phone_number::ActiveModel::from(row.clone()))
                .exec_without_returning(&tx)
                .await
                .map_err(|e| {
                    if StoreError::is_unique_violation(&e) {
                        StoreError::DuplicatePhoneNumber
                    } else {
                        e.into()
                    }
                })
        })
        .await?;
        PhoneNumberView::from_model(model, Vec::new(), None)
    }

    pub async fn get_phone_number(
        &self,
        environment_id: EnvironmentId,
        id: PhoneNumberId,
    ) -> Result<PhoneNumberView, StoreError> {
        let model = phone_number::Entity::find_by_id(id.as_uuid())
            .filter(phone_number::Column::EnvironmentId.eq(environment_id.as_uuid()))
            .one(self.reader())
            .await?
            .ok_or(StoreError::PhoneNumberNotFound)?;
        let mut views = self.number_views(vec![model]).await?;
        Ok(views.remove(0))
    }

    /// The environment's numbers, oldest first, keyset-paginated.
    pub async fn list_phone_numbers(
        &self,
        environment_id: EnvironmentId,
        limit: u64,
        cursor: Option<Cursor>,
    ) -> Result<Page<PhoneNumberView>, StoreError> {
        let mut q = phone_number::Entity::find()
            .filter(phone_number::Column::EnvironmentId.eq(environment_id.as_uuid()));
        if let Some(c) = cursor {
            q = q.filter(phone_number::Column::Id.gt(c.0));
        }
        let models = q
            .order_by_asc(phone_number::Column::Id)
            .limit(limit + 1)
            .all(self.reader())
            .await?;
        let views = self.number_views(models).await?;
        Ok(Page::from_probe(views, limit, |v| v.id.as_uuid()))
    }

    /// Attaches agents and open requests to numbers: three queries for the whole page.
    async fn number_views(
        &self,
        models: Vec<phone_number::Model>,
    ) -> Result<Vec<PhoneNumberView>, StoreError> {
        let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
        let db = self.reader();
        let assignments = if ids.is_empty() {
            Vec::new()
        } else {
            agent_phone_number::Entity::find()
                .filter(agent_phone_number::Column::PhoneNumberId.is_in(ids.clone()))
                .all(db)
                .await?
        };
        let agent_ids: BTreeSet<Uuid> = assignments.iter().map(|a| a.agent_id).collect();
        let agents: HashMap<Uuid, agent::Model> = if agent_ids.is_empty() {
            HashMap::new()
        } else {
            agent::Entity::find()
                .filter(agent::Column::Id.is_in(agent_ids))
                .all(db)
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect()
        };
        let open: HashMap<Uuid, Uuid> = if ids.is_empty() {
            HashMap::new()
        } else {
            release_request::Entity::find()
                .select_only()
                .column(release_request::Column::PhoneNumberId)
                .column(release_request::Column::Id)
                .filter(release_request::Column::PhoneNumberId.is_in(ids))
                .filter(release_request::Column::Status.is_in([
                    RequestStatus::Pending.as_str(),
                    RequestStatus::Approved.as_str(),
                ]))
                .into_tuple::<(Uuid, Uuid)>()
                .all(db)
                .await?
                .into_iter()
                .collect()
        };
        let mut by_number: HashMap<Uuid, Vec<AssignedAgent>> = HashMap::new();
        for a in &assignments {
            if let Some(agent) = agents.get(&a.agent_id) {
                by_number
                    .entry(a.phone_number_id)
                    .or_default()
                    .push(AssignedAgent {
                        id: agent.id.into(),
                        name: agent.name.clone(),
                        current_status: parse_column(
                            "agents.current_status",
                            &agent.current_status,
                        )?,
                    });
            }
        }
        models
            .into_iter()
            .map(|m| {
                let mut agents = by_number.remove(&m.id).unwrap_or_default();
                agents.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
                let open = open.get(&m.id).copied().map(RequestId::from);
                PhoneNumberView::from_model(m, agents, open)
            })
            .collect()
    }

    // ---- agents -------------------------------------------------------------------------

    /// `releasedesk agent add`: an operator sets up an agent, optionally with numbers.
    pub async fn add_agent(
        &self,
        environment_id: EnvironmentId,
        name: &str,
        status: AgentStatus,
        direction: Direction,
        numbers: &[PhoneNumberId],
    ) -> Result<AgentView, StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                field: "name",
                message: "must be 1–100 characters without control characters".into(),
            });
        }
        self.get_environment(environment_id).await?;
        let at = now();
        let id = AgentId::new();
        self.transact(|tx| async move {
            agent::Entity::insert(agent::ActiveModel {
                id: Set(id.as_uuid()),
                environment_id: Set(environment_id.as_uuid()),
                name: Set(name.to_owned()),
                current_status: Set(status.as_str().into()),
                direction: Set(direction.as_str().into()),
                created_at: Set(at),
                updated_at: Set(at),
            })
            .exec_without_returning(&tx)
            .await?;
            self.replace_assignments(&tx, environment_id, id, &[], numbers)
                .await
        })
        .await?;
        self.get_agent(environment_id, id).await
    }

    pub async fn get_agent(
        &self,
        environment_id: EnvironmentId,
        id: AgentId,
    ) -> Result<AgentView, StoreError> {
        let model = agent::Entity::find_by_id(id.as_uuid())
            .filter(agent::Column::EnvironmentId.eq(environment_id.as_uuid()))
            .one(self.reader())
            .await?
            .ok_or(StoreError::AgentNotFound)?;
        let mut views = self.agent_views(vec![model]).await?;
        Ok(views.remove(0))
    }

    /// The environment's agents, oldest first, keyset-paginated.
    pub async fn list_agents(
        &self,
        environment_id: EnvironmentId,
        limit: u64,
        cursor: Option<Cursor>,
    ) -> Result<Page<AgentView>, StoreError> {
        let mut q =
            agent::Entity::find().filter(agent::Column::EnvironmentId.eq(environment_id.as_uuid()));
        if let Some(c) = cursor {
            q = q.filter(agent::Column::Id.gt(c.0));
        }
        let models = q
            .order_by_asc(agent::Column::Id)
            .limit(limit + 1)
            .all(self.reader())
            .await?;
        let views = self.agent_views(models).await?;
        Ok(Page::from_probe(views, limit, |v| v.id.as_uuid()))
    }

    async fn agent_views(&self, models: Vec<agent::Model>) -> Result<Vec<AgentView>, StoreError> {
        let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
        let mut by_agent: HashMap<Uuid, Vec<PhoneNumberId>> = HashMap::new();
        if !ids.is_empty() {
            for a in agent_phone_number::Entity::find()
                .filter(agent_phone_number::Column::AgentId.is_in(ids))
                .order_by_asc(agent_phone_number::Column::PhoneNumberId)
                .all(self.reader())
                .await?
            {
                by_agent
                    .entry(a.agent_id)
                    .or_default()
                    .push(a.phone_number_id.into());
            }
        }
        models
            .into_iter()
            .map(|m| {
                let numbers = by_agent.remove(&m.id).unwrap_or_default();
                AgentView::from_model(m, numbers)
            })
            .collect()
    }

    /// `PUT /agents/{id}/calling`: sets the direction and replaces the agent's numbers.
    ///
    /// Numbers the agent already holds may stay; a number being *added* must belong to the
    /// environment, not be released (409 `PHONE_NUMBER_RELEASED`) and have no open request
    /// (409 `PHONE_NUMBER_RELEASE_PENDING`). Numbers are locked in id order, the same lock a
    /// new request takes, so an assignment and a request for one number cannot both win.
    pub async fn set_agent_calling(
        &self,
        auth: &crate::AuthContext,
        agent_id: AgentId,
        direction: Direction,
        numbers: &[PhoneNumberId],
    ) -> Result<AgentView, StoreError> {
        if numbers.len() > MAX_AGENT_NUMBERS {
            return Err(StoreError::Invalid {
                field: "phone_number_ids",
                message: format!("must list at most {MAX_AGENT_NUMBERS} numbers"),
            });
        }
        let env = auth.environment_id;
        let at = now();
        self.transact(|tx| async move {
            let res = agent::Entity::update_many()
                .col_expr(agent::Column::Direction, direction.as_str().into())
                .col_expr(agent::Column::UpdatedAt, at.into())
                .filter(agent::Column::Id.eq(agent_id.as_uuid()))
                .filter(agent::Column::EnvironmentId.eq(env.as_uuid()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                return Err(StoreError::AgentNotFound);
            }
            let current: Vec<PhoneNumberId> = agent_phone_number::Entity::find()
                .select_only()
                .column(agent_phone_number::Column::PhoneNumberId)
                .filter(agent_phone_number::Column::AgentId.eq(agent_id.as_uuid()))
                .into_tuple::<Uuid>()
                .all(&tx)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            self.replace_assignments(&tx, env, agent_id, &current, numbers)
                .await?;
            let actor = auth.actor();
            Event {
                actor: &actor,
                action: AuditAction::AgentCallingUpdated,
                environment_id: Some(env),
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({
                    "agent_id": agent_id.to_string(),
                    "direction": direction.as_str(),
                    "phone_number_ids": numbers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })),
            }
            .record(&tx)
            .await?;
            Ok(())
        })
        .await?;
        self.get_agent(env, agent_id).await
    }

    async fn replace_assignments(
        &self,
        tx: &impl ConnectionTrait,
        env: EnvironmentId,
        agent_id: AgentId,
        current: &[PhoneNumberId],
        wanted: &[PhoneNumberId],
    ) -> Result<(), StoreError> {
        let wanted: BTreeSet<PhoneNumberId> = wanted.iter().copied().collect();
        let current: BTreeSet<PhoneNumberId> = current.iter().copied().collect();
        let at = now();
        // BTreeSet iterates in id order: locks are taken in one global order (no deadlocks).
        for &number in wanted.difference(&current) {
            let row = tx
                .query_one_raw(self.stmt(
                    "UPDATE phone_numbers SET updated_at = $1 WHERE id = $2 AND environment_id = $3 \
                     RETURNING status",
                    [at.into(), number.as_uuid().into(), env.as_uuid().into()],
                ))
                .await?
                .ok_or(StoreError::PhoneNumberNotFound)?;
            let status: String = row.try_get_by_index(0)?;
            if parse_column::<PhoneNumberStatus>("phone_numbers.status", &status)?
                == PhoneNumberStatus::Released
            {
                return Err(StoreError::PhoneNumberReleased);
            }
            if crate::requests::open_request_status(tx, number)
                .await?
                .is_some()
            {
                return Err(StoreError::PhoneNumberReleasePending);
            }
            agent_phone_number::Entity::insert(agent_phone_number::ActiveModel {
                agent_id: Set(agent_id.as_uuid()),
                phone_number_id: Set(number.as_uuid()),
                created_at: Set(at),
            })
            .exec_without_returning(tx)
            .await?;
        }
        let removed: Vec<Uuid> = current.difference(&wanted).map(|n| n.as_uuid()).collect();
        if !removed.is_empty() {
            agent_phone_number::Entity::delete_many()
                .filter(agent_phone_number::Column::AgentId.eq(agent_id.as_uuid()))
                .filter(agent_phone_number::Column::PhoneNumberId.is_in(removed))
                .exec(tx)
                .await?;
        }
        Ok(())
    }

    /// Sets an agent's own status (operators only: `releasedesk agent set-status`).
    pub async fn set_agent_status(
        &self,
        environment_id: EnvironmentId,
        agent_id: AgentId,
        status: AgentStatus,
    ) -> Result<AgentView, StoreError> {
        let at = now();
        self.transact(|tx| async move {
            // Lock the agent's numbers, in id order, as an approval of one of them does: an
            // activation and an approval of a number it holds take turns.
            let mut held: Vec<Uuid> = agent_phone_number::Entity::find()
                .select_only()
                .column(agent_phone_number::Column::PhoneNumberId)
                .filter(agent_phone_number::Column::AgentId.eq(agent_id.as_uuid()))
                .into_tuple::<Uuid>()
                .all(&tx)
                .await?;
            held.sort();
            for number in held {
                tx.execute_raw(self.stmt(
                    "UPDATE phone_numbers SET updated_at = $1 WHERE id = $2",
                    [at.into(), number.into()],
                ))
                .await?;
            }
            let res = agent::Entity::update_many()
                .col_expr(agent::Column::CurrentStatus, status.as_str().into())
                .col_expr(agent::Column::UpdatedAt, at.into())
                .filter(agent::Column::Id.eq(agent_id.as_uuid()))
                .filter(agent::Column::EnvironmentId.eq(environment_id.as_uuid()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                return Err(StoreError::AgentNotFound);
            }
            Ok(())
        })
        .await?;
        self.get_agent(environment_id, agent_id).await
    }
}
