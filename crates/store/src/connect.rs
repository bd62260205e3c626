use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use releasedesk_domain::{EmailAddress, ServiceLevels, WebhookPolicy};
use sea_orm::sqlx;
use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, ExecResult, QueryResult, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};

use crate::health::Health;
use crate::{Migrator, MigratorTrait, StorageFault, StoreError};

mod group_commit;
mod lanes;

use group_commit::GroupCommit;

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Settings that change what the use cases write, not how they connect.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// When set, every new request also enqueues an email to this support inbox.
    pub support_email: Option<EmailAddress>,
    /// PostgreSQL pool size (default 20). SQLite ignores it: see [`Store::connect`].
    pub max_connections: Option<u32>,
    /// When a pending request is overdue (a reminder to the support inbox) and when it expires.
    pub service_levels: ServiceLevels,
    /// Which webhook endpoint URLs are accepted (`http://`, non-public addresses).
    pub webhooks: WebhookPolicy,
}

/// The database, and every use case on it. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Where transactions that write run.
    write: DatabaseConnection,
    /// Where plain reads run. The same pool as `write` on PostgreSQL.
    read: Reader,
    backend: Backend,
    options: Arc<StoreOptions>,
    pub(crate) health: Arc<Health>,
    /// Identities of API tokens, for the writes that check their token again themselves.
    tokens: Arc<crate::tokens::TokenCache>,
    /// SQLite's batches of writes (see [`group_commit`]); unused on PostgreSQL.
    group: Arc<GroupCommit>,
    /// PostgreSQL's writer lanes for single autocommitted statements (see [`lanes`]).
    lanes: Option<Arc<lanes::Lanes>>,
}

const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SQLITE_READERS: u32 = 4;
/// SQLite's page cache per connection, in KiB (SQLite's own default, written down so that the
/// memory a connection may hold is a decision, not an accident).
const SQLITE_CACHE_KIB: u32 = 2048;
/// Prepared statements kept per SQLite connection (sqlx keeps 100). The store runs a few dozen
/// distinct statements; `IN (…)` lists of every length would otherwise fill the cache with
/// one-off statements, each holding SQLite memory.
const STATEMENT_CACHE: usize = 64;
const POSTGRES_DEFAULT_POOL: u32 = 20;
/// A pooled connection idle this long is pinged before it is handed out (one that was busy a
/// moment ago is not: a ping on every checkout cost a round trip per pool use, two of the ten
/// round trips of `POST request-release` on PostgreSQL; see `bench/README.md`). After a
/// connection was found broken, every connection idle since then is pinged too: see
/// [`crate::health`].
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);
/// The readiness check's write probe is given this long before the check answers without it
/// (the probe finishes in the background and its outcome counts for the next check).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The PostgreSQL advisory lock `migrate` holds: one instance migrates at a time.
/// (The ASCII of `reldmigr`; fixed forever: instances of every version must agree on it.)
const MIGRATION_LOCK: i64 = 0x7265_6c64_6d69_6772;

/// What a pool hook returns: keep the connection (`true`) or close it.
type HookFuture<'c> =
    std::pin::Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// Is this connection still inside a transaction as it goes back to the pool? Then a COMMIT
/// or ROLLBACK failed on it, and the driver's idea of its state may be wrong: sqlx-sqlite
/// lowers its transaction depth only when COMMIT/ROLLBACK succeed, so after SQLite rolled a
/// transaction back by itself (a full disk) the connection would turn every later BEGIN into a
/// SAVEPOINT inside a transaction that is never committed. Such a connection is closed
/// (closing rolls back whatever is open) instead of being reused.
fn retire_if_in_transaction<C: sqlx::Connection>(
    conn: &mut C,
    _: PoolConnectionMetadata,
) -> HookFuture<'_> {
    let keep = !conn.is_in_transaction();
    if !keep {
        tracing::warn!(
            "closing a database connection left inside a transaction by a failed COMMIT or ROLLBACK"
        );
    }
    Box::pin(std::future::ready(Ok(keep)))
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    ///
    /// SQLite runs in WAL mode with `synchronous=FULL` (approvals are irreversible: a commit must
    /// survive a power cut), foreign keys on, and a busy timeout for other processes sharing the
    /// file. SQLite allows one writer at a time, so the store keeps **one** writing connection
    /// (writes queue in the pool instead of spinning on `SQLITE_BUSY`) and begins its write
    /// transactions `IMMEDIATE` (so a transaction that reads before it writes cannot fail to
    /// upgrade its lock when another *process* writes); reads go to a separate pool of
    /// readers, which WAL lets run beside the writer. Writes that arrive together share one
    /// transaction and one COMMIT on that connection (group commit: see [`Store::transact`]).
    ///
    /// PostgreSQL gets one pool (default 20 connections) for everything; four fifths of it may
    /// be held by the writer lanes of single autocommitted statements (see [`lanes`]).
    ///
    /// On both, a connection that goes back to its pool still inside a transaction is closed,
    /// and connections idle since a connection was found broken are pinged before use.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid {
                field: "DATABASE_URL",
                message: "must start with sqlite: or postgres://".into(),
            });
        };
        let health = Arc::new(Health::new());
        let mut lanes = None;
        let (write, read) = match backend {
            Backend::Sqlite => {
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let write =
                    while_busy(|| Database::connect(sqlite_options(url, 1, &health))).await?;
                // An in-memory database exists once per connection: one pool must do.
                let read = if in_memory {
                    write.clone()
                } else {
                    while_busy(|| Database::connect(sqlite_options(url, SQLITE_READERS, &health)))
                        .await?
                };
                (write, read)
            }
            Backend::Postgres => {
                let pool_size = options.max_connections.unwrap_or(POSTGRES_DEFAULT_POOL);
                let mut opts = ConnectOptions::new(url);
                opts.max_connections(pool_size)
                    .min_connections(1)
                    .connect_timeout(Duration::from_secs(5))
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
                    .sqlx_logging(false)
                    .map_sqlx_postgres_before_acquire(ping_if_idle_since_a_loss(&health))
                    .map_sqlx_postgres_pool_opts(|o| o.after_release(retire_if_in_transaction));
                let db = Database::connect(opts).await?;
                lanes = Some(lanes::Lanes::start(
                    db.get_postgres_connection_pool().clone(),
                    pool_size,
                    health.clone(),
                ));
                (db.clone(), db)
            }
        };
        Ok(Self {
            write,
            read: Reader {
                db: read,
                health: health.clone(),
            },
            backend,
            options: Arc::new(options),
            health,
            tokens: Arc::new(crate::tokens::TokenCache::new()),
            group: Arc::default(),
            lanes,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn token_cache(&self) -> &crate::tokens::TokenCache {
        &self.tokens
    }

    /// Applies every pending migration, one instance at a time: any number of instances may
    /// start together on one database, fresh or behind, and all come up.
    ///
    /// PostgreSQL: a session-level advisory lock, held on a connection of its own while the
    /// migrations run (each in its own transaction, as the migration crate decides), released
    /// when they are done or when the session ends (a crashed instance cannot keep it).
    /// SQLite: all pending migrations in one `EXCLUSIVE` transaction; another process waits for
    /// it (the busy timeout) and then finds nothing left to do.
    ///
    /// Returns the names of the migrations this call applied, read under the same lock (reading
    /// them outside it would itself race: the migration crate creates its table on first read).
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let applied = match self.backend {
            Backend::Sqlite => {
                while_busy(|| async {
                    let tx = self
                        .write
                        .begin_with_options(TransactionOptions {
                            sqlite_transaction_mode: Some(SqliteTransactionMode::Exclusive),
                            ..Default::default()
                        })
                        .await?;
                    let pending = pending_names(&tx).await?;
                    Migrator::up(&tx, None).await?;
                    tx.commit().await?;
                    Ok(pending)
                })
                .await?
            }
            Backend::Postgres => {
                let pool = self.write.get_postgres_connection_pool();
                let mut lock = pool.acquire().await.map_err(sqlx_err)?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *lock)
                    .await
                    .map_err(sqlx_err)?;
                let migrated = async {
                    let pending = pending_names(&self.write).await?;
                    Migrator::up(&self.write, None).await?;
                    Ok::<_, DbErr>(pending)
                }
                .await;
                let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *lock)
                    .await;
                if unlocked.is_err() {
                    // The lock must not outlive this call: without a session, it cannot.
                    lock.close_on_drop();
                }
                migrated?
            }
        };
        Ok(applied)
    }

    /// Does the database answer? (`/livez`-grade: reads only.)
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read.db.ping().await?;
        Ok(())
    }

    /// Can the service do its work: does the database answer, and does it take writes?
    ///
    /// Reads are checked every time (a ping). Writes are judged by the last write's outcome:
    /// a write that failed for a storage reason makes the store not ready until a write
    /// succeeds again. To notice recovery while no requests come in (a load balancer sends
    /// none to an instance that is not ready), and to notice a fault while idle, the check
    /// writes a tiny probe — at most every second while faulty, and only after 10 s without a
    /// successful write otherwise, so a busy service is never probed.
    pub async fn readiness(&self) -> Result<(), StoreError> {
        self.ping().await?;
        if self.health.start_probe() {
            let store = self.clone();
            let probe = tokio::spawn(async move {
                let outcome = store.write_probe().await;
                store.health.probe_finished();
                outcome
            });
            match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                Ok(Ok(Ok(()))) | Err(_) => {}
                Ok(Ok(Err(e))) if e.storage_fault().is_some() => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e.chain(), "readiness write probe failed");
                }
                Ok(Err(join)) => tracing::warn!(error = %join, "readiness write probe panicked"),
            }
        }
        match self.health.write_fault() {
            Some(fault) => Err(fault),
            None => Ok(()),
        }
    }

    /// The smallest write that must reach the disk, leaving no trace: SQLite rewrites its
    /// `user_version` header field with the value it has (a committed page: it fails on a full
    /// disk or a read-only file); PostgreSQL assigns a transaction id (a commit record: it
    /// fails on a standby).
    async fn write_probe(&self) -> Result<(), StoreError> {
        let backend = self.backend;
        self.transact(|tx| async move {
            match backend {
                Backend::Sqlite => {
                    let version: i64 = tx
                        .query_one_raw(Statement::from_string(
                            DbBackend::Sqlite,
                            "PRAGMA user_version",
                        ))
                        .await?
                        .ok_or_else(|| DbErr::RecordNotFound("PRAGMA user_version".into()))?
                        .try_get_by_index(0)?;
                    tx.execute_unprepared(&format!("PRAGMA user_version = {version}"))
                        .await?;
                }
                Backend::Postgres => {
                    tx.execute_unprepared("SELECT txid_current()").await?;
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn close(self) {
        let _ = self.write.close_by_ref().await;
        let _ = self.read.db.close_by_ref().await;
    }

    /// Runs `body` in one write transaction: committed when it returns `Ok`, rolled back when it
    /// returns `Err`. **The way the store writes** (the one exception is PostgreSQL's
    /// one-statement create, [`Store::autocommit_one`], which keeps the same rules for a single
    /// autocommitted statement), so that how a transaction begins, fails, is retried and commits
    /// is decided here, once:
    ///
    /// - `Ok` means committed: the service may acknowledge the write.
    /// - A failed COMMIT, and any error inside the transaction, rolls back; a connection left
    ///   inside a transaction is closed when it goes back to the pool (see
    ///   [`retire_if_in_transaction`]), never reused.
    /// - A transaction that failed on a broken connection *before* its COMMIT was sent has
    ///   changed nothing: it runs once more, from the start, on another connection. A COMMIT
    ///   that fails on a broken connection is never retried (it may have been applied).
    /// - Storage faults come back as [`StoreError::StorageUnavailable`] and are remembered for
    ///   the readiness check; a success clears them.
    ///
    /// `body` is `Fn`, not `FnOnce`: it may run twice (above). It must therefore only act
    /// through `tx` (no side effects outside the database) and borrow, not move, what it
    /// captures (bind `let x = &x;` first).
    ///
    /// On SQLite the transaction is shared: the writes of requests that arrive together run in
    /// one transaction, each in a savepoint of its own, and are committed together (**group
    /// commit**, see [`group_commit`]). For a body nothing changes: its writes are kept or
    /// undone as a whole, it sees the writes committed before it (and those of the batch's
    /// earlier members, which commit with it or not at all), and `Ok` still means committed.
    /// On PostgreSQL every call is a transaction of its own.
    pub(crate) async fn transact<T, F, Fut>(&self, body: F) -> Result<T, StoreError>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut retried = false;
        loop {
            let attempt = match self.backend {
                Backend::Sqlite => self.group.run(|| self.begin(), &body).await,
                Backend::Postgres => self.attempt(&body).await,
            };
            let err = match attempt {
                Ok(value) => {
                    self.health.write_succeeded();
                    return Ok(value);
                }
                Err(Attempt::BeforeCommit(e)) => e,
                Err(Attempt::AtCommit(e)) => match StorageFault::of(&e) {
                    Some(StorageFault::ConnectionLost) => StoreError::StorageUnavailable {
                        fault: StorageFault::CommitUnconfirmed,
                        source: e,
                    },
                    _ => e.into(),
                },
            };
            self.settle_failure(
                err,
                &mut retried,
                "a transaction lost its connection before COMMIT; running it again on another connection",
            )?;
        }
    }

    /// What a failed write does next, the same for [`Store::transact`] and
    /// [`Store::autocommit_one`]: `Ok(())` runs it once more on another connection (a
    /// connection lost before anything could be applied, once), `Err` is the caller's answer.
    /// Either way a lost connection is remembered (idle connections are then pinged) and a
    /// storage fault that ends the write is recorded for the readiness check.
    fn settle_failure(
        &self,
        err: StoreError,
        retried: &mut bool,
        retrying: &'static str,
    ) -> Result<(), StoreError> {
        let Some(fault) = err.storage_fault() else {
            return Err(err);
        };
        if fault == StorageFault::ConnectionLost || fault == StorageFault::CommitUnconfirmed {
            self.health.connection_lost();
        }
        if fault.retry_on_fresh_connection() && !*retried {
            *retried = true;
            tracing::warn!(error = %err.chain(), "{retrying}");
            return Ok(());
        }
        if let StoreError::StorageUnavailable { source, .. } = &err {
            self.health.write_failed(fault, source);
        }
        Err(err)
    }

    /// Runs one statement on its own, in autocommit (PostgreSQL commits it as its own
    /// transaction before answering), with [`Store::transact`]'s bookkeeping: a success clears a
    /// recorded write fault, a storage fault is `StorageUnavailable` and recorded for the
    /// readiness check, and a lost connection is remembered so that idle connections are
    /// pinged. The statement is its own COMMIT, so only a failure to get a connection (nothing
    /// was sent) is tried once more; a connection lost once the statement was handed to the
    /// driver leaves the outcome unknown: [`StorageFault::CommitUnconfirmed`], never retried.
    /// (Borrowed: each try sends a copy, and a caller that settles an unknown outcome itself
    /// may send it again.)
    pub(crate) async fn autocommit_one(
        &self,
        stmt: &Statement,
    ) -> Result<Option<QueryResult>, StoreError> {
        let mut retried = false;
        loop {
            let sent = match &self.lanes {
                Some(lanes) => lanes.query_one(stmt.clone()).await,
                None => self.write.query_one_raw(stmt.clone()).await,
            };
            let source = match sent {
                Ok(row) => {
                    self.health.write_succeeded();
                    return Ok(row);
                }
                Err(e) => e,
            };
            let sent = !matches!(source, DbErr::ConnectionAcquire(_));
            let err = match StorageFault::of(&source) {
                Some(StorageFault::ConnectionLost) if sent => StoreError::StorageUnavailable {
                    fault: StorageFault::CommitUnconfirmed,
                    source,
                },
                _ => source.into(),
            };
            self.settle_failure(
                err,
                &mut retried,
                "a statement found no live connection before it was sent; sending it on another connection",
            )?;
        }
    }

    /// One try of [`Store::transact`] in a transaction of its own (PostgreSQL).
    async fn attempt<T, F, Fut>(&self, body: &F) -> Result<T, Attempt>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let tx = Arc::new(
            self.begin()
                .await
                .map_err(|e| Attempt::BeforeCommit(e.into()))?,
        );
        let result = body(Tx(tx.clone())).await;
        let Some(tx) = Arc::into_inner(tx) else {
            // The body kept a handle: dropping the last one rolls back.
            return Err(Attempt::BeforeCommit(StoreError::Database(DbErr::Custom(
                "a transaction handle outlived its transaction body".into(),
            ))));
        };
        match result {
            // A failed commit drops the transaction still open: sea-orm queues a ROLLBACK, and
            // the pool retires the connection if that does not end the transaction.
            Ok(value) => {
                tx.commit().await.map_err(Attempt::AtCommit)?;
                crate::stats::count_commit(1);
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed transaction failed; its connection is closed");
                }
                Err(Attempt::BeforeCommit(e))
            }
        }
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite, a plain `BEGIN` (read committed) on
    /// PostgreSQL, where the use cases take the row locks they need.
    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self.backend {
            Backend::Sqlite => {
                self.write
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..Default::default()
                    })
                    .await
            }
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// SQLite's group commit so far: how many COMMITs carried how many writes (both 0 on
    /// PostgreSQL, where every write commits on its own).
    pub fn group_commit_stats(&self) -> crate::stats::GroupCommitStats {
        let (commits, writes) = self.group.stats();
        crate::stats::GroupCommitStats { commits, writes }
    }

    pub(crate) fn reader(&self) -> &Reader {
        &self.read
    }

    /// The two pools themselves (the writer's, the readers'; one and the same on PostgreSQL),
    /// for what looks at the pools rather than through them: pool statistics and the list of
    /// pending migrations. Never for writes: those go through [`Store::transact`].
    pub(crate) fn pools(&self) -> (&DatabaseConnection, &DatabaseConnection) {
        (&self.write, &self.read.db)
    }

    pub(crate) fn db_backend(&self) -> DbBackend {
        self.write.get_database_backend()
    }

    /// A hand-written statement. SQL is written with PostgreSQL's `$n` placeholders; SQLite gets
    /// the equivalent numbered `?n`.
    pub(crate) fn stmt(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = sea_orm::Value>,
    ) -> sea_orm::Statement {
        let sql = match self.backend {
            Backend::Postgres => sql.to_owned(),
            Backend::Sqlite => sql.replace('$', "?"),
        };
        sea_orm::Statement::from_sql_and_values(self.db_backend(), sql, values)
    }
}

/// How one try of a transaction failed: before its COMMIT was sent (nothing was written), or
/// at the COMMIT (on a broken connection, the outcome is unknown).
pub(crate) enum Attempt {
    BeforeCommit(StoreError),
    AtCommit(DbErr),
}

/// Runs `op` again while SQLite answers `SQLITE_BUSY`, for up to the busy timeout. SQLite's busy
/// handler does not cover everything: processes that open a fresh database file at the same
/// moment (switching it to WAL, recovering its WAL index) get `SQLITE_BUSY` at once.
/// The names of the migrations not yet applied, oldest first.
async fn pending_names<C: sea_orm::ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

async fn while_busy<T, F, Fut>(op: F) -> Result<T, DbErr>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        match op().await {
            Err(e)
                if StorageFault::of(&e) == Some(StorageFault::Busy)
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

fn sqlx_err(e: sqlx::Error) -> StoreError {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(e))).into()
}

/// The `before_acquire` hook: a connection idle since a connection was found broken is pinged
/// first (sea-orm's own hook already pinged it if it was idle for [`PING_IF_IDLE_FOR`]); a
/// failed ping closes it and the pool hands out another.
fn ping_if_idle_since_a_loss<C: sqlx::Connection>(
    health: &Arc<Health>,
) -> impl for<'c> Fn(&'c mut C, PoolConnectionMetadata) -> HookFuture<'c> + Send + Sync + 'static {
    let health = health.clone();
    move |conn, meta| {
        let suspect = health.idle_since_a_loss(meta.idle_for);
        Box::pin(async move {
            if suspect && meta.idle_for < PING_IF_IDLE_FOR {
                conn.ping().await?;
            }
            Ok(true)
        })
    }
}

fn sqlite_options(url: &str, max_connections: u32, health: &Arc<Health>) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .statement_cache_capacity(STATEMENT_CACHE)
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
        })
        .map_sqlx_sqlite_before_acquire(ping_if_idle_since_a_loss(health))
        .map_sqlx_sqlite_pool_opts(|o| o.after_release(retire_if_in_transaction));
    opts
}

/// Where plain reads run: the reading pool, with one more try on another connection when the
/// first one turns out to be broken (a read changes nothing, so trying again is always safe).
#[derive(Clone)]
pub(crate) struct Reader {
    db: DatabaseConnection,
    health: Arc<Health>,
}

impl Reader {
    async fn retry<T, F, Fut>(&self, run: F) -> Result<T, DbErr>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        match run().await {
            Err(e) if StorageFault::of(&e) == Some(StorageFault::ConnectionLost) => {
                self.health.connection_lost();
                tracing::warn!(error = %e, "a read lost its connection; reading again on another connection");
                run().await
            }
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }
    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.retry(|| self.db.execute_raw(stmt.clone())).await
    }
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.retry(|| self.db.execute_unprepared(sql)).await
    }
    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.retry(|| self.db.query_one_raw(stmt.clone())).await
    }
    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.retry(|| self.db.query_all_raw(stmt.clone())).await
    }
}

/// The open write transaction a [`Store::transact`] body runs in. It is a connection like any
/// other (`ConnectionTrait`), cheap to clone, and must not outlive the body.
#[derive(Clone)]
pub(crate) struct Tx(Arc<DatabaseTransaction>);

#[async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DbBackend {
        self.0.get_database_backend()
    }
    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.0.execute_raw(stmt).await
    }
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.0.execute_unprepared(sql).await
    }
    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.0.query_one_raw(stmt).await
    }
    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.0.query_all_raw(stmt).await
    }
}
