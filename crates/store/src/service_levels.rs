//! The service levels' sweep: a request pending past `expire_after` expires (through the
//! transition engine), and one pending past `remind_after` gets one reminder to the support
//! inbox. The worker runs it periodically ([`Store::sweep_service_levels`]), possibly in several
//! processes at once, so every step claims its work with a guarded write and whoever loses a
//! claim simply moves on:
//!
//! - an expiry is the engine's guarded `UPDATE … WHERE status = 'pending'` (behind the
//!   number's lock): of two sweeps, one expires the request and the other is told it is no
//!   longer pending;
//! - a reminder is claimed by inserting the request's row into `request_reminders` (primary
//!   key: the request) only while the request is pending, `ON CONFLICT DO NOTHING`; only the
//!   sweep whose insert wrote a row enqueues the email, in the same transaction.
//!
//! The clock is passed in, so tests can sweep "a month from now" without waiting for it.

use chrono::{DateTime, Utc};
use releasedesk_domain::{EmailAddress, RequestId, RequestStatus};
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::audit::Event;
use crate::entities::release_request;
use crate::notifications::enqueue_reminder;
use crate::{Actor, AuditAction, ReleaseRequest, Store, StoreError, now};

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Reminders this sweep enqueued (claimed by no other sweep).
    pub reminded: usize,
    /// Requests this sweep expired.
    pub expired: usize,
}

/// Requests looked at per query; a sweep goes on until none is left (or [`MAX_BATCHES`]).
const BATCH: u64 = 100;
/// A sweep stops after this many batches of each kind and leaves the rest to the next one, so a
/// backlog never keeps one sweep (and the worker's other work) busy for long.
const MAX_BATCHES: usize = 20;

/// A request the sweep could not handle: logged with its cause, left for the next sweep.
fn skipped(request: RequestId, what: &str, error: &StoreError) {
    let cause = match error {
        StoreError::Database(db) => format!("{error}: {db}"),
        other => other.to_string(),
    };
    tracing::warn!(request_id = %request, error = %cause, "the service-level sweep could not {what} a request; the next sweep tries again");
}

impl Store {
    /// Sweeps as if the time were `at`: expires what has waited past `expire_after`, then
    /// reminds the support inbox of what has waited past `remind_after` (a request that expires
    /// needs no reminder). A request that fails is logged and left for the next sweep; an error
    /// is returned only when the database cannot even list what is due.
    pub async fn sweep_service_levels(&self, at: DateTime<Utc>) -> Result<SweepReport, StoreError> {
        let expired = self.expire_overdue(at).await?;
        let reminded = self.remind_overdue(at).await?;
        Ok(SweepReport { reminded, expired })
    }

    async fn expire_overdue(&self, at: DateTime<Utc>) -> Result<usize, StoreError> {
        let Some(cutoff) = self.options().service_levels.expire_cutoff(at) else {
            return Ok(0);
        };
        let mut expired = 0;
        for _ in 0..MAX_BATCHES {
            let due = self
                .pending_before(
                    "SELECT * FROM release_requests WHERE status = $1 AND requested_at < $2 \
                     ORDER BY requested_at LIMIT $3",
                    cutoff,
                )
                .await?;
            let mut progressed = false;
            for request in &due {
                match self.expire_request(request.id).await {
                    Ok(_) => {
                        expired += 1;
                        progressed = true;
                    }
                    // Decided, cancelled or expired by someone else since we looked.
                    Err(StoreError::NotPending(_)) => progressed = true,
                    // One request that cannot be expired must not hold up the others.
                    Err(e) => skipped(request.id, "expire", &e),
                }
            }
            if (due.len() as u64) < BATCH || !progressed {
                break;
            }
        }
        Ok(expired)
    }

    async fn remind_overdue(&self, at: DateTime<Utc>) -> Result<usize, StoreError> {
        let levels = self.options().service_levels;
        let (Some(cutoff), Some(support)) =
            (levels.remind_cutoff(at), &self.options().support_email)
        else {
            return Ok(0);
        };
        let mut reminded = 0;
        for _ in 0..MAX_BATCHES {
            let due = self
                .pending_before(
                    "SELECT * FROM release_requests r WHERE r.status = $1 AND r.requested_at < $2 \
                     AND NOT EXISTS (SELECT 1 FROM request_reminders m WHERE m.request_id = r.id) \
                     ORDER BY r.requested_at LIMIT $3",
                    cutoff,
                )
                .await?;
            let mut progressed = false;
            for request in &due {
                match self.remind(request, support).await {
                    Ok(true) => {
                        reminded += 1;
                        progressed = true;
                    }
                    // Claimed by another sweep, or decided, since we looked.
                    Ok(false) => progressed = true,
                    Err(e) => skipped(request.id, "remind", &e),
                }
            }
            if (due.len() as u64) < BATCH || !progressed {
                break;
            }
        }
        Ok(reminded)
    }

    /// Pending requests made before `cutoff`, oldest first, one batch (`sql` takes the status,
    /// the cutoff and the limit).
    async fn pending_before(
        &self,
        sql: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<ReleaseRequest>, StoreError> {
        release_request::Entity::find()
            .from_raw_sql(self.stmt(
                sql,
                [
                    RequestStatus::Pending.as_str().into(),
                    cutoff.into(),
                    (BATCH as i64).into(),
                ],
            ))
            .all(self.reader())
            .await?
            .into_iter()
            .map(ReleaseRequest::try_from)
            .collect()
    }

    /// Claims and enqueues one reminder: `false` when another sweep claimed it first or the
    /// request is no longer pending.
    async fn remind(
        &self,
        request: &ReleaseRequest,
        support: &EmailAddress,
    ) -> Result<bool, StoreError> {
        let claim = self.stmt(
            "INSERT INTO request_reminders (request_id, reminded_at) \
             SELECT id, $2 FROM release_requests WHERE id = $1 AND status = $3 \
             ON CONFLICT (request_id) DO NOTHING",
            [
                request.id.as_uuid().into(),
                now().into(),
                RequestStatus::Pending.as_str().into(),
            ],
        );
        let claim = &claim;
        self.transact(|tx| async move {
            if tx.execute_raw(claim.clone()).await?.rows_affected() != 1 {
                return Ok(false);
            }
            enqueue_reminder(&tx, request, support).await?;
            Event {
                actor: &Actor::System,
                action: AuditAction::RequestReminded,
                environment_id: Some(request.environment_id),
                request_id: Some(request.id),
                phone_number_id: Some(request.phone_number_id),
                detail: Some(serde_json::json!({
                    "to": support.as_str(),
                    "pending_since": request.requested_at.to_rfc3339(),
                })),
            }
            .record(&tx)
            .await?;
            Ok(true)
        })
        .await
    }

    /// When the support inbox was reminded of the request, if it was.
    pub async fn reminded_at(
        &self,
        request: RequestId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        use sea_orm::QuerySelect;
        Ok(
            crate::entities::request_reminder::Entity::find_by_id(request.as_uuid())
                .select_only()
                .column(crate::entities::request_reminder::Column::RemindedAt)
                .into_tuple::<DateTime<Utc>>()
                .one(self.reader())
                .await?,
        )
    }
}
