use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use releasedesk_domain::{EmailAddress, ServiceLevels, WebhookPolicy};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, ExecResult, QueryResult, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};

use crate::{Migrator, MigratorTrait, StoreError};

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
    /// PostgreSQL pool size (default 16). SQLite ignores it: see [`Store::connect`].
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
    read: DatabaseConnection,
    backend: Backend,
    options: Arc<StoreOptions>,
}

const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SQLITE_READERS: u32 = 4;
const POSTGRES_DEFAULT_POOL: u32 = 16;
/// A pooled connection idle this long is pinged before it is handed out (one that was busy a
/// moment ago is not: a ping on every checkout cost a round trip per pool use, two of the ten
/// round trips of `POST request-release` on PostgreSQL; see `bench/README.md`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    ///
    /// SQLite runs in WAL mode with `synchronous=FULL` (approvals are irreversible: a commit must
    /// survive a power cut), foreign keys on, and a busy timeout for other processes sharing the
    /// file. SQLite allows one writer at a time, so the store keeps **one** writing connection
    /// (writes queue in the pool instead of spinning on `SQLITE_BUSY`) and begins its write
    /// transactions `IMMEDIATE` (so a transaction that reads before it writes cannot fail to
    /// upgrade its lock when another *process* writes); reads go to a separate pool of
    /// readers, which WAL lets run beside the writer.
    ///
    /// PostgreSQL gets one pool (default 16 connections) for everything.
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
        let (write, read) = match backend {
            Backend::Sqlite => {
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let write = Database::connect(sqlite_options(url, 1)).await?;
                // An in-memory database exists once per connection: one pool must do.
                let read = if in_memory {
                    write.clone()
                } else {
                    Database::connect(sqlite_options(url, SQLITE_READERS)).await?
                };
                (write, read)
            }
            Backend::Postgres => {
                let mut opts = ConnectOptions::new(url);
                opts.max_connections(options.max_connections.unwrap_or(POSTGRES_DEFAULT_POOL))
                    .min_connections(1)
                    .connect_timeout(Duration::from_secs(5))
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
                    .sqlx_logging(false);
                let db = Database::connect(opts).await?;
                (db.clone(), db)
            }
        };
        Ok(Self {
            write,
            read,
            backend,
            options: Arc::new(options),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.write, None).await?;
        Ok(())
    }

    /// Does the database answer? (`/readyz`)
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read.ping().await?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.write.close_by_ref().await;
        let _ = self.read.close_by_ref().await;
    }

    /// Runs `body` in one write transaction: committed when it returns `Ok`, rolled back when it
    /// returns `Err`. **The only way the store writes**, so that how a transaction begins, fails,
    /// is retried and commits is decided here, once.
    ///
    /// `body` is `Fn`, not `FnOnce`: a transaction that never reached its COMMIT may be run
    /// again from the start. It must therefore only act through `tx` (no side effects outside
    /// the database) and borrow, not move, what it captures (bind `let x = &x;` first).
    pub(crate) async fn transact<T, F, Fut>(&self, body: F) -> Result<T, StoreError>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let tx = Arc::new(self.begin().await?);
        let result = body(Tx(tx.clone())).await;
        let Some(tx) = Arc::into_inner(tx) else {
            // The body kept a handle: dropping the last one rolls back.
            return Err(StoreError::Database(DbErr::Custom(
                "a transaction handle outlived its transaction body".into(),
            )));
        };
        match result {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed transaction failed");
                }
                Err(e)
            }
        }
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite, a plain `BEGIN` (read committed) on
    /// PostgreSQL, where the use cases take the row locks they need.
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
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

    pub(crate) fn reader(&self) -> &DatabaseConnection {
        &self.read
    }

    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.write
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

fn sqlite_options(url: &str, max_connections: u32) -> ConnectOptions {
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
        });
    opts
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
