//! The transition engine: the one place where a release request is created or changes status.
//!
//! Every change — a customer's new request or cancellation, a reviewer's approval or rejection,
//! the release job's completion — is a [`Command`] carried out by [`Store::transition`] inside
//! the caller's transaction, in the same steps:
//!
//! 1. **load and lock**: the request (scoped to the caller's environment) and its number's row
//!    ([`Store::lock_number`], the lock every writer touching a number takes);
//! 2. **the domain decides** whether the action is allowed from the request's status
//!    ([`RequestStatus::apply`]);
//! 3. **the action's own rules** ([`guards`]): released number, open request, active agents,
//!    the typed confirmation — and, for an approval, the environment's approval policy: the
//!    domain's [`decide_approval`] says whether this approval approves the request or is
//!    recorded while it waits for another reviewer ([`approvals`](crate::approvals));
//! 4. **the write**: an `INSERT`, or an `UPDATE` guarded by the status the domain requires for
//!    the action ([`RequestStatus::required_for`]) — zero rows means someone else decided first,
//!    and the loser is told what they decided. An approval that only counts towards the
//!    required number still runs the guarded `UPDATE` (leaving the status as it is), so it too
//!    can only land on a request that is still pending;
//! 5. **the audit event**, named after the [`RequestEvent`] (or `request.approval_recorded`);
//! 6. **the outbox rows** the event causes ([`notifications`](crate::notifications)).
//!
//! A new status or a new kind of notification is a change here (and in the domain's table),
//! not one more copy per use case.
//!
//! **Two plans for a create.** The engine runs the steps above as a transaction of separate
//! statements — except a create on PostgreSQL without an idempotency key, which it sends as
//! one statement in autocommit, a call of the PL/pgSQL function `releasedesk_create_request`
//! that does the same steps ([`one_statement`](crate::one_statement)): one round trip instead
//! of eight, the same guards (applied in Rust to what the function read), the same outbox rows
//! (from [`Store::outbox_plan`]), the same errors.

use chrono::{DateTime, Utc};
use releasedesk_domain::{
    ApprovalNote, ApprovalOutcome, OutboxId, PhoneNumberId, PhoneNumberStatus, Reason,
    RejectionNote, RequestAction, RequestEvent, RequestId, RequestStatus, StaffId, decide_approval,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::approvals::{self, Approval, NewApproval};
use crate::audit::Event;
use crate::entities::{agent_phone_number, carrier_release, phone_number, release_request};
use crate::guards;
use crate::numbers::LockedNumber;
use crate::one_statement::{NewRequest, Outcome};
use crate::outbox::mark_sent_in;
use crate::{
    Actor, AuditAction, AuthContext, Backend, Completion, ReleaseRequest, Store, StoreError, now,
};

/// What the carrier said when it released the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierReceipt {
    /// The carrier's name ("recorded" for the default carrier).
    pub carrier: String,
    /// The carrier's reference for the release, if it gives one.
    pub reference: Option<String>,
}

/// How a release job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// This call released the number.
    Released(ReleaseRequest),
    /// The request was already released (a retry after a lost lease): nothing more to do.
    AlreadyReleased,
    /// The worker's lease on the job was lost; another worker owns it now.
    LeaseLost,
}

/// Something someone asks to happen to a release request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Command<'a> {
    /// A customer asks for the number's release: a new `pending` request.
    Create {
        phone_number_id: PhoneNumberId,
        reason: &'a Reason,
        /// The customer's token, checked again by the write when the API took it from its
        /// cache (see [`crate::tokens`]).
        caller: &'a AuthContext,
    },
    /// An action on an existing request.
    Act {
        request_id: RequestId,
        action: Action<'a>,
    },
}

/// An action on an existing request, with what it carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    Cancel,
    Approve {
        /// The number as the reviewer typed it.
        confirm_number: &'a str,
        note: Option<&'a ApprovalNote>,
    },
    Reject {
        note: &'a RejectionNote,
    },
    /// The carrier has let the number go.
    Release {
        receipt: &'a CarrierReceipt,
    },
    /// Nobody decided within the service level's `expire_after`.
    Expire,
}

impl Action<'_> {
    const fn domain(self) -> RequestAction {
        match self {
            Action::Cancel => RequestAction::Cancel,
            Action::Approve { .. } => RequestAction::Approve,
            Action::Reject { .. } => RequestAction::Reject,
            Action::Release { .. } => RequestAction::Release,
            Action::Expire => RequestAction::Expire,
        }
    }
}

/// What a change did, as the audit log and the notifications see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// The request was created or entered a new status.
    Entered(RequestEvent),
    /// An approval was recorded; the request stays pending for more.
    ApprovalRecorded,
}

/// An approval, decided by the policy: who gives it, what the domain said, and the approvals
/// given before it.
struct ApprovalStep {
    reviewer: StaffId,
    reviewer_email: String,
    outcome: ApprovalOutcome,
    earlier: Vec<Approval>,
}

/// What a command works on, once loaded and decided.
enum Subject<'a> {
    /// A request to be created.
    New {
        reason: &'a Reason,
        /// What the guards need, when it was read with the lock (SQLite).
        facts: Option<crate::numbers::NewRequestFacts>,
    },
    /// An existing request, the action on it, and the status the domain allows it to enter.
    Existing {
        current: Box<ReleaseRequest>,
        action: Action<'a>,
        next: RequestStatus,
    },
}

/// Which requests a command may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A customer's token: its environment only; any other id is "not found".
    Environment(releasedesk_domain::EnvironmentId),
    /// Staff and the service itself see every environment.
    Any,
}

impl Scope {
    fn environment(self) -> Option<releasedesk_domain::EnvironmentId> {
        match self {
            Scope::Environment(env) => Some(env),
            Scope::Any => None,
        }
    }
}

impl Store {
    /// Carries out `command` inside the caller's transaction `db` and returns the request as it
    /// is after the change. See the module documentation for the steps.
    pub(crate) async fn transition(
        &self,
        db: &impl ConnectionTrait,
        actor: &Actor,
        scope: Scope,
        command: Command<'_>,
    ) -> Result<ReleaseRequest, StoreError> {
        let at = now();
        // 1. Load and lock; 2. the domain decides.
        let (subject, number) = match command {
            Command::Create {
                phone_number_id,
                reason,
                caller,
            } => {
                if caller.from_cache {
                    self.token_still_valid(db, caller).await?;
                }
                let (number, facts) = match self.backend() {
                    crate::Backend::Sqlite => {
                        let (number, facts) = self
                            .lock_number_for_create(db, phone_number_id, scope.environment())
                            .await?;
                        (number, Some(facts))
                    }
                    crate::Backend::Postgres => (
                        self.lock_number(db, phone_number_id, scope.environment())
                            .await?,
                        None,
                    ),
                };
                (Subject::New { reason, facts }, number)
            }
            Command::Act { request_id, action } => {
                let current = load_request(db, request_id, scope).await?;
                let number = self.lock_number(db, current.phone_number_id, None).await?;
                let next = current
                    .status
                    .apply(action.domain())
                    .map_err(|e| StoreError::NotPending(e.from))?;
                let subject = Subject::Existing {
                    current: Box::new(current),
                    action,
                    next,
                };
                (subject, number)
            }
        };
        // 3. The action's own rules.
        let mut approval = None;
        match &subject {
            Subject::New { facts: None, .. } => {
                guards::not_released(&number)?;
                guards::no_open_request(db, &number).await?;
                guards::not_in_use(db, &number).await?;
            }
            Subject::New {
                facts: Some(facts), ..
            } => {
                // The same rules in the same order, from what was read with the lock; the
                // agents are listed (for the error) only when one holds the number.
                let agents = if facts.held {
                    guards::active_agents_holding(db, number.id).await?
                } else {
                    Vec::new()
                };
                guards::for_new_request(&number, facts.open, agents)?;
            }
            Subject::Existing {
                current, action, ..
            } => match action {
                Action::Approve { confirm_number, .. } => {
                    guards::confirmation_matches(confirm_number, &number)?;
                    guards::not_in_use(db, &number).await?;
                    approval = Some(decide(db, actor, current).await?);
                }
                Action::Cancel
                | Action::Reject { .. }
                | Action::Release { .. }
                | Action::Expire => {}
            },
        }
        // 4. The write.
        let (after, effect, detail) = match subject {
            Subject::New { reason, .. } => (
                insert_request(db, &number, reason, at).await?,
                Effect::Entered(RequestEvent::Created),
                None,
            ),
            Subject::Existing {
                current,
                action,
                next,
            } => {
                let guard = RequestStatus::required_for(action.domain());
                // An approval that only counts towards the required number changes nothing on
                // the request; its guarded UPDATE only proves the request is still pending.
                let recorded_only = matches!(
                    approval.as_ref().map(|a| a.outcome),
                    Some(ApprovalOutcome::Recorded { .. })
                );
                let (planned, effect) = if recorded_only {
                    ((*current).clone(), Effect::ApprovalRecorded)
                } else {
                    let earlier_note = approval
                        .as_ref()
                        .and_then(|a| a.earlier.iter().rev().find_map(|e| e.note.clone()));
                    let reviewer = match actor {
                        Actor::Staff { id, .. } => Some(*id),
                        Actor::Customer { .. } | Actor::System | Actor::Cli => None,
                    };
                    (
                        after_action(&current, action, next, reviewer, earlier_note, at),
                        Effect::Entered(RequestEvent::entering(next)),
                    )
                };
                let after = update_request(db, &current, planned, guard).await?;
                let detail = match action {
                    Action::Release { receipt } => {
                        Some(release_number(db, &number, receipt, at).await?)
                    }
                    Action::Approve { note, .. } => {
                        let step = approval.as_ref().ok_or(StoreError::Database(
                            sea_orm::DbErr::Custom("an approval without its policy step".into()),
                        ))?;
                        Some(record_approval(db, &after, step, note, at).await?)
                    }
                    Action::Reject { note } => Some(serde_json::json!({ "note": note.as_str() })),
                    Action::Cancel | Action::Expire => None,
                };
                (after, effect, detail)
            }
        };
        // 5. The audit event.
        let audit_action = match effect {
            Effect::Entered(event) => AuditAction::Request(event),
            Effect::ApprovalRecorded => AuditAction::ApprovalRecorded,
        };
        Event {
            actor,
            action: audit_action,
            environment_id: Some(after.environment_id),
            request_id: Some(after.id),
            phone_number_id: Some(after.phone_number_id),
            detail,
        }
        .record(db)
        .await?;
        // 6. The outbox rows the change causes.
        match effect {
            Effect::Entered(event) => {
                self.enqueue_notifications(db, event, &after, actor).await?;
            }
            Effect::ApprovalRecorded => {}
        }
        Ok(after)
    }

    /// Runs one command in its own transaction; with a `completion`, the response rendered
    /// from the result is stored with its idempotency key in that same transaction.
    async fn run(
        &self,
        actor: &Actor,
        scope: Scope,
        command: Command<'_>,
        completion: Option<Completion<'_, ReleaseRequest>>,
    ) -> Result<ReleaseRequest, StoreError> {
        // On PostgreSQL a create without an idempotency key is one statement (see
        // `one_statement`); the engine falls back to the transaction when it cannot be.
        if let (Command::Create { .. }, None, Backend::Postgres) =
            (command, &completion, self.backend())
            && let Some(after) = self.create_at_once(actor, scope, command).await?
        {
            crate::stats::count_transition(after.status);
            return Ok(after);
        }
        let after = self
            .transact_completing(completion, |tx| async move {
                self.transition(&tx, actor, scope, command).await
            })
            .await?;
        // Counted once committed: a rolled-back (or retried) transition is not a transition.
        crate::stats::count_transition(after.status);
        Ok(after)
    }

    /// The one-statement create, when it can do this one; `None`: run the transaction.
    async fn create_at_once(
        &self,
        actor: &Actor,
        scope: Scope,
        command: Command<'_>,
    ) -> Result<Option<ReleaseRequest>, StoreError> {
        let Command::Create {
            phone_number_id,
            reason,
            caller,
        } = command
        else {
            return Ok(None);
        };
        let Some(environment_id) = scope.environment() else {
            return Ok(None);
        };
        let new = NewRequest {
            phone_number_id,
            environment_id,
            token_id: caller.token_id,
            reason,
            actor,
        };
        match self.create_in_one_statement(&new).await? {
            Outcome::Created(after) => Ok(Some(after)),
            Outcome::Refused(e) => Err(e),
            Outcome::UseTransaction => Ok(None),
        }
    }

    /// `POST /phone-numbers/{id}/request-release`: a new `pending` request.
    pub async fn request_release(
        &self,
        auth: &AuthContext,
        phone_number_id: PhoneNumberId,
        reason: Reason,
    ) -> Result<ReleaseRequest, StoreError> {
        self.request_release_idempotent(auth, phone_number_id, reason, None)
            .await
    }

    /// [`Store::request_release`], storing the response with a claimed idempotency key in the
    /// request's own transaction when `completion` is given.
    pub async fn request_release_idempotent(
        &self,
        auth: &AuthContext,
        phone_number_id: PhoneNumberId,
        reason: Reason,
        completion: Option<Completion<'_, ReleaseRequest>>,
    ) -> Result<ReleaseRequest, StoreError> {
        let command = Command::Create {
            phone_number_id,
            reason: &reason,
            caller: auth,
        };
        self.run(
            &auth.actor(),
            Scope::Environment(auth.environment_id),
            command,
            completion,
        )
        .await
    }

    /// `POST /phone-numbers/release-requests/{id}/cancel`: pending → cancelled.
    pub async fn cancel_request(
        &self,
        auth: &AuthContext,
        request_id: RequestId,
    ) -> Result<ReleaseRequest, StoreError> {
        self.cancel_request_idempotent(auth, request_id, None).await
    }

    /// [`Store::cancel_request`], storing the response with a claimed idempotency key in the
    /// cancellation's own transaction when `completion` is given.
    pub async fn cancel_request_idempotent(
        &self,
        auth: &AuthContext,
        request_id: RequestId,
        completion: Option<Completion<'_, ReleaseRequest>>,
    ) -> Result<ReleaseRequest, StoreError> {
        let command = Command::Act {
            request_id,
            action: Action::Cancel,
        };
        self.run(
            &auth.actor(),
            Scope::Environment(auth.environment_id),
            command,
            completion,
        )
        .await
    }

    /// A reviewer's approval of a pending request. `confirm_number` must equal the request's
    /// E.164 number exactly ("type the number to confirm"); an active agent holding the number
    /// refuses approval. Every approval checks all of it again.
    ///
    /// When the environment requires two approvals, the first is recorded and the request is
    /// returned still `pending`; the approval of a *different* reviewer then approves it (the
    /// same reviewer again is [`StoreError::SameReviewer`]). Approving is irreversible. Of
    /// several concurrent decisions the number's lock lets one run at a time: each sees the
    /// approvals before it, so exactly one approves, and a decision that finds the request
    /// decided gets `NotPending` with the status the winner set. The "approved" email (naming
    /// the approving reviewers) and the release job are written in the same transaction.
    pub async fn approve(
        &self,
        staff: &Actor,
        request_id: RequestId,
        confirm_number: &str,
        note: Option<ApprovalNote>,
    ) -> Result<ReleaseRequest, StoreError> {
        let command = Command::Act {
            request_id,
            action: Action::Approve {
                confirm_number,
                note: note.as_ref(),
            },
        };
        self.run(staff, Scope::Any, command, None).await
    }

    /// Rejects a pending request with a note meant for the customer; `rejected` is terminal.
    pub async fn reject(
        &self,
        staff: &Actor,
        request_id: RequestId,
        note: RejectionNote,
    ) -> Result<ReleaseRequest, StoreError> {
        let command = Command::Act {
            request_id,
            action: Action::Reject { note: &note },
        };
        self.run(staff, Scope::Any, command, None).await
    }

    /// The release job's transaction, once the carrier has let the number go: the job's outbox
    /// row is marked done (guarded by the worker's lease) and the request becomes `released`
    /// through the engine — the number released, its remaining assignments removed, the
    /// carrier's receipt kept, the "released" email enqueued.
    pub async fn complete_release(
        &self,
        job: OutboxId,
        lease_owner: &str,
        request_id: RequestId,
        receipt: &CarrierReceipt,
    ) -> Result<ReleaseOutcome, StoreError> {
        let command = Command::Act {
            request_id,
            action: Action::Release { receipt },
        };
        let outcome = self
            .transact(|tx| async move {
                if !mark_sent_in(&tx, job, lease_owner).await? {
                    return Ok(ReleaseOutcome::LeaseLost);
                }
                match self
                    .transition(&tx, &Actor::System, Scope::Any, command)
                    .await
                {
                    Ok(released) => Ok(ReleaseOutcome::Released(released)),
                    // An earlier attempt released it and lost its lease before closing the job.
                    Err(StoreError::NotPending(RequestStatus::Released)) => {
                        Ok(ReleaseOutcome::AlreadyReleased)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if let ReleaseOutcome::Released(released) = &outcome {
            crate::stats::count_transition(released.status);
        }
        Ok(outcome)
    }
}

impl Store {
    /// Expires a pending request nobody decided in time (the worker's sweep): `expired` is
    /// terminal, the customer is emailed, and the number is free for a new request. Audited as
    /// the service itself.
    pub(crate) async fn expire_request(
        &self,
        request_id: RequestId,
    ) -> Result<ReleaseRequest, StoreError> {
        let command = Command::Act {
            request_id,
            action: Action::Expire,
        };
        self.run(&Actor::System, Scope::Any, command, None).await
    }
}

/// Asks the domain what this approval does under the environment's policy, given the approvals
/// recorded before it (read after the number's lock: every approval of the request takes it, so
/// these are all there are).
async fn decide(
    db: &impl ConnectionTrait,
    actor: &Actor,
    current: &ReleaseRequest,
) -> Result<ApprovalStep, StoreError> {
    let Actor::Staff { id, email } = actor else {
        return Err(StoreError::Invalid {
            field: "actor",
            message: "only a staff member approves a release".into(),
        });
    };
    let required = crate::environments::required_approvals(db, current.environment_id).await?;
    let earlier = approvals::approvals_of(db, current.id).await?;
    let given: Vec<StaffId> = earlier.iter().map(|a| a.staff_id).collect();
    let outcome = decide_approval(required, &given, id).map_err(|e| match e {
        releasedesk_domain::ApprovalError::SameReviewer => StoreError::SameReviewer,
    })?;
    Ok(ApprovalStep {
        reviewer: *id,
        reviewer_email: email.clone(),
        outcome,
        earlier,
    })
}

/// Records the approval (unless the policy counted an earlier one of the same reviewer) and
/// returns the audit event's detail: the note, and who has approved so far.
async fn record_approval(
    db: &impl ConnectionTrait,
    after: &ReleaseRequest,
    step: &ApprovalStep,
    note: Option<&ApprovalNote>,
    at: DateTime<Utc>,
) -> Result<serde_json::Value, StoreError> {
    let new_approval = match step.outcome {
        ApprovalOutcome::Recorded { .. } => true,
        ApprovalOutcome::Approved { new_approval } => new_approval,
    };
    let mut by: Vec<String> = step.earlier.iter().map(|a| a.staff_email.clone()).collect();
    if new_approval {
        approvals::insert(
            db,
            NewApproval {
                request_id: after.id,
                staff_id: step.reviewer,
                staff_email: &step.reviewer_email,
                note,
                at,
            },
        )
        .await?;
        by.push(step.reviewer_email.clone());
    }
    let mut detail = serde_json::json!({ "approved_by": by });
    if let ApprovalOutcome::Recorded { given, required } = step.outcome {
        detail["approvals"] = given.into();
        detail["required"] = required.get().into();
    }
    if let Some(n) = note {
        detail["note"] = n.as_str().into();
    }
    Ok(detail)
}

async fn load_request(
    db: &impl ConnectionTrait,
    id: RequestId,
    scope: Scope,
) -> Result<ReleaseRequest, StoreError> {
    let mut q = release_request::Entity::find_by_id(id.as_uuid());
    if let Some(env) = scope.environment() {
        q = q.filter(release_request::Column::EnvironmentId.eq(env.as_uuid()));
    }
    q.one(db)
        .await?
        .ok_or(StoreError::RequestNotFound)?
        .try_into()
}

async fn insert_request(
    db: &impl ConnectionTrait,
    number: &LockedNumber,
    reason: &Reason,
    at: DateTime<Utc>,
) -> Result<ReleaseRequest, StoreError> {
    let model = release_request::Model {
        id: RequestId::new().as_uuid(),
        environment_id: number.environment_id.as_uuid(),
        phone_number_id: number.id.as_uuid(),
        phone_number: number.e164.clone(),
        reason: reason.as_str().to_owned(),
        status: RequestStatus::INITIAL.as_str().into(),
        requested_at: at,
        resolved_at: None,
        released_at: None,
        review_note: None,
        reviewed_by: None,
    };
    release_request::Entity::insert(release_request::ActiveModel::from(model.clone()))
        .exec_without_returning(db)
        .await
        .map_err(|e| {
            // Two creates for one number raced past the check: the partial unique index on
            // open requests decides.
            if StoreError::is_unique_violation(&e) {
                StoreError::ReleaseAlreadyPending
            } else {
                e.into()
            }
        })?;
    ReleaseRequest::try_from(model)
}

/// The request as `action` leaves it: the new status and what the action records besides.
/// An approval's note goes to the customer; with four eyes and no note on the approval that
/// approves, the latest earlier approval's note does.
fn after_action(
    current: &ReleaseRequest,
    action: Action<'_>,
    next: RequestStatus,
    reviewer: Option<StaffId>,
    earlier_note: Option<String>,
    at: DateTime<Utc>,
) -> ReleaseRequest {
    let mut after = ReleaseRequest {
        status: next,
        ..current.clone()
    };
    match action {
        Action::Cancel | Action::Expire => {
            after.resolved_at = Some(at);
        }
        Action::Approve { note, .. } => {
            after.resolved_at = Some(at);
            after.review_note = note.map(|n| n.as_str().to_owned()).or(earlier_note);
            after.reviewed_by = reviewer;
        }
        Action::Reject { note } => {
            after.resolved_at = Some(at);
            after.review_note = Some(note.as_str().to_owned());
            after.reviewed_by = reviewer;
        }
        Action::Release { .. } => {
            after.released_at = Some(at);
        }
    }
    after
}

/// The guarded UPDATE: it writes `after` only while the request is still in `guard`, the
/// status the domain requires for the action.
async fn update_request(
    db: &impl ConnectionTrait,
    current: &ReleaseRequest,
    after: ReleaseRequest,
    guard: RequestStatus,
) -> Result<ReleaseRequest, StoreError> {
    use release_request::Column as C;
    let mut update =
        release_request::Entity::update_many().col_expr(C::Status, after.status.as_str().into());
    if after.resolved_at != current.resolved_at {
        update = update.col_expr(C::ResolvedAt, after.resolved_at.into());
    }
    if after.released_at != current.released_at {
        update = update.col_expr(C::ReleasedAt, after.released_at.into());
    }
    if after.review_note != current.review_note {
        update = update.col_expr(C::ReviewNote, after.review_note.clone().into());
    }
    if after.reviewed_by != current.reviewed_by {
        update = update.col_expr(C::ReviewedBy, after.reviewed_by.map(|s| s.as_uuid()).into());
    }
    let res = update
        .filter(C::Id.eq(current.id.as_uuid()))
        .filter(C::Status.eq(guard.as_str()))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        // Someone decided it between our read and our update: say what they decided.
        return Err(StoreError::NotPending(
            guards::current_status(db, current.id).await?,
        ));
    }
    Ok(after)
}

/// What releasing a number changes besides the request: the number is `released`, its
/// remaining agent assignments go, and the carrier's receipt is kept. Returns the audit
/// event's detail.
async fn release_number(
    db: &impl ConnectionTrait,
    number: &LockedNumber,
    receipt: &CarrierReceipt,
    at: DateTime<Utc>,
) -> Result<serde_json::Value, StoreError> {
    phone_number::Entity::update_many()
        .col_expr(
            phone_number::Column::Status,
            PhoneNumberStatus::Released.as_str().into(),
        )
        .col_expr(phone_number::Column::ReleasedAt, Some(at).into())
        .col_expr(phone_number::Column::UpdatedAt, at.into())
        .filter(phone_number::Column::Id.eq(number.id.as_uuid()))
        .exec(db)
        .await?;
    let removed = agent_phone_number::Entity::delete_many()
        .filter(agent_phone_number::Column::PhoneNumberId.eq(number.id.as_uuid()))
        .exec(db)
        .await?
        .rows_affected;
    carrier_release::Entity::insert(carrier_release::ActiveModel {
        id: Set(Uuid::now_v7()),
        phone_number_id: Set(number.id.as_uuid()),
        phone_number: Set(number.e164.clone()),
        carrier: Set(receipt.carrier.clone()),
        reference: Set(receipt.reference.clone()),
        released_at: Set(at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(serde_json::json!({
        "carrier": receipt.carrier,
        "reference": receipt.reference,
        "assignments_removed": removed,
    }))
}
