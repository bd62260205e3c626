//! The create transition on PostgreSQL in one round trip instead of eight.
//!
//! [`Store::transition`](crate::Store) runs a create as a transaction of separate statements
//! (lock the number, check for an open request, check for active agents holding it, insert the
//! request, its audit event and its outbox rows, COMMIT). On PostgreSQL, without an
//! idempotency key, the engine instead calls the PL/pgSQL function
//! `releasedesk_create_request` (migration `m20261128_000010`) in autocommit, which does the
//! same work in the same order:
//!
//! 1. **revalidate the caller**: the API token is still live and its environment exists (so a
//!    token revoked by another process is refused here even when the API took the caller's
//!    identity from its cache; see [`crate::tokens`]);
//! 2. **lock the number** (`SELECT … FOR UPDATE`, the row lock every writer of the number
//!    takes first);
//! 3. **read what the guards need**, after the lock: the number's status, its open request, the
//!    active agents holding it, the webhook endpoints subscribed to the event;
//! 4. **insert** the request, its audit event and the outbox rows of [`Store::outbox_plan`]
//!    (the same rules table the transaction path uses: the email, and one webhook delivery per
//!    enabled endpoint subscribed to the event) — only when every check passed.
//!
//! It returns the facts, and the guards are applied to them in Rust with the same functions
//! and in the same order as the transaction path ([`guards::for_new_request`]), so every
//! refusal keeps its error.
//!
//! **Why the checks are race-free.** Each statement of a volatile PL/pgSQL function takes a new
//! snapshot (READ COMMITTED), so the checks after the lock see everything a writer that held
//! the lock before committed, exactly like the transaction path's separate statements. (An
//! earlier version did all of this in one SQL statement of data-modifying CTEs; all of its
//! parts read one snapshot taken *before* the lock was granted, which needed a row-version
//! witness and retries, and its plan of some forty nodes cost PostgreSQL more CPU per create
//! than the function's small statements: see bench/README.md.) The partial unique index on
//! open requests remains the last word, as on the transaction path.
//!
//! **A lost connection.** The call is sent by a writer lane (see `connect::lanes`) in
//! autocommit, so a connection lost after sending leaves its outcome unknown in general
//! (`CommitUnconfirmed`, 503). When the server itself ended the session
//! ([`StorageFault::server_ended_session`]) the outcome is decided, and one lookup of the
//! request's id on another connection settles it: found, the create is answered as committed;
//! not found, the call is sent once more.
//!
//! The function does not touch the number's `updated_at`: a new request changes nothing in the
//! number's row, and the row lock alone orders it with the number's other writers.

use releasedesk_domain::{OutboxId, PhoneNumberId, Reason, RequestEvent, RequestId, RequestStatus};
use releasedesk_migration::CREATE_REQUEST_PARAM_TYPES;
use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;

use crate::audit::AuditAction;
use crate::guards;
use crate::notifications::{OutboxPlan, PlannedRecipient};
use crate::numbers::LockedNumber;
use crate::outbox::{EmailKind, OutboxKind, OutboxState};
use crate::views::parse_column;
use crate::webhooks::{MAX_WEBHOOK_ENDPOINTS, event_body};
use crate::{Actor, AgentRef, ReleaseRequest, StorageFault, Store, StoreError, now};

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
    /// The create as one autocommitted call of `releasedesk_create_request` (PostgreSQL only).
    /// See the module docs.
    pub(crate) async fn create_in_one_statement(
        &self,
        new: &NewRequest<'_>,
    ) -> Result<Outcome, StoreError> {
        let plan = self.outbox_plan(RequestEvent::Created, new.actor);
        // The function writes what the rules decide without reading the database; an email
        // to the environment's address or a release job would need more than it does.
        let email = match &plan.email {
            None => None,
            Some((kind, PlannedRecipient::Address(to))) => Some((*kind, to.as_str().to_owned())),
            Some((_, PlannedRecipient::Environment)) => return Ok(Outcome::UseTransaction),
        };
        if plan.release_job {
            return Ok(Outcome::UseTransaction);
        }
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
        let mut looked_up = false;
        let row = loop {
            match self.autocommit_one(&stmt).await {
                Ok(row) => {
                    break row.ok_or(StoreError::Database(sea_orm::DbErr::Custom(
                        "releasedesk_create_request returned no row".into(),
                    )))?;
                }
                // The function checks under the lock; the partial unique index stays the last
                // word.
                Err(StoreError::Database(e)) if StoreError::is_unique_violation(&e) => {
                    return Ok(Outcome::Refused(StoreError::ReleaseAlreadyPending));
                }
                Err(lost) if !looked_up && outcome_is_decided(&lost) => {
                    looked_up = true;
                    match self.settle_lost_create(request_id, lost).await? {
                        Some(e164) => {
                            planned.phone_number = e164;
                            return Ok(Outcome::Created(planned));
                        }
                        None => continue,
                    }
                }
                Err(e) => return Err(e),
            }
        };
        Ok(match Facts::read(&row)?.decide(new)? {
            Decision::Created { e164 } => {
                planned.phone_number = e164;
                Outcome::Created(planned)
            }
            Decision::Refused(e) => Outcome::Refused(e),
            Decision::UseTransaction => Outcome::UseTransaction,
        })
    }
}

impl Store {
    /// The call was sent and its connection then lost, on a session the server ended (see
    /// [`StorageFault::server_ended_session`]), so whether it committed is already decided: one
    /// lookup of the request's id on another connection tells. `Some(e164)`: it committed (the
    /// request is answered as created, and the database evidently takes writes). `None`: it
    /// did not and never will, so the caller sends it again. A lookup that fails leaves the
    /// outcome unknown: the original error stands.
    async fn settle_lost_create(
        &self,
        request_id: RequestId,
        lost: StoreError,
    ) -> Result<Option<String>, StoreError> {
        let lookup = self.stmt(
            "SELECT phone_number FROM release_requests WHERE id = $1",
            [request_id.as_uuid().into()],
        );
        let row = match self.reader().query_one_raw(lookup).await {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(error = %lost.chain(), lookup = %e, "a create lost its connection and the lookup of its outcome failed");
                return Err(lost);
            }
        };
        match row {
            Some(row) => {
                self.health.write_succeeded();
                tracing::warn!(error = %lost.chain(), request_id = %request_id, "a create lost its connection after it committed; answered as created");
                Ok(Some(row.try_get_by_index(0)?))
            }
            None => {
                tracing::warn!(error = %lost.chain(), request_id = %request_id, "a create lost its connection before it committed; sending it again on another connection");
                Ok(None)
            }
        }
    }
}

/// Is `err` a statement lost with its connection on a session the server ended, whose outcome
/// a lookup can therefore tell?
fn outcome_is_decided(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::StorageUnavailable { fault: StorageFault::CommitUnconfirmed, source }
            if StorageFault::server_ended_session(source)
    )
}

/// What the function saw and did (its OUT parameters, in order).
struct Facts {
    authorized: bool,
    /// The number's row, as locked (absent: not found in the caller's environment).
    number: Option<(String, String)>,
    open_status: Option<String>,
    holders: Option<String>,
    subscribers: i64,
    inserted: bool,
}

enum Decision {
    Created { e164: String },
    Refused(StoreError),
    UseTransaction,
}

impl Facts {
    fn read(row: &sea_orm::QueryResult) -> Result<Self, StoreError> {
        let e164: Option<String> = row.try_get_by_index(1)?;
        let status: Option<String> = row.try_get_by_index(2)?;
        Ok(Self {
            authorized: row.try_get_by_index(0)?,
            number: e164.zip(status),
            open_status: row.try_get_by_index(3)?,
            holders: row.try_get_by_index(4)?,
            subscribers: row.try_get_by_index(5)?,
            inserted: row.try_get_by_index(6)?,
        })
    }

    /// The guards, in the transaction path's order, applied to what the function read.
    fn decide(self, new: &NewRequest<'_>) -> Result<Decision, StoreError> {
        if !self.authorized {
            return Ok(Decision::Refused(StoreError::Unauthenticated));
        }
        let Some((e164, status)) = self.number else {
            return Ok(Decision::Refused(StoreError::PhoneNumberNotFound));
        };
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
            // The function's condition and the guards disagree: a bug, said loudly.
            (Ok(()), false) | (Err(_), true) => Err(StoreError::Database(sea_orm::DbErr::Custom(
                "releasedesk_create_request and the guards disagree on a create".into(),
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

/// The function's arguments, in the order of its parameters (their types:
/// [`CREATE_REQUEST_PARAM_TYPES`]).
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
        /* $25 */ (MAX_WEBHOOK_ENDPOINTS as i32).into(),
    ]
}

/// The call (PostgreSQL), with [`params`]: each argument cast to the type of the function's
/// parameter, so the call resolves to the function whatever type the driver sent.
fn create_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let args: Vec<String> = CREATE_REQUEST_PARAM_TYPES
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}", i + 1))
            .collect();
        format!(
            "SELECT * FROM releasedesk_create_request({})",
            args.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_has_the_type_of_the_functions_parameter() {
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
        let email = (EmailKind::RequestCreated, "support@desk.example".to_owned());
        for email in [None, Some(&email)] {
            let args = params(&new, &plan, email, &request);
            assert_eq!(args.len(), CREATE_REQUEST_PARAM_TYPES.len());
            for (n, (arg, ty)) in args.iter().zip(CREATE_REQUEST_PARAM_TYPES).enumerate() {
                let fits = match arg {
                    Value::Uuid(_) => ty == "uuid",
                    Value::String(_) => ty == "text",
                    Value::ChronoDateTimeUtc(_) => ty == "timestamptz",
                    Value::Int(_) => ty == "integer",
                    _ => false,
                };
                assert!(fits, "argument ${} is {arg:?}, the parameter {ty}", n + 1);
            }
        }
        assert!(create_sql().ends_with("$24::text, $25::integer)"));
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
