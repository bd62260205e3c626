use std::fmt;

use releasedesk_domain::{AgentId, RequestStatus};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, SqlErr};

/// An agent named in an error ("in use by …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRef {
    pub id: AgentId,
    pub name: String,
}

/// What a use case can answer besides success. The API and the console each map these to
/// their own responses in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("phone number not found")]
    PhoneNumberNotFound,
    #[error("release request not found")]
    RequestNotFound,
    #[error("agent not found")]
    AgentNotFound,
    #[error("environment not found")]
    EnvironmentNotFound,
    #[error("a release request for this phone number is already pending")]
    ReleaseAlreadyPending,
    #[error("a release request for this phone number is already approved")]
    ReleaseAlreadyApproved,
    #[error("the phone number is already released")]
    PhoneNumberReleased,
    #[error("the phone number is in use by active agents")]
    PhoneNumberInUse { agents: Vec<AgentRef> },
    #[error("the phone number has an open release request")]
    PhoneNumberReleasePending,
    /// Cancel, approve or reject of a request that is no longer pending.
    #[error("the release request is {0}")]
    NotPending(RequestStatus),
    #[error("the typed number does not match the request's number")]
    ConfirmationMismatch,
    /// A reviewer's second approval of one request: four eyes need a different reviewer.
    #[error(
        "you already approved this request; the next approval must come from a different reviewer"
    )]
    SameReviewer,
    #[error("staff account not found")]
    StaffNotFound,
    /// The change would leave no enabled admin to manage staff.
    #[error("this would leave no enabled admin account; make another account admin first")]
    LastAdmin,
    #[error("a phone number with this E.164 already exists in the environment")]
    DuplicatePhoneNumber,
    #[error("a staff account with this email already exists")]
    DuplicateStaff,
    #[error("webhook endpoint not found")]
    WebhookEndpointNotFound,
    /// The endpoint answered 410 Gone and was disabled: it receives nothing more.
    #[error("the webhook endpoint is disabled")]
    WebhookEndpointDisabled,
    #[error("no such outbox row, or it is not dead")]
    OutboxRowNotRetryable,
    /// The idempotency key a request claimed is no longer its own (its lock expired and
    /// another request took the key over): its effect must not be applied.
    #[error("the idempotency key is held by another request")]
    IdempotencyKeyTaken,
    /// The caller's API token was revoked (or its environment removed) after the API
    /// accepted it: the write re-checked it and refused. The API answers exactly as for an
    /// unknown token.
    #[error("the API token is not valid")]
    Unauthenticated,
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The database cannot take this write (or answer at all) right now, for a reason that
    /// passes by itself: a full disk, a read-only file, an I/O error, a lost connection, a
    /// failover. Nothing was changed — except for [`StorageFault::CommitUnconfirmed`], where
    /// the outcome is unknown. The caller should answer "try again later", never 2xx.
    #[error("the database is unavailable: {fault}")]
    StorageUnavailable {
        fault: StorageFault,
        #[source]
        source: DbErr,
    },
    #[error("database error")]
    Database(#[source] DbErr),
}

/// Every database error becomes a [`StoreError`] here, once: a fault of the storage (see
/// [`StorageFault::of`]) is `StorageUnavailable`, anything else `Database`.
impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match StorageFault::of(&err) {
            Some(fault) => StoreError::StorageUnavailable { fault, source: err },
            None => StoreError::Database(err),
        }
    }
}

impl StoreError {
    pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
        matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
    }

    /// The storage fault behind this error, if it is one.
    pub fn storage_fault(&self) -> Option<StorageFault> {
        match self {
            StoreError::StorageUnavailable { fault, .. } => Some(*fault),
            _ => None,
        }
    }

    /// This error and every cause under it, `: `-separated, for logs (`database error:
    /// Execution Error: error returned from database: (code: 13) database or disk is full`).
    pub fn chain(&self) -> ErrorChain<'_> {
        ErrorChain(self)
    }
}

/// Displays an error with its whole `source()` chain. See [`StoreError::chain`].
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Seconds a client is asked to wait (`Retry-After`) after a [`StoreError::StorageUnavailable`].
pub const STORAGE_RETRY_AFTER_SECS: u32 = 5;

/// Why the database cannot take writes now. Each passes by itself (space is freed, the file
/// system is remounted, the database restarts or fails over); none is a bug in the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageFault {
    /// The disk (or the database's own size limit) is full.
    Full,
    /// The database file or its file system is read-only, or PostgreSQL is a standby.
    ReadOnly,
    /// The operating system reported an I/O error, or the file cannot be opened.
    Io,
    /// Another process has held the database's write lock for longer than the busy timeout.
    Busy,
    /// The connection broke (a restarted or failed-over PostgreSQL, a terminated backend).
    ConnectionLost,
    /// No connection could be had in time, or the server refuses new sessions.
    Unreachable,
    /// The connection broke while COMMIT was under way: the change may or may not have been
    /// saved (PostgreSQL only; a SQLite COMMIT that fails has not saved anything).
    CommitUnconfirmed,
}

impl StorageFault {
    /// Classifies a database error. `None` for everything that is not a storage fault
    /// (constraint violations, syntax, decoding, …).
    pub fn of(err: &DbErr) -> Option<Self> {
        match err {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => Some(Self::Unreachable),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
                Some(Self::ConnectionLost)
            }
            _ => Self::of_sqlx(driver_error(err)?),
        }
    }

    pub(crate) fn of_sqlx(err: &sea_orm::sqlx::Error) -> Option<Self> {
        use sea_orm::sqlx::Error as E;
        match err {
            E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => Some(Self::ConnectionLost),
            E::PoolTimedOut => Some(Self::Unreachable),
            E::PoolClosed => Some(Self::ConnectionLost),
            E::Database(db) => {
                let code = db.code()?;
                if db
                    .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                    .is_some()
                {
                    Self::of_sqlite_code(code.parse().ok()?)
                } else {
                    Self::of_sqlstate(&code)
                }
            }
            _ => None,
        }
    }

    /// SQLite result codes (extended codes keep the primary code in their low byte).
    fn of_sqlite_code(code: i32) -> Option<Self> {
        match code & 0xff {
            13 => Some(Self::Full),    // SQLITE_FULL
            8 => Some(Self::ReadOnly), // SQLITE_READONLY
            10 => Some(Self::Io),      // SQLITE_IOERR
            14 => Some(Self::Io),      // SQLITE_CANTOPEN
            5 | 6 => Some(Self::Busy), // SQLITE_BUSY, SQLITE_LOCKED
            _ => None,
        }
    }

    /// PostgreSQL SQLSTATEs.
    fn of_sqlstate(code: &str) -> Option<Self> {
        match code {
            // connection_exception; admin_shutdown (pg_terminate_backend), crash_shutdown
            c if c.starts_with("08") => Some(Self::ConnectionLost),
            "57P01" | "57P02" => Some(Self::ConnectionLost),
            // cannot_connect_now (starting up), too_many_connections
            "57P03" | "53300" => Some(Self::Unreachable),
            // disk_full
            "53100" => Some(Self::Full),
            // read_only_sql_transaction: a standby after a failover, or a read-only server
            "25006" => Some(Self::ReadOnly),
            // io_error
            "58030" => Some(Self::Io),
            _ => None,
        }
    }

    /// Did the PostgreSQL server end the session a failed statement was sent on: its backend
    /// was terminated (`pg_terminate_backend`, a shutdown, a crash of another backend) or the
    /// socket was closed from the server's side?
    ///
    /// Then the statement's outcome is already decided, and a lookup on another connection
    /// tells which: a backend holds off termination while it commits (so a commit it started
    /// is complete, and visible to new snapshots, before it reports its end), and it aborts an
    /// open transaction before its socket closes (so what is not visible now never will be).
    /// A connection that failed on the client's side (a timeout, a TLS or protocol error)
    /// proves nothing of the kind: its backend may still be running the statement.
    pub(crate) fn server_ended_session(err: &DbErr) -> bool {
        use sea_orm::sqlx::Error as E;
        use std::io::ErrorKind as K;
        let Some(sqlx) = driver_error(err) else {
            return false;
        };
        match sqlx {
            E::Io(io) => matches!(
                io.kind(),
                K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
            ),
            E::Database(db) => {
                db.try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                    .is_some()
                    // admin_shutdown, crash_shutdown
                    && matches!(db.code().as_deref(), Some("57P01" | "57P02"))
            }
            _ => false,
        }
    }

    /// Is a transaction that failed this way before its COMMIT worth one more try on a fresh
    /// connection? Only a broken connection: the next one from the pool is likely fine.
    pub(crate) fn retry_on_fresh_connection(self) -> bool {
        match self {
            Self::ConnectionLost => true,
            Self::Full
            | Self::ReadOnly
            | Self::Io
            | Self::Busy
            | Self::Unreachable
            | Self::CommitUnconfirmed => false,
        }
    }
}

/// The driver's own error inside a failed connection, statement or query, if it is one.
fn driver_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

impl fmt::Display for StorageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "the disk or the database is full",
            Self::ReadOnly => "the database is read-only",
            Self::Io => "the database reported an I/O error",
            Self::Busy => "another process holds the database's write lock",
            Self::ConnectionLost => "the connection to the database was lost",
            Self::Unreachable => "the database does not answer",
            Self::CommitUnconfirmed => {
                "the connection was lost during COMMIT; the change may not have been saved"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_full_read_only_io_and_busy_are_storage_faults() {
        use StorageFault as F;
        assert_eq!(StorageFault::of_sqlite_code(13), Some(F::Full));
        assert_eq!(StorageFault::of_sqlite_code(8), Some(F::ReadOnly));
        // Extended codes: SQLITE_READONLY_DBMOVED, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC.
        assert_eq!(
            StorageFault::of_sqlite_code(8 | (4 << 8)),
            Some(F::ReadOnly)
        );
        assert_eq!(StorageFault::of_sqlite_code(10 | (3 << 8)), Some(F::Io));
        assert_eq!(StorageFault::of_sqlite_code(10 | (4 << 8)), Some(F::Io));
        assert_eq!(StorageFault::of_sqlite_code(14), Some(F::Io));
        assert_eq!(StorageFault::of_sqlite_code(5), Some(F::Busy));
        // A constraint violation or a syntax error is the caller's, not the storage's.
        assert_eq!(StorageFault::of_sqlite_code(19 | (8 << 8)), None);
        assert_eq!(StorageFault::of_sqlite_code(1), None);
    }

    #[test]
    fn postgres_failover_termination_and_full_disk_are_storage_faults() {
        use StorageFault as F;
        assert_eq!(StorageFault::of_sqlstate("57P01"), Some(F::ConnectionLost));
        assert_eq!(StorageFault::of_sqlstate("08006"), Some(F::ConnectionLost));
        assert_eq!(StorageFault::of_sqlstate("57P03"), Some(F::Unreachable));
        assert_eq!(StorageFault::of_sqlstate("25006"), Some(F::ReadOnly));
        assert_eq!(StorageFault::of_sqlstate("53100"), Some(F::Full));
        assert_eq!(StorageFault::of_sqlstate("23505"), None);
        assert_eq!(StorageFault::of_sqlstate("40001"), None);
    }

    #[test]
    fn only_a_session_the_server_ended_has_a_decided_outcome() {
        use std::io::{Error as IoError, ErrorKind as K};
        let io = |kind: K| {
            DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
                sea_orm::sqlx::Error::Io(IoError::from(kind)),
            )))
        };
        for kind in [
            K::UnexpectedEof,
            K::ConnectionReset,
            K::BrokenPipe,
            K::ConnectionAborted,
        ] {
            assert!(StorageFault::server_ended_session(&io(kind)), "{kind:?}");
        }
        // A client-side failure leaves the backend possibly still at work.
        for kind in [K::TimedOut, K::Other, K::WouldBlock] {
            assert!(!StorageFault::server_ended_session(&io(kind)), "{kind:?}");
        }
        let protocol = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::Protocol("unexpected message".into()),
        )));
        assert!(!StorageFault::server_ended_session(&protocol));
        assert!(!StorageFault::server_ended_session(
            &DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)
        ));
    }

    #[test]
    fn only_a_lost_connection_is_worth_a_second_try() {
        use StorageFault as F;
        let retried: Vec<F> = [
            F::Full,
            F::ReadOnly,
            F::Io,
            F::Busy,
            F::ConnectionLost,
            F::Unreachable,
            F::CommitUnconfirmed,
        ]
        .into_iter()
        .filter(|f| f.retry_on_fresh_connection())
        .collect();
        assert_eq!(retried, [F::ConnectionLost]);
    }

    #[test]
    fn a_database_error_becomes_storage_unavailable_only_for_a_storage_fault() {
        let lost = DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed);
        assert_eq!(
            StoreError::from(lost).storage_fault(),
            Some(StorageFault::ConnectionLost)
        );
        let other = DbErr::RecordNotFound("x".into());
        assert!(matches!(StoreError::from(other), StoreError::Database(_)));
    }

    #[test]
    fn the_chain_shows_every_cause() {
        let e = StoreError::from(DbErr::Custom("disk on fire".into()));
        assert_eq!(
            e.chain().to_string(),
            "database error: Custom Error: disk on fire"
        );
    }
}
