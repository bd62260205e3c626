//! Agents and the numbers they hold. An active agent holding a number makes it "in use".

use std::collections::{BTreeSet, HashMap};

use releasedesk_domain::{AgentId, AgentStatus, Direction, EnvironmentId, PhoneNumberId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::audit::Event;
use crate::entities::{agent, agent_phone_number};
use crate::guards;
use crate::paging::{Cursor, Page};
use crate::{AgentView, AuditAction, Store, StoreError, now};

/// Most numbers an agent can hold (a body limit for `PUT /agents/{id}/calling`).
pub const MAX_AGENT_NUMBERS: usize = 100;

impl Store {
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
            let locked = self.lock_number(tx, number, Some(env)).await?;
            guards::not_released(&locked)?;
            if guards::open_request_status(tx, number).await?.is_some() {
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
                self.lock_number(&tx, number.into(), None).await?;
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
