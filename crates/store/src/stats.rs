//! What an operator measures: the counters the use cases and the worker bump as they go, and
//! the read-only snapshot of the queue and the outbox that `/metrics` takes at each scrape.
//!
//! The counters go through the `metrics` facade: without an installed recorder (no
//! `RELEASEDESK_METRICS_BIND`, or in tests) they cost nothing. Metric names live here and in
//! the server's `metrics` module only; `docs/operations.md` lists them all.
//!
//! Every snapshot query is an index range, never a scan of the whole table: open requests
//! walk `(status, requested_at)`, outbox rows `(state, next_attempt_at)`. Only `pending` and
//! `dead` outbox rows are counted: `sent` rows grow forever, and what was sent is counted by
//! [`count_attempt`] instead.

use chrono::{DateTime, Utc};
use releasedesk_domain::RequestStatus;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::{Backend, OutboxKind, OutboxState, Store, StoreError};

/// Transitions committed, by the status the request entered (`pending` when it is created).
pub const TRANSITIONS_TOTAL: &str = "releasedesk_transitions_total";
/// Outbox attempts, by kind and outcome.
pub const OUTBOX_ATTEMPTS_TOTAL: &str = "releasedesk_outbox_attempts_total";
/// COMMITs of write transactions (on SQLite one per batch of writes: group commit).
pub const DB_COMMITS_TOTAL: &str = "releasedesk_db_commits_total";
/// Writes carried per COMMIT.
pub const DB_WRITES_PER_COMMIT: &str = "releasedesk_db_writes_per_commit";
/// The buckets of [`DB_WRITES_PER_COMMIT`] (a batch holds at most 64 writes).
pub const WRITES_PER_COMMIT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Describes the counters above to the installed recorder (their `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(
        TRANSITIONS_TOTAL,
        "Release-request transitions committed by this process, by the status entered (pending = created)."
    );
    metrics::describe_counter!(
        OUTBOX_ATTEMPTS_TOTAL,
        "Outbox rows attempted by this process's worker, by kind and outcome (completed, retry, dead, lease_lost, unrecorded)."
    );
    metrics::describe_counter!(
        DB_COMMITS_TOTAL,
        "Write transactions committed by this process (SQLite: one per batch of writes)."
    );
    metrics::describe_histogram!(
        DB_WRITES_PER_COMMIT,
        "Writes kept by each COMMIT (above 1 only on SQLite, where writes arriving together share a COMMIT)."
    );
}

/// Counts one successful COMMIT that kept `writes` writes.
pub(crate) fn count_commit(writes: usize) {
    metrics::counter!(DB_COMMITS_TOTAL).increment(1);
    metrics::histogram!(DB_WRITES_PER_COMMIT).record(writes as f64);
}

/// SQLite's group commit as one process saw it ([`Store::group_commit_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCommitStats {
    /// Batches committed.
    pub commits: u64,
    /// Writes those batches kept.
    pub writes: u64,
}

/// Counts one committed transition into `status`. Called once the transaction committed, never
/// before: a rolled-back transition is not counted.
pub fn count_transition(status: RequestStatus) {
    metrics::counter!(TRANSITIONS_TOTAL, "status" => status.as_str()).increment(1);
}

/// How one attempt at an outbox row ended, as the worker recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Carried out and marked `sent`.
    Completed,
    /// Failed; due again later.
    Retry,
    /// Failed for good (permanent error or last attempt): `dead` until retried in the console.
    Dead,
    /// The lease expired before the outcome was recorded: another worker has the row now.
    LeaseLost,
    /// Failed, and the failure could not be recorded (the database did not answer): the row is
    /// tried again when its lease expires.
    Unrecorded,
}

impl AttemptOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::LeaseLost => "lease_lost",
            AttemptOutcome::Unrecorded => "unrecorded",
        }
    }
}

/// Counts one attempt at an outbox row of `kind`.
pub fn count_attempt(kind: OutboxKind, outcome: AttemptOutcome) {
    metrics::counter!(
        OUTBOX_ATTEMPTS_TOTAL,
        "kind" => kind.as_str(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

/// The queue and the outbox as one scrape sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Open requests (`pending`, `approved`), every open status listed, zero included.
    pub open_requests: Vec<(RequestStatus, u64)>,
    /// When the oldest pending request was made.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Outbox rows by kind, for the states [`SNAPSHOT_OUTBOX_STATES`]; every known kind
    /// listed, zero included, so a gauge falls back to 0 when its rows are gone.
    pub outbox: Vec<(OutboxKind, OutboxState, u64)>,
    /// The earliest `next_attempt_at` of a pending outbox row (in the past: the worker is late).
    pub oldest_due: Option<DateTime<Utc>>,
}

/// The outbox states a snapshot counts.
pub const SNAPSHOT_OUTBOX_STATES: [OutboxState; 2] = [OutboxState::Pending, OutboxState::Dead];

/// The open statuses a snapshot counts.
pub const OPEN_STATUSES: [RequestStatus; 2] = [RequestStatus::Pending, RequestStatus::Approved];

/// One connection pool's use at this moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// `writer` and `readers` on SQLite (one writing connection, a pool of readers); `shared` on
    /// PostgreSQL and for an in-memory SQLite database.
    pub pool: &'static str,
    /// Connections open now, idle or in use.
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// The queue and the outbox for `/metrics`: four index-range queries on the read pool.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let db = self.reader();
        let open_rows = db
            .query_all_raw(self.stmt(
                "SELECT status, COUNT(*) FROM release_requests \
                 WHERE status IN ($1, $2) GROUP BY status",
                OPEN_STATUSES.map(|s| s.as_str().into()),
            ))
            .await?;
        let mut open_requests: Vec<(RequestStatus, u64)> =
            OPEN_STATUSES.iter().map(|&s| (s, 0)).collect();
        for row in open_rows {
            let status: String = row.try_get_by_index(0)?;
            let count: i64 = row.try_get_by_index(1)?;
            if let Some(entry) = open_requests.iter_mut().find(|(s, _)| s.as_str() == status) {
                entry.1 = count.max(0) as u64;
            }
        }

        let oldest_pending = min_time(
            self,
            db,
            "SELECT MIN(requested_at) FROM release_requests WHERE status = $1",
            RequestStatus::Pending.as_str(),
        )
        .await?;

        let outbox_rows = db
            .query_all_raw(self.stmt(
                "SELECT kind, state, COUNT(*) FROM outbox WHERE state IN ($1, $2) \
                 GROUP BY kind, state",
                SNAPSHOT_OUTBOX_STATES.map(|s| s.as_str().into()),
            ))
            .await?;
        let mut outbox: Vec<(OutboxKind, OutboxState, u64)> = OutboxKind::ALL
            .iter()
            .flat_map(|&k| SNAPSHOT_OUTBOX_STATES.iter().map(move |&s| (k, s, 0)))
            .collect();
        for row in outbox_rows {
            let kind: String = row.try_get_by_index(0)?;
            let state: String = row.try_get_by_index(1)?;
            let count: i64 = row.try_get_by_index(2)?;
            match outbox
                .iter_mut()
                .find(|(k, s, _)| k.as_str() == kind && s.as_str() == state)
            {
                Some(entry) => entry.2 = count.max(0) as u64,
                None => tracing::warn!(
                    kind,
                    state,
                    "an outbox row of a kind this build does not know"
                ),
            }
        }

        let oldest_due = min_time(
            self,
            db,
            "SELECT MIN(next_attempt_at) FROM outbox WHERE state = $1",
            OutboxState::Pending.as_str(),
        )
        .await?;

        Ok(Snapshot {
            open_requests,
            oldest_pending,
            outbox,
            oldest_due,
        })
    }

    /// How full the connection pools are, without touching the database.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        let (writer, reader) = self.pools();
        let shared = same_pool(writer, reader);
        match self.backend() {
            Backend::Postgres => vec![postgres_use("shared", writer)],
            Backend::Sqlite if shared => vec![sqlite_use("shared", writer)],
            Backend::Sqlite => vec![sqlite_use("writer", writer), sqlite_use("readers", reader)],
        }
    }
}

async fn min_time(
    store: &Store,
    db: &impl ConnectionTrait,
    sql: &str,
    value: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = db.query_one_raw(store.stmt(sql, [value.into()])).await?;
    Ok(match row {
        Some(row) => row.try_get_by_index::<Option<DateTime<Utc>>>(0)?,
        None => None,
    })
}

fn same_pool(a: &DatabaseConnection, b: &DatabaseConnection) -> bool {
    match (a.get_database_backend(), b.get_database_backend()) {
        (sea_orm::DbBackend::Sqlite, sea_orm::DbBackend::Sqlite) => {
            let (a, b) = (
                a.get_sqlite_connection_pool(),
                b.get_sqlite_connection_pool(),
            );
            // Two handles on one pool share its options: the same address means the same pool.
            std::ptr::eq(a.options(), b.options())
        }
        _ => true,
    }
}

fn sqlite_use(pool: &'static str, db: &DatabaseConnection) -> PoolUse {
    let p = db.get_sqlite_connection_pool();
    PoolUse {
        pool,
        open: p.size(),
        idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
        max: p.options().get_max_connections(),
    }
}

fn postgres_use(pool: &'static str, db: &DatabaseConnection) -> PoolUse {
    let p = db.get_postgres_connection_pool();
    PoolUse {
        pool,
        open: p.size(),
        idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
        max: p.options().get_max_connections(),
    }
}
