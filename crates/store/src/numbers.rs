//! Phone numbers: added by operators, listed with the agents holding them and their open
//! request, and locked by every writer that changes what may happen to them.

use std::collections::{BTreeSet, HashMap};

use releasedesk_domain::{E164, EnvironmentId, PhoneNumberId, PhoneNumberStatus, RequestId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::entities::{agent, agent_phone_number, phone_number, release_request};
use crate::paging::{Cursor, Page};
use crate::views::parse_column;
use crate::{AssignedAgent, PhoneNumberView, Store, StoreError, now};

/// A number's row, locked until the end of the transaction that locked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockedNumber {
    pub id: PhoneNumberId,
    pub environment_id: EnvironmentId,
    pub e164: String,
    pub status: PhoneNumberStatus,
}

/// [`Store::lock_number_for_create`]'s statement, built once (the statuses are the domain's
/// constants).
static LOCK_FOR_CREATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let open: Vec<String> = crate::guards::open_statuses()
        .map(|s| format!("'{s}'"))
        .collect();
    format!(
        "UPDATE phone_numbers SET updated_at = $1 \
         WHERE id = $2 AND ($3 IS NULL OR environment_id = $3) \
         RETURNING environment_id, e164, status, \
         (SELECT r.status FROM release_requests r \
          WHERE r.phone_number_id = $2 AND r.status IN ({open}) LIMIT 1), \
         EXISTS (SELECT 1 FROM agents a WHERE a.current_status = '{active}' AND a.id IN \
          (SELECT ap.agent_id FROM agent_phone_numbers ap WHERE ap.phone_number_id = $2))",
        open = open.join(", "),
        active = releasedesk_domain::AgentStatus::Active.as_str(),
    )
});

/// The locked number from the lock's `RETURNING environment_id, e164, status`.
fn locked_number(
    id: PhoneNumberId,
    row: &sea_orm::QueryResult,
) -> Result<LockedNumber, StoreError> {
    let environment_id: Uuid = row.try_get_by_index(0)?;
    let status: String = row.try_get_by_index(2)?;
    Ok(LockedNumber {
        id,
        environment_id: environment_id.into(),
        e164: row.try_get_by_index(1)?,
        status: parse_column("phone_numbers.status", &status)?,
    })
}

/// What a new request's guards need besides the locked number, read with the lock
/// ([`Store::lock_number_for_create`]).
pub(crate) struct NewRequestFacts {
    /// The status of the number's open request, if it has one.
    pub open: Option<releasedesk_domain::RequestStatus>,
    /// Does an active agent hold the number?
    pub held: bool,
}

impl Store {
    /// Locks the number's row for the rest of the transaction. It is **the** lock of the
    /// workflow: every writer that changes what may happen to a number — a new request, a
    /// transition, an assignment, an agent's activation — takes it first, so they take turns per
    /// number and each checks its rules against a state nobody can change before its commit.
    ///
    /// A guarded touch of `updated_at` (`UPDATE … RETURNING`): SQLite has no `SELECT … FOR
    /// UPDATE` (its `IMMEDIATE` transactions already serialise writers) and PostgreSQL takes the
    /// row lock with the update. With `environment`, a number of another environment is
    /// `PhoneNumberNotFound`, exactly like one that does not exist.
    pub(crate) async fn lock_number(
        &self,
        db: &impl ConnectionTrait,
        id: PhoneNumberId,
        environment: Option<EnvironmentId>,
    ) -> Result<LockedNumber, StoreError> {
        let row = db
            .query_one_raw(self.stmt(
                "UPDATE phone_numbers SET updated_at = $1 \
                 WHERE id = $2 AND ($3 IS NULL OR environment_id = $3) \
                 RETURNING environment_id, e164, status",
                [
                    now().into(),
                    id.as_uuid().into(),
                    environment.map(|e| e.as_uuid()).into(),
                ],
            ))
            .await?
            .ok_or(StoreError::PhoneNumberNotFound)?;
        locked_number(id, &row)
    }

    /// [`Store::lock_number`] for a new request on SQLite, with what the new request's guards
    /// read in the same statement: the status of the number's open request, if any, and whether
    /// an active agent holds it. One statement instead of three on the single writing
    /// connection, where each statement is a round trip to SQLite's worker thread and writes
    /// queue behind each other (see `connect::group_commit`).
    ///
    /// SQLite only: its writer holds the database's write lock from `BEGIN IMMEDIATE`, so what
    /// the `RETURNING` subqueries read cannot change before the commit. (On PostgreSQL the
    /// subqueries would read the statement's snapshot, taken before the row lock was granted:
    /// there the checks stay separate statements after the lock, or see `one_statement`.)
    pub(crate) async fn lock_number_for_create(
        &self,
        db: &impl ConnectionTrait,
        id: PhoneNumberId,
        environment: Option<EnvironmentId>,
    ) -> Result<(LockedNumber, NewRequestFacts), StoreError> {
        debug_assert_eq!(self.backend(), crate::Backend::Sqlite);
        let row = db
            .query_one_raw(self.stmt(
                &LOCK_FOR_CREATE,
                [
                    now().into(),
                    id.as_uuid().into(),
                    environment.map(|e| e.as_uuid()).into(),
                ],
            ))
            .await?
            .ok_or(StoreError::PhoneNumberNotFound)?;
        let open: Option<String> = row.try_get_by_index(3)?;
        let held: bool = row.try_get_by_index(4)?;
        Ok((
            locked_number(id, &row)?,
            NewRequestFacts {
                open: open
                    .map(|s| parse_column("release_requests.status", &s))
                    .transpose()?,
                held,
            },
        ))
    }

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
                .filter(release_request::Column::Status.is_in(crate::guards::open_statuses()))
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
}
