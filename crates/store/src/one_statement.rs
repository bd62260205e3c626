//! The create transition on PostgreSQL in one statement: one round trip instead of eight.
//!
//! [`Store::transition`](crate::Store) runs a create as a transaction of separate statements
//! (lock the number, check for an open request, check for active agents holding it, insert the
//! request, its audit event and its outbox rows, COMMIT). On PostgreSQL, without an
//! idempotency key, the engine instead sends **one** statement in autocommit whose
//! data-modifying CTEs do the same work in the same order:
//!
//! 1. **revalidate the caller**: the API token is still live and its environment exists (so a
//!    token revoked by another process is refused here even when the API took the caller's
//!    identity from its cache; see [`crate::tokens`]);
//! 2. **lock the number** (`SELECT … FOR UPDATE`, the same row lock every writer of the number
//!    takes) and touch its `updated_at` when the request is written, like
//!    [`Store::lock_number`](crate::Store);
//! 3. **read what the guards need**: the number's status, its open request, the active agents
//!    holding it;
//! 4. **insert** the request, its audit event and the outbox rows of [`Store::outbox_plan`]
//!    (the same rules table the transaction path uses: the email, and one webhook delivery per
//!    enabled endpoint subscribed to the event) — only when every check passed.
//!
//! It returns the facts, and the guards are applied to them in Rust with the same functions
//! and in the same order as the transaction path ([`guards::for_new_request`]), so every
//! refusal keeps its error.
//!
//! **Why the checks are race-free.** All sub-statements of one statement read the snapshot
//! taken when it started, *before* the lock was granted. A writer that held the number's lock
//! and committed in between is invisible to the checks. Every writer that takes the lock also
//! updates the row (the touch), which gives the row a new version: the statement compares the
//! version it locked (`xmin` of the `FOR UPDATE` row, which PostgreSQL re-reads after waiting)
//! with the version its snapshot sees. Equal: nobody changed anything under the lock since the
//! snapshot, and the checks are as good as checks made under the lock. Different: the
//! statement writes nothing and is sent again with a fresh snapshot (after a few such
//! conflicts the create falls back to the transaction path). The partial unique index on open
//! requests remains the last word, as on the transaction path.

use releasedesk_domain::{
    AgentStatus, OutboxId, PhoneNumberId, PhoneNumberStatus, Reason, RequestEvent, RequestId,
    RequestStatus,
};
use sea_orm::Value;
use uuid::Uuid;

use crate::audit::AuditAction;
use crate::guards;
use crate::notifications::{OutboxPlan, PlannedRecipient};
use crate::numbers::LockedNumber;
use crate::outbox::{EmailKind, OutboxKind, OutboxState};
use crate::views::parse_column;
use crate::webhooks::{MAX_WEBHOOK_ENDPOINTS, event_body};
use crate::{Actor, AgentRef, ReleaseRequest, Store, StoreError, now};

/// How often a statement that found the number changed since its snapshot is sent again
/// before the create takes the transaction path.
const FRESH_SNAPSHOT_TRIES: usize = 3;

/// What the one-statement create did.
pub(crate) enum Outcome {
    /// The request was written, with everything the transaction path writes.
    Created(ReleaseRequest),
    /// A guard refused it (nothing was written).
    Refused(StoreError),
    /// The statement cannot do this one (a plan it does not express, or repeated conflicts):
    /// the engine runs the transaction path instead. Nothing was written.
    UseTransaction,
}

/// The request's columns and the caller, for one create.
pub(crate) struct NewRequest<'a> {
    pub phone_number_id: PhoneNumberId,
    pub environment_id: releasedesk_domain::EnvironmentId,
    pub token_id: Uuid,
    pub reason: &'a Reason,
    pub actor: &'a Actor,
}

impl Store {
    /// The create as one autocommitted statement (PostgreSQL only). See the module docs.
    pub(crate) async fn create_in_one_statement(
        &self,
        new: &NewRequest<'_>,
    ) -> Result<Outcome, StoreError> {
        let plan = self.outbox_plan(RequestEvent::Created, new.actor);
        // The statement writes what the rules decide without reading the database; an email
        // to the environment's address or a release job would need more than it does.
        let email = match &plan.email {
            None => None,
            Some((kind, PlannedRecipient::Address(to))) => Some((*kind, to.as_str().to_owned())),
            Some((_, PlannedRecipient::Environment)) => return Ok(Outcome::UseTransaction),
        };
        if plan.release_job {
            return Ok(Outcome::UseTransaction);
        }
        for _ in 0..FRESH_SNAPSHOT_TRIES {
            let request_id = RequestId::new();
            let at = now();
            let mut planned = ReleaseRequest {
                id: request_id,
                environment_id: new.environment_id,
                phone_number_id: new.phone_number_id,
                // Filled in from the locked row below (and in the webhook body, by the database).
                phone_number: String::new(),
                reason: new.reason.as_str().to_owned(),
                status: RequestStatus::INITIAL,
                requested_at: at,
                resolved_at: None,
                released_at: None,
                review_note: None,
                reviewed_by: None,
            };
            let stmt = self.stmt(create_sql(), params(new, &plan, email.as_ref(), &planned));
            let row = match self.autocommit_one(stmt).await {
                Ok(row) => row.ok_or(StoreError::Database(sea_orm::DbErr::Custom(
                    "the create statement returned no row".into(),
                )))?,
                // Two creates raced past the check: the partial unique index decides.
                Err(StoreError::Database(e)) if StoreError::is_unique_violation(&e) => {
                    return Ok(Outcome::Refused(StoreError::ReleaseAlreadyPending));
                }
                Err(e) => return Err(e),
            };
            let facts = Facts::read(&row)?;
            match facts.decide(new)? {
                Decision::Created { e164 } => {
                    planned.phone_number = e164;
                    return Ok(Outcome::Created(planned));
                }
                Decision::Refused(e) => return Ok(Outcome::Refused(e)),
                Decision::Stale => continue,
                Decision::UseTransaction => return Ok(Outcome::UseTransaction),
            }
        }
        Ok(Outcome::UseTransaction)
    }
}

/// What the statement saw and did.
struct Facts {
    authorized: bool,
    /// The number's row, as locked (absent: not found in the caller's environment).
    number: Option<(String, String)>,
    fresh: bool,
    open_status: Option<String>,
    holders: Option<String>,
    subscribers: i64,
    inserted: bool,
}

enum Decision {
    Created { e164: String },
    Refused(StoreError),
    Stale,
    UseTransaction,
}

impl Facts {
    fn read(row: &sea_orm::QueryResult) -> Result<Self, StoreError> {
        let e164: Option<String> = row.try_get_by_index(1)?;
        let status: Option<String> = row.try_get_by_index(2)?;
        Ok(Self {
            authorized: row.try_get_by_index(0)?,
            number: e164.zip(status),
            fresh: row.try_get_by_index::<Option<bool>>(3)?.unwrap_or(false),
            open_status: row.try_get_by_index(4)?,
            holders: row.try_get_by_index(5)?,
            subscribers: row.try_get_by_index(6)?,
            inserted: row.try_get_by_index(7)?,
        })
    }

    /// The guards, in the transaction path's order, applied to what the statement read.
    fn decide(self, new: &NewRequest<'_>) -> Result<Decision, StoreError> {
        if !self.authorized {
            return Ok(Decision::Refused(StoreError::Unauthenticated));
        }
        let Some((e164, status)) = self.number else {
            return Ok(Decision::Refused(StoreError::PhoneNumberNotFound));
        };
        if !self.fresh {
            return Ok(Decision::Stale);
        }
        let number = LockedNumber {
            id: new.phone_number_id,
            environment_id: new.environment_id,
            e164,
            status: parse_column("phone_numbers.status", &status)?,
        };
        let open = self
            .open_status
            .map(|s| parse_column::<RequestStatus>("release_requests.status", &s))
            .transpose()?;
        let agents = match self.holders {
            None => Vec::new(),
            Some(json) => parse_holders(&json)?,
        };
        let verdict = guards::for_new_request(&number, open, agents);
        match (verdict, self.inserted) {
            (Ok(()), true) => Ok(Decision::Created { e164: number.e164 }),
            (Err(e), false) => Ok(Decision::Refused(e)),
            (Ok(()), false) if self.subscribers > MAX_WEBHOOK_ENDPOINTS as i64 => {
                Ok(Decision::UseTransaction)
            }
            // The statement's condition and the guards disagree: a bug, said loudly.
            (Ok(()), false) | (Err(_), true) => Err(StoreError::Database(sea_orm::DbErr::Custom(
                "the one-statement create and the guards disagree on a create".into(),
            ))),
        }
    }
}

fn parse_holders(json: &str) -> Result<Vec<AgentRef>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Holder {
        id: Uuid,
        name: String,
    }
    let holders: Vec<Holder> = serde_json::from_str(json).map_err(|e| {
        StoreError::Database(sea_orm::DbErr::Type(format!(
            "the active agents holding a number: {e}"
        )))
    })?;
    Ok(holders
        .into_iter()
        .map(|h| AgentRef {
            id: h.id.into(),
            name: h.name,
        })
        .collect())
}

/// The statement's parameters, numbered as in [`create_sql`].
fn params(
    new: &NewRequest<'_>,
    plan: &OutboxPlan,
    email: Option<&(EmailKind, String)>,
    request: &ReleaseRequest,
) -> Vec<Value> {
    let actor = new.actor;
    let payload = serde_json::to_string(&plan.payload).unwrap_or_else(|_| "{}".into());
    // The webhook body is the transaction path's, with the number's E.164 (read under the lock)
    // put in by the database where a marker stands: the marker is a fresh UUID, so nothing
    // else in the body can contain it.
    let marker = Uuid::new_v4().to_string();
    let mut object = request.to_object();
    object.phone_number = marker.clone();
    let body = event_body(plan.webhook, &object);
    let quoted = format!("\"{marker}\"");
    let (prefix, suffix) = body.split_once(&quoted).unwrap_or((&body, ""));
    let webhook_ids: Vec<String> = (0..MAX_WEBHOOK_ENDPOINTS)
        .map(|_| OutboxId::new().as_uuid().to_string())
        .collect();
    let email_kind = email.map(|(k, _)| OutboxKind::Email(*k));
    vec![
        /* $1 */ new.phone_number_id.as_uuid().into(),
        /* $2 */ new.environment_id.as_uuid().into(),
        /* $3 */ new.token_id.into(),
        /* $4 */ request.id.as_uuid().into(),
        /* $5 */ request.reason.clone().into(),
        /* $6 */ request.status.as_str().into(),
        /* $7 */ request.requested_at.into(),
        /* $8 */ Uuid::now_v7().into(),
        /* $9 */ actor.kind().into(),
        /* $10 */ actor.id().into(),
        /* $11 */ actor.label().into(),
        /* $12 */
        AuditAction::Request(RequestEvent::Created)
            .name()
            .into_owned()
            .into(),
        /* $13 */ email_kind.map(|k| k.as_str().to_owned()).into(),
        /* $14 */ email.map(|(_, to)| to.clone()).into(),
        /* $15 */ OutboxId::new().as_uuid().into(),
        /* $16 */ payload.into(),
        /* $17 */ email_kind.map_or(0, |k| k.max_attempts()).into(),
        /* $18 */ plan.webhook.as_str().into(),
        /* $19 */ prefix.to_owned().into(),
        /* $20 */ suffix.to_owned().into(),
        /* $21 */ webhook_ids.join(",").into(),
        /* $22 */ OutboxKind::Webhook.max_attempts().into(),
        /* $23 */ OutboxState::Pending.as_str().into(),
        /* $24 */ OutboxKind::Webhook.as_str().into(),
    ]
}

/// The statement (PostgreSQL). The constants of the domain (statuses) are written in from
/// their Rust definitions once.
fn create_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let open: Vec<String> = guards::open_statuses().map(|s| format!("'{s}'")).collect();
        let open = open.join(", ");
        let active_number = PhoneNumberStatus::Active.as_str();
        let active_agent = AgentStatus::Active.as_str();
        let max = MAX_WEBHOOK_ENDPOINTS;
        format!(
            "WITH \
             auth AS (SELECT EXISTS (SELECT 1 FROM api_tokens t JOIN environments e \
                 ON e.id = t.environment_id \
                 WHERE t.id = $3 AND t.environment_id = $2 AND t.revoked_at IS NULL) AS ok), \
             seen AS (SELECT xmin::text AS v FROM phone_numbers WHERE id = $1), \
             locked AS (SELECT e164, status, xmin::text AS v FROM phone_numbers \
                 WHERE id = $1 AND environment_id = $2 FOR UPDATE), \
             open_req AS (SELECT status FROM release_requests \
                 WHERE phone_number_id = $1 AND status IN ({open}) LIMIT 1), \
             holders AS (SELECT a.id, a.name FROM agents a \
                 WHERE a.current_status = '{active_agent}' AND a.id IN \
                 (SELECT agent_id FROM agent_phone_numbers WHERE phone_number_id = $1)), \
             subscribed AS (SELECT w.id, w.url, row_number() OVER (ORDER BY w.id) AS n \
                 FROM webhook_endpoints w \
                 WHERE w.environment_id = $2 AND w.deleted_at IS NULL AND w.enabled \
                 AND w.events::jsonb ? $18), \
             verdict AS (SELECT (SELECT ok FROM auth) AS authorized, l.e164, l.status, \
                 l.v = (SELECT v FROM seen) AS fresh, \
                 (SELECT status FROM open_req) AS open_status, \
                 EXISTS (SELECT 1 FROM holders) AS held, \
                 (SELECT count(*) FROM subscribed) AS subscribers \
                 FROM (SELECT 1) AS one LEFT JOIN locked l ON true), \
             go AS (SELECT e164 FROM verdict WHERE authorized AND e164 IS NOT NULL AND fresh \
                 AND status = '{active_number}' AND open_status IS NULL AND NOT held \
                 AND subscribers <= {max}), \
             ins_req AS (INSERT INTO release_requests (id, environment_id, phone_number_id, \
                 phone_number, reason, status, requested_at, resolved_at, released_at, \
                 review_note, reviewed_by) \
                 SELECT $4, $2, $1, go.e164, $5, $6, $7, NULL, NULL, NULL, NULL FROM go \
                 RETURNING phone_number), \
             touch AS (UPDATE phone_numbers SET updated_at = $7 \
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM ins_req) RETURNING 1), \
             audit AS (INSERT INTO audit_events (id, occurred_at, actor_kind, actor_id, \
                 actor_label, action, environment_id, request_id, phone_number_id, detail) \
                 SELECT $8, $7, $9, $10, $11, $12, $2, $4, $1, NULL FROM ins_req RETURNING 1), \
             email AS (INSERT INTO outbox (id, kind, environment_id, request_id, recipient, \
                 payload, state, attempts, max_attempts, next_attempt_at, created_at) \
                 SELECT $15, $13, $2, $4, $14, $16, $23, 0, $17, $7, $7 FROM ins_req \
                 WHERE $13::text IS NOT NULL RETURNING 1), \
             hooks AS (INSERT INTO outbox (id, kind, environment_id, request_id, recipient, \
                 payload, state, attempts, max_attempts, next_attempt_at, created_at, \
                 webhook_endpoint_id, event_type, body) \
                 SELECT (string_to_array($21, ','))[s.n]::uuid, $24, $2, $4, s.url, '{{}}', \
                 $23, 0, $22, $7, $7, s.id, $18, $19 || to_json(r.phone_number)::text || $20 \
                 FROM subscribed s, ins_req r RETURNING 1) \
             SELECT v.authorized, v.e164, v.status, v.fresh, v.open_status, \
                 (SELECT json_agg(json_build_object('id', h.id, 'name', h.name) \
                     ORDER BY h.name)::text FROM holders h), \
                 v.subscribers, EXISTS (SELECT 1 FROM ins_req) \
             FROM verdict v"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_of_the_statement_is_bound_and_every_bound_one_used() {
        let sql = create_sql();
        let highest = (1..100)
            .filter(|n| {
                let p = format!("${n}");
                sql.match_indices(&p)
                    .any(|(i, _)| !sql[i + p.len()..].starts_with(|c: char| c.is_ascii_digit()))
            })
            .max()
            .unwrap();
        let reason = Reason::parse("We no longer need this number for our agents.").unwrap();
        let actor = Actor::Customer {
            token_prefix: "talq_x".into(),
        };
        let new = NewRequest {
            phone_number_id: PhoneNumberId::new(),
            environment_id: releasedesk_domain::EnvironmentId::new(),
            token_id: Uuid::now_v7(),
            reason: &reason,
            actor: &actor,
        };
        let plan = OutboxPlan {
            email: None,
            release_job: false,
            webhook: releasedesk_domain::WebhookEvent::RequestCreated,
            payload: Default::default(),
        };
        let request = ReleaseRequest {
            id: RequestId::new(),
            environment_id: new.environment_id,
            phone_number_id: new.phone_number_id,
            phone_number: String::new(),
            reason: reason.as_str().to_owned(),
            status: RequestStatus::INITIAL,
            requested_at: now(),
            resolved_at: None,
            released_at: None,
            review_note: None,
            reviewed_by: None,
        };
        let bound = params(&new, &plan, None, &request).len();
        assert_eq!(highest, bound);
        for n in 1..=bound {
            assert!(sql.contains(&format!("${n}")), "${n} is bound but unused");
        }
    }

    #[test]
    fn the_webhook_body_is_split_around_the_number() {
        // The body's number is the only field the database fills in: the JSON around it must
        // be cut exactly at the quoted marker.
        let marker = Uuid::new_v4().to_string();
        let body = format!("{{\"phone_number\":\"{marker}\",\"x\":1}}");
        let (prefix, suffix) = body.split_once(&format!("\"{marker}\"")).unwrap();
        let rebuilt = format!("{prefix}\"+15550000001\"{suffix}");
        let v: serde_json::Value = serde_json::from_str(&rebuilt).unwrap();
        assert_eq!(v["phone_number"], "+15550000001");
    }
}
