//! The outbox worker: claims due rows with a lease, carries each out, records the outcome.
//! Every `sweep_interval` it also sweeps the service levels ([`Store::sweep_service_levels`]):
//! overdue requests get their one reminder, requests nobody decided in time expire. Several
//! workers may sweep at once; the store's claims make each reminder and each expiry happen once.
//!
//! Delivery is at least once. A row is marked `sent` only after the SMTP server accepted the
//! email (the webhook endpoint answered 2xx, or the carrier and the release transaction
//! succeeded); a worker that dies in between leaves a leased row that another worker takes once
//! the lease expires, and sends again with the same `Message-ID` (`webhook-id`). While a lease
//! holds, no other worker touches the row.
//!
//! Leases are short (15 s by default) and renewed every third of a lease while the worker
//! works on the row, so a slow SMTP server keeps its row while a crashed worker's row is
//! taken over within one lease. Rows are claimed one at a time: a worker never holds rows it
//! has not started, so a stopping worker has nothing to hand back and a crashed one delays
//! only the row it was working on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use rand::Rng;
use releasedesk_domain::RequestStatus;
use releasedesk_store::stats::{self, AttemptOutcome};
use releasedesk_store::{
    OutboxKind, OutboxRow, OutboxState, ReleaseOutcome, STOPPED_ENDPOINT_DELETED, Store,
    StoreError, SweepReport, WebhookTarget, now, webhook_message_id,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::NotifyConfig;
use crate::carrier::{Carrier, CarrierError, NumberRelease};
use crate::email::{EmailContext, EmailKind, build_message, message_id, render};
use crate::transport::{DeliveryError, Transport};
use crate::webhook::{Attempt, WebhookClient, webhook_retry_delay};

/// Rows claimed at once. One: a row claimed but not started would wait behind the row in hand
/// (however slow its SMTP server) while another worker could have taken it, and a crash would
/// delay it by a lease. Claiming one row costs one small transaction; measured against claims
/// of ten, draining the outbox is as fast (see `docs/faults.md`).
const CLAIM_AT_ONCE: u64 = 1;
/// Rows one pass ([`Worker::run_once`]) carries out at most.
const ROWS_PER_PASS: usize = 10;
/// One attempt at a row (an SMTP delivery, a carrier call) is cut off after this long; the
/// lease is renewed meanwhile.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The first retry comes about this long after a failure; each further one waits twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// No retry waits longer than this.
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);
/// How long the worker waits after the database failed to answer a claim, at most.
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(30);
/// How often the worker purges idempotency keys past their retention (and once at start).
/// Keys are kept 24 hours, so a few minutes late is nothing; several workers purging at once
/// is harmless.
const PURGE_EVERY: Duration = Duration::from_secs(5 * 60);

/// The outbox worker. Several may run against one database, in one process or many.
pub struct Worker {
    store: Store,
    config: NotifyConfig,
    carrier: Arc<dyn Carrier>,
    transport: Transport,
    webhooks: WebhookClient,
    from: Mailbox,
    /// The host part of every `Message-ID`: the public URL's host.
    message_host: String,
    /// The lease owner written on claimed rows: unique per worker (host, process, random).
    id: String,
}

/// Why one attempt at a row failed.
#[derive(Debug)]
struct Failure {
    message: String,
    permanent: bool,
    /// The HTTP status a webhook attempt got, if it got one.
    status_code: Option<u16>,
}

impl Failure {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
            status_code: None,
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
            status_code: None,
        }
    }
    /// A database that does not answer is worth waiting for; a request or environment that is
    /// gone, or a state the job cannot act on, is not.
    fn store(context: &str, e: StoreError) -> Self {
        let permanent = !matches!(
            e,
            StoreError::Database(_) | StoreError::StorageUnavailable { .. }
        );
        let message = format!("{context}: {}", e.chain());
        Self {
            message,
            permanent,
            status_code: None,
        }
    }
}

impl From<DeliveryError> for Failure {
    fn from(e: DeliveryError) -> Self {
        Self {
            permanent: e.is_permanent(),
            message: e.to_string(),
            status_code: None,
        }
    }
}

impl From<CarrierError> for Failure {
    fn from(e: CarrierError) -> Self {
        Self {
            permanent: e.is_permanent(),
            message: e.to_string(),
            status_code: None,
        }
    }
}

/// How a row ended when nothing failed.
enum Done {
    /// Carried out and recorded.
    Completed,
    /// Carried out, but another worker holds the row now (our lease expired): it may do it
    /// again. Only the log can tell.
    LeaseLost,
    /// The webhook endpoint answered 410 Gone: the delivery is `dead` and the endpoint
    /// disabled, as it asked.
    EndpointGone,
    /// Given up half-way: the lease could not be renewed in time and another worker holds the
    /// row now; it carries the row out (perhaps a second time, with the same Message-ID).
    Abandoned,
}

impl Worker {
    /// Checks the configuration (SMTP URL, sender address, public URL) and picks a worker id.
    pub fn new(
        store: Store,
        config: NotifyConfig,
        carrier: Arc<dyn Carrier>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.lease.is_zero(),
            "the outbox lease must be longer than zero"
        );
        let transport = Transport::new(config.smtp_url.as_deref(), &config.mail_dir)?;
        let webhooks = WebhookClient::new(config.webhooks, config.webhook_timeout)?;
        let from: Mailbox = config.mail_from.parse().map_err(|e| {
            anyhow::anyhow!("MAIL_FROM {:?} is not a mailbox: {e}", config.mail_from)
        })?;
        let message_host = url::Url::parse(&config.public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the public URL {:?} has no host (needed for Message-IDs)",
                    config.public_url
                )
            })?;
        Ok(Self {
            store,
            config,
            carrier,
            transport,
            webhooks,
            from,
            message_host,
            id: worker_id(),
        })
    }

    /// The lease owner this worker writes on the rows it claims.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host part of the `Message-ID`s this worker writes (`<{outbox_id}@{host}>`).
    pub fn message_host(&self) -> &str {
        &self.message_host
    }

    /// Carries out the rows due now (not those it enqueues itself, such as the email a release
    /// job writes), one by one, at most ten. Returns how many it attempted,
    /// whatever their outcome; failures are recorded on the rows, not returned.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        self.run_pass(None).await
    }

    /// Sweeps the service levels once, now: expires what waited too long and enqueues the
    /// overdue reminders (which the next batches then send).
    pub async fn sweep_once(&self) -> Result<SweepReport, StoreError> {
        self.store.sweep_service_levels(now()).await
    }

    async fn sweep(&self) {
        match self.sweep_once().await {
            Ok(report) if report != SweepReport::default() => info!(
                worker = %self.id, expired = report.expired, reminded = report.reminded,
                "service levels swept"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(worker = %self.id, error = %e, "could not sweep the service levels; trying again at the next sweep")
            }
        }
    }

    /// Runs until `shutdown` is cancelled. Then it claims nothing more and finishes the row in
    /// hand (it holds no other: rows are claimed one at a time; should it hold some, it hands
    /// them back at once, so another worker can take them without waiting for the lease).
    pub async fn run(self, shutdown: CancellationToken) {
        info!(worker = %self.id, transport = %self.transport.describe(), "outbox worker started");
        let mut claim_failures: u32 = 0;
        let mut next_purge = Instant::now();
        let mut next_sweep = Instant::now();
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_purge {
                self.purge_idempotency_keys().await;
                next_purge = Instant::now() + PURGE_EVERY;
            }
            if Instant::now() >= next_sweep {
                self.sweep().await;
                next_sweep = Instant::now() + self.config.sweep_interval;
            }
            let pause = match self.run_pass(Some(&shutdown)).await {
                // Rows were due: more may be; look again at once.
                Ok(n) if n > 0 => {
                    claim_failures = 0;
                    continue;
                }
                Ok(_) => {
                    claim_failures = 0;
                    self.config.poll_interval
                }
                Err(e) => {
                    claim_failures = claim_failures.saturating_add(1);
                    warn!(worker = %self.id, error = %e.chain(), "could not claim outbox rows");
                    self.config
                        .poll_interval
                        .saturating_mul(2u32.saturating_pow(claim_failures.min(10)))
                        .min(MAX_CLAIM_BACKOFF)
                }
            };
            let pause = pause.min(next_sweep.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        info!(worker = %self.id, "outbox worker stopped");
    }

    /// Removes the idempotency keys whose retention has passed. A failure is logged and
    /// tried again at the next purge.
    pub async fn purge_idempotency_keys(&self) {
        match self.store.purge_idempotency_keys().await {
            Ok(0) => {}
            Ok(purged) => info!(worker = %self.id, purged, "expired idempotency keys purged"),
            Err(e) => warn!(
                worker = %self.id, error = format!("{:#}", anyhow::Error::new(e)),
                "could not purge expired idempotency keys; trying again at the next purge"
            ),
        }
    }

    async fn run_pass(&self, shutdown: Option<&CancellationToken>) -> Result<usize, StoreError> {
        let stopping = || shutdown.is_some_and(CancellationToken::is_cancelled);
        let started = now();
        let mut attempted = 0;
        while attempted < ROWS_PER_PASS && !stopping() {
            let rows = match self
                .store
                .claim_outbox_due_by(&self.id, self.lease_until(), started, CLAIM_AT_ONCE)
                .await
            {
                Ok(rows) => rows,
                Err(e) if attempted == 0 => return Err(e),
                Err(e) => {
                    warn!(worker = %self.id, error = %e.chain(), "could not claim outbox rows");
                    break;
                }
            };
            if rows.is_empty() {
                break;
            }
            let mut rows = rows.into_iter();
            while let Some(row) = rows.next() {
                if stopping() {
                    self.hand_back(std::iter::once(row).chain(rows.by_ref()))
                        .await;
                    break;
                }
                attempted += 1;
                self.process(row).await;
            }
        }
        Ok(attempted)
    }

    fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        now() + chrono_duration(self.config.lease)
    }

    /// Rows claimed but not started go back at once, their attempt not counted.
    async fn hand_back(&self, rows: impl Iterator<Item = OutboxRow>) {
        for row in rows {
            if let Err(e) = self.store.outbox_release_lease(row.id, &self.id).await {
                warn!(outbox_id = %row.id, error = %e.chain(), "could not hand back an outbox row; it is retried when its lease expires");
            }
        }
    }

    /// Renews the row's lease every third of a lease; returns only when the lease is lost
    /// (another worker holds the row now). A renewal that fails (the database hiccups) is
    /// tried again at the next tick: the lease may well still be ours.
    async fn hold_lease(&self, row: &OutboxRow) {
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match self
                .store
                .outbox_renew_lease(row.id, &self.id, self.lease_until())
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    warn!(outbox_id = %row.id, error = %e.chain(), "could not renew an outbox lease; trying again");
                }
            }
        }
    }

    /// One row, one outcome, one log line.
    async fn process(&self, row: OutboxRow) {
        let work = async {
            match row.kind {
                OutboxKind::Email(kind) => self.deliver_email(&row, kind, ATTEMPT_TIMEOUT).await,
                OutboxKind::Webhook => self.deliver_webhook(&row, ATTEMPT_TIMEOUT).await,
                OutboxKind::ReleaseNumber => self.release_number(&row, ATTEMPT_TIMEOUT).await,
            }
        };
        let result = tokio::select! {
            result = work => result,
            () = self.hold_lease(&row) => Ok(Done::Abandoned),
        };
        let request_id = row.request_id.map(|id| id.to_string()).unwrap_or_default();
        let outcome = match result {
            Ok(Done::Completed) => {
                info!(
                    outbox_id = %row.id, kind = %row.kind, request_id, attempt = row.attempts,
                    "outbox row done"
                );
                AttemptOutcome::Completed
            }
            Ok(Done::LeaseLost) => {
                warn!(
                    outbox_id = %row.id, kind = %row.kind, request_id, attempt = row.attempts,
                    "outbox row carried out after its lease expired; another worker may repeat it"
                );
                AttemptOutcome::LeaseLost
            }
            Ok(Done::EndpointGone) => {
                warn!(
                    outbox_id = %row.id, kind = %row.kind, request_id, attempt = row.attempts,
                    webhook_endpoint_id = row.webhook_endpoint_id.map(|e| e.to_string()).unwrap_or_default(),
                    "webhook endpoint answered 410 Gone: it is disabled, its pending deliveries stopped"
                );
                AttemptOutcome::Dead
            }
            Ok(Done::Abandoned) => {
                warn!(
                    outbox_id = %row.id, kind = %row.kind, request_id, attempt = row.attempts,
                    "outbox lease lost mid-attempt (renewals failed); another worker carries the row out"
                );
                AttemptOutcome::LeaseLost
            }
            Err(failure) => self.record_failure(&row, &request_id, failure).await,
        };
        stats::count_attempt(row.kind, outcome);
    }

    async fn record_failure(
        &self,
        row: &OutboxRow,
        request_id: &str,
        failure: Failure,
    ) -> AttemptOutcome {
        let delay = match row.kind {
            OutboxKind::Email(_) | OutboxKind::ReleaseNumber => retry_delay(row.attempts),
            OutboxKind::Webhook => webhook_retry_delay(row.attempts),
        };
        let retry_at = now() + chrono_duration(delay);
        let (id, owner, error, permanent) = (row.id, &self.id, &failure.message, failure.permanent);
        let recorded = match row.kind {
            OutboxKind::Email(_) | OutboxKind::ReleaseNumber => {
                self.store
                    .outbox_mark_failed(id, owner, error, permanent, retry_at)
                    .await
            }
            OutboxKind::Webhook => {
                self.store
                    .webhook_attempt_failed(
                        id,
                        owner,
                        failure.status_code,
                        error,
                        permanent,
                        retry_at,
                    )
                    .await
            }
        };
        let (id, kind, attempt, error) = (row.id, row.kind, row.attempts, failure.message.as_str());
        let outcome = match &recorded {
            Ok(Some(OutboxState::Dead)) => AttemptOutcome::Dead,
            Ok(Some(_)) => AttemptOutcome::Retry,
            Ok(None) => AttemptOutcome::LeaseLost,
            Err(_) => AttemptOutcome::Unrecorded,
        };
        match recorded {
            Ok(Some(OutboxState::Dead)) => error!(
                outbox_id = %id, %kind, request_id, attempt, error, permanent = failure.permanent,
                "outbox row failed for good: dead until retried from the console"
            ),
            Ok(Some(_)) => warn!(
                outbox_id = %id, %kind, request_id, attempt, error, retry_in_ms = delay.as_millis() as u64,
                "outbox row failed; will retry"
            ),
            Ok(None) => warn!(
                outbox_id = %id, %kind, request_id, attempt, error,
                "outbox row failed after its lease expired; another worker has it"
            ),
            Err(e) => error!(
                outbox_id = %id, %kind, request_id, attempt, error, record_error = %e.chain(),
                "outbox row failed and the failure could not be recorded; retried when the lease expires"
            ),
        }
        outcome
    }

    async fn deliver_email(
        &self,
        row: &OutboxRow,
        kind: EmailKind,
        deadline: Duration,
    ) -> Result<Done, Failure> {
        let recipient = row
            .recipient
            .as_deref()
            .ok_or_else(|| Failure::permanent("the outbox row has no recipient"))?;
        let to: Mailbox = recipient.parse().map_err(|e| {
            Failure::permanent(format!("recipient {recipient:?} is not a mailbox: {e}"))
        })?;
        let request_id = row
            .request_id
            .ok_or_else(|| Failure::permanent("the outbox row names no request"))?;
        let request = self
            .store
            .find_request(request_id)
            .await
            .map_err(|e| Failure::store("loading the request", e))?;
        let environment = self
            .store
            .get_environment(request.environment_id)
            .await
            .map_err(|e| Failure::store("loading the environment", e))?;
        let expires_at = self
            .store
            .options()
            .service_levels
            .expires_at(request.requested_at);
        let context = EmailContext::new(kind, &request, &environment, &self.config.public_url)
            .approved_by(&row.payload.approved_by)
            .expires_at(expires_at);
        let email =
            render(kind, &context).map_err(|e| Failure::permanent(format!("rendering: {e}")))?;
        let message = build_message(
            &email,
            &self.from,
            to,
            message_id(row.id, &self.message_host),
        )
        .map_err(|e| Failure::permanent(format!("building the message: {e}")))?;
        tokio::time::timeout(deadline, self.transport.send(row, kind, message))
            .await
            .map_err(|_| {
                Failure::transient(format!("no answer within {} ms", deadline.as_millis()))
            })??;
        self.mark_sent(row).await
    }

    /// The email is out: recording it matters, or it is sent again when the lease expires. A
    /// database hiccup gets a few quick retries.
    async fn mark_sent(&self, row: &OutboxRow) -> Result<Done, Failure> {
        let mut pause = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            match self.store.outbox_mark_sent(row.id, &self.id).await {
                Ok(true) => return Ok(Done::Completed),
                Ok(false) => return Ok(Done::LeaseLost),
                Err(e) if tries < 3 => {
                    tries += 1;
                    warn!(outbox_id = %row.id, error = %e.chain(), "could not mark an outbox row sent; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                }
                Err(e) => return Err(Failure::store("marking the row sent", e)),
            }
        }
    }

    /// One signed POST to the endpoint, as it is now (deleted, disabled or rotated since the
    /// row was written). The 2xx, the 410 and the failure are each recorded with the status.
    async fn deliver_webhook(&self, row: &OutboxRow, deadline: Duration) -> Result<Done, Failure> {
        let target = self
            .store
            .webhook_target(row.id)
            .await
            .map_err(|e| Failure::store("loading the webhook endpoint", e))?;
        let (url, body, secrets) = match target {
            WebhookTarget::Ready { url, body, secrets } => (url, body, secrets),
            WebhookTarget::Deleted => return Err(Failure::permanent(STOPPED_ENDPOINT_DELETED)),
            WebhookTarget::Disabled { reason } => {
                return Err(Failure::permanent(format!(
                    "not delivered: the webhook endpoint is disabled ({reason})"
                )));
            }
        };
        let msg_id = webhook_message_id(row.id);
        match self
            .webhooks
            .attempt(&url, &msg_id, &body, &secrets, deadline)
            .await
        {
            Attempt::Delivered(status) => {
                match self.store.webhook_delivered(row.id, &self.id, status).await {
                    Ok(true) => Ok(Done::Completed),
                    Ok(false) => Ok(Done::LeaseLost),
                    Err(e) => Err(Failure::store("marking the delivery delivered", e)),
                }
            }
            Attempt::Gone => match self.store.webhook_endpoint_gone(row.id, &self.id).await {
                Ok(true) => Ok(Done::EndpointGone),
                Ok(false) => Ok(Done::LeaseLost),
                Err(e) => Err(Failure::store("disabling the endpoint after 410 Gone", e)),
            },
            Attempt::Failed { status, error } => Err(Failure {
                message: error,
                permanent: false,
                status_code: status,
            }),
        }
    }

    async fn release_number(&self, row: &OutboxRow, deadline: Duration) -> Result<Done, Failure> {
        let request_id = row
            .request_id
            .ok_or_else(|| Failure::permanent("the release job names no request"))?;
        let request = self
            .store
            .find_request(request_id)
            .await
            .map_err(|e| Failure::store("loading the request", e))?;
        match request.status {
            RequestStatus::Approved => {}
            // An earlier attempt released it, then lost its lease before closing the job:
            // the carrier has nothing left to do.
            RequestStatus::Released => return self.mark_sent(row).await,
            other => {
                return Err(Failure::permanent(format!(
                    "the request is {other}, not approved"
                )));
            }
        }
        let order = NumberRelease {
            job_id: row.id,
            request_id,
            environment_id: request.environment_id,
            phone_number_id: request.phone_number_id,
            phone_number: request.phone_number.clone(),
        };
        let receipt = tokio::time::timeout(deadline, self.carrier.release(&order))
            .await
            .map_err(|_| {
                Failure::transient(format!(
                    "the carrier gave no answer within {} ms",
                    deadline.as_millis()
                ))
            })??;
        match self
            .store
            .complete_release(row.id, &self.id, request_id, &receipt)
            .await
        {
            Ok(ReleaseOutcome::Released(_) | ReleaseOutcome::AlreadyReleased) => {
                Ok(Done::Completed)
            }
            Ok(ReleaseOutcome::LeaseLost) => Ok(Done::LeaseLost),
            Err(e) => Err(Failure::store("recording the release", e)),
        }
    }
}

/// Exponential backoff with jitter: about 2 s after the first failed attempt, doubling with
/// each further one, never more than 15 minutes. The jitter (±25%) keeps rows that failed
/// together (a mail server outage) from all coming back in the same instant.
pub fn retry_delay(attempt: i32) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let base = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    let jitter = rand::rng().random_range(0.75..=1.25);
    base.mul_f64(jitter).min(MAX_RETRY)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `host-pid-random`: readable in the console's outbox page, unique even for two workers in
/// one process.
fn worker_id() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let random: u32 = rand::rng().random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_is_about_two_seconds() {
        for _ in 0..100 {
            let d = retry_delay(1);
            assert!(
                d >= Duration::from_millis(1500) && d <= Duration::from_millis(2500),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retries_double_up_to_fifteen_minutes() {
        for _ in 0..100 {
            let d = retry_delay(4);
            assert!(
                d >= Duration::from_secs(12) && d <= Duration::from_secs(20),
                "{d:?}"
            );
        }
        for attempt in [10, 12, 50, 100, i32::MAX] {
            let d = retry_delay(attempt);
            assert!(d <= MAX_RETRY, "{attempt}: {d:?}");
            assert!(d >= MAX_RETRY.mul_f64(0.75), "{attempt}: {d:?}");
        }
        assert!(retry_delay(0) <= Duration::from_millis(2500));
    }

    #[test]
    fn worker_ids_are_unique() {
        assert_ne!(worker_id(), worker_id());
        assert!(worker_id().contains(&format!("-{}-", std::process::id())));
    }
}
