//! What a change to a release request causes besides itself: the outbox rows, written in the
//! change's own transaction and carried out afterwards by the worker. The rules, in one place:
//!
//! | event     | email                                   | job                 |
//! |-----------|-----------------------------------------|---------------------|
//! | created   | the support inbox, when one is set      |                     |
//! | cancelled | none (the customer did it)              |                     |
//! | approved  | the environment's notification address  | release the number  |
//! | rejected  | the environment's notification address  |                     |
//! | released  | the environment's notification address  |                     |
//! | expired   | the environment's notification address  |                     |
//!
//! And one that is not a change of status: a request pending longer than the service level's
//! `remind_after` is *overdue*, and the support inbox gets one reminder ([`Store::remind`]'s
//! [`enqueue_reminder`]), when one is set.
//!
//! The "approved" email names every reviewer whose approval approved the request (two with
//! four eyes), read from the approvals the same transaction recorded.
//!
//! Every event also goes, as `release_request.<event>`, to each enabled webhook endpoint of the
//! environment subscribed to it, with the request as the API shows it after the change.
//!
//! The environment's emails are enqueued even when its address no longer parses: the row then
//! goes `dead` ("no recipient") where staff see it, instead of the customer silently hearing
//! nothing.

use releasedesk_domain::{EmailAddress, RequestEvent, WebhookEvent};

use crate::approvals::approvals_of;
use crate::environments::notify_email;
use crate::outbox::{EmailKind, OutboxKind, OutboxPayload, enqueue};
use crate::webhooks::enqueue_webhooks;
use crate::{Actor, ReleaseRequest, Store, StoreError};

/// Who an event's email is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recipient {
    /// The support inbox (`StoreOptions::support_email`); no email when it is not set.
    Support,
    /// The environment's notification address.
    Environment,
}

/// The email an event sends, and to whom.
pub(crate) const fn email_for(event: RequestEvent) -> Option<(EmailKind, Recipient)> {
    match event {
        RequestEvent::Created => Some((EmailKind::RequestCreated, Recipient::Support)),
        RequestEvent::Cancelled => None,
        RequestEvent::Approved => Some((EmailKind::RequestApproved, Recipient::Environment)),
        RequestEvent::Rejected => Some((EmailKind::RequestRejected, Recipient::Environment)),
        RequestEvent::Released => Some((EmailKind::RequestReleased, Recipient::Environment)),
        RequestEvent::Expired => Some((EmailKind::RequestExpired, Recipient::Environment)),
    }
}

/// Whether an event starts the release job.
pub(crate) const fn starts_release(event: RequestEvent) -> bool {
    match event {
        RequestEvent::Approved => true,
        RequestEvent::Created
        | RequestEvent::Cancelled
        | RequestEvent::Rejected
        | RequestEvent::Released
        | RequestEvent::Expired => false,
    }
}

/// The outbox rows an event causes, decided without the database: the email (its kind and
/// its recipient, resolved to an address when the rules name the support inbox), whether the
/// release job starts, and the webhook event each subscribed endpoint gets. Both ways of
/// writing a change — [`Store::enqueue_notifications`] and the one-statement create
/// ([`crate::one_statement`]) — write exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxPlan {
    pub email: Option<(EmailKind, PlannedRecipient)>,
    pub release_job: bool,
    pub webhook: WebhookEvent,
    pub payload: OutboxPayload,
}

/// Where a planned email goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlannedRecipient {
    /// A known address (the support inbox).
    Address(EmailAddress),
    /// The environment's notification address, read in the change's transaction.
    Environment,
}

impl Store {
    /// The outbox rows `event` causes when `actor` makes the change, except the "approved"
    /// email's list of reviewers (read from the approvals in the transaction).
    pub(crate) fn outbox_plan(&self, event: RequestEvent, actor: &Actor) -> OutboxPlan {
        let email = email_for(event).and_then(|(kind, to)| match to {
            Recipient::Support => self
                .options()
                .support_email
                .clone()
                .map(|a| (kind, PlannedRecipient::Address(a))),
            Recipient::Environment => Some((kind, PlannedRecipient::Environment)),
        });
        OutboxPlan {
            email,
            release_job: starts_release(event),
            webhook: WebhookEvent::for_request(event),
            payload: OutboxPayload {
                decided_by: match actor {
                    Actor::Staff { email, .. } => Some(email.clone()),
                    Actor::Customer { .. } | Actor::System | Actor::Cli => None,
                },
                approved_by: Vec::new(),
            },
        }
    }

    /// Writes the outbox rows `event` causes for `request` (as it is after the change), inside
    /// the change's transaction.
    pub(crate) async fn enqueue_notifications(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        event: RequestEvent,
        request: &ReleaseRequest,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let mut plan = self.outbox_plan(event, actor);
        if event == RequestEvent::Approved {
            plan.payload.approved_by = approvals_of(db, request.id)
                .await?
                .into_iter()
                .map(|a| a.staff_name)
                .collect();
        }
        let (env, id) = (request.environment_id, request.id);
        if let Some((kind, to)) = &plan.email {
            let recipient = match to {
                PlannedRecipient::Address(a) => Some(a.clone()),
                PlannedRecipient::Environment => notify_email(db, env).await?,
            };
            enqueue(
                db,
                OutboxKind::Email(*kind),
                env,
                id,
                recipient.as_ref(),
                &plan.payload,
            )
            .await?;
        }
        if plan.release_job {
            enqueue(db, OutboxKind::ReleaseNumber, env, id, None, &plan.payload).await?;
        }
        enqueue_webhooks(db, env, plan.webhook, Some(id), &request.to_object()).await?;
        Ok(())
    }
}

/// The overdue reminder of `request` to the support inbox, inside the caller's transaction.
pub(crate) async fn enqueue_reminder(
    db: &impl sea_orm::ConnectionTrait,
    request: &ReleaseRequest,
    support: &EmailAddress,
) -> Result<(), StoreError> {
    enqueue(
        db,
        OutboxKind::Email(EmailKind::RequestOverdue),
        request.environment_id,
        request.id,
        Some(support),
        &OutboxPayload::default(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_the_customer_did_not_make_is_emailed_to_them() {
        for &event in RequestEvent::ALL {
            let to_customer = matches!(email_for(event), Some((_, Recipient::Environment)));
            let decided_by_others = matches!(
                event,
                RequestEvent::Approved
                    | RequestEvent::Rejected
                    | RequestEvent::Released
                    | RequestEvent::Expired
            );
            assert_eq!(to_customer, decided_by_others, "{event}");
        }
    }

    #[test]
    fn only_an_approval_starts_the_release() {
        let starting: Vec<_> = RequestEvent::ALL
            .iter()
            .filter(|e| starts_release(**e))
            .collect();
        assert_eq!(starting, [&RequestEvent::Approved]);
    }
}
