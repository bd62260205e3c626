//! Writer lanes: how [`Store::autocommit_one`](crate::Store) sends its statement on PostgreSQL.
//!
//! sqlx tests every pooled connection as it goes back to its pool: dropping the connection
//! spawns a task that sends `Sync` and waits for `ReadyForQuery`. For a write that is a single
//! autocommitted statement (the create, see `one_statement`) that is a second round trip per
//! request: a wake-up of the PostgreSQL backend, two more socket writes and reads in the
//! service, a spawned task. Measured with `bench/run` on this machine's two cores it was about a
//! tenth of the CPU of a create, service and PostgreSQL together.
//!
//! So these statements are sent by a few **lanes**: tasks that take jobs from one shared queue,
//! check a connection out of the pool when work arrives and **keep it while work keeps
//! coming**, and give it back after [`KEEP_FOR`] without a job. Under load a lane's connection
//! goes back to the pool (and is pinged) once per burst instead of once per statement; idle,
//! the lanes hold nothing.
//!
//! - **How many**: four fifths of the pool, and never all of it, so that reads and
//!   transactions always have the rest, however busy the creates are.
//! - **A caller that goes away** (its client hung up) before a lane took its job: the job is
//!   skipped, nothing was sent. Once the statement was sent, the lane reads its outcome to the
//!   end whatever happens to the caller, so a connection is never left mid-protocol (the
//!   statement commits or not by itself, as an autocommitted statement does).
//! - **After a lost connection** (a restart or failover of PostgreSQL kills every
//!   connection): a held connection that has been idle since a connection was found broken is
//!   pinged before its next statement and replaced if the ping fails — the rule the pool's
//!   `before_acquire` hook applies to the connections it hands out (see [`crate::health`]).
//! - **Faults**: a failure to get a connection is `ConnectionAcquire` (nothing was sent, the
//!   caller may try again); a statement that failed on a broken connection (I/O, TLS,
//!   protocol, or the server ending the session) closes that connection instead of keeping
//!   it, and its error is the driver's, so the caller sees a connection lost after sending
//!   (`CommitUnconfirmed`). A lane that vanished with a job is reported the same way: the
//!   statement may have run. A held connection that the server closed while it sat idle (a
//!   terminated backend) is therefore found by the next statement: the create settles that
//!   case by looking its request up (see `one_statement`), and sends its call again only when
//!   the server's end of the session proves it never committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Connection, PgPool, Postgres};
use sea_orm::{ConnAcquireErr, DbErr, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::oneshot;

use crate::StorageFault;
use crate::health::Health;

/// A lane gives its connection back to the pool after this long without a job.
const KEEP_FOR: Duration = Duration::from_millis(250);

/// Jobs waiting for a lane, at most (a sender beyond that waits for room).
const QUEUE: usize = 1024;

type Reply = Result<Option<QueryResult>, DbErr>;

struct Job {
    stmt: Statement,
    reply: oneshot::Sender<Reply>,
}

/// The lanes of one pool. Dropping the last handle ends them (each gives its connection back).
pub(crate) struct Lanes {
    jobs: flume::Sender<Job>,
}

impl Lanes {
    /// Starts the lanes for `pool`, whose size is `pool_size` (see [`lane_count`]).
    pub(crate) fn start(pool: PgPool, pool_size: u32, health: Arc<Health>) -> Arc<Self> {
        let (jobs, queue) = flume::bounded(QUEUE);
        for _ in 0..lane_count(pool_size) {
            tokio::spawn(lane(pool.clone(), queue.clone(), health.clone()));
        }
        Arc::new(Self { jobs })
    }

    /// Sends `stmt` on a lane's connection, in autocommit; its first row, if any.
    pub(crate) async fn query_one(&self, stmt: Statement) -> Reply {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send_async(Job { stmt, reply })
            .await
            .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed))?;
        outcome.await.unwrap_or_else(|_| {
            // The lane ended with the job taken: the statement may have been sent.
            Err(query_err(sqlx::Error::WorkerCrashed))
        })
    }
}

fn lane_count(pool_size: u32) -> usize {
    let pool = pool_size as usize;
    (pool * 4 / 5).min(pool.saturating_sub(1)).max(1)
}

async fn lane(pool: PgPool, queue: flume::Receiver<Job>, health: Arc<Health>) {
    let mut held: Option<PoolConnection<Postgres>> = None;
    let mut last_used = Instant::now();
    loop {
        let job = if held.is_some() {
            match tokio::time::timeout(KEEP_FOR, queue.recv_async()).await {
                Ok(Ok(job)) => job,
                Ok(Err(_)) => return,
                Err(_) => {
                    // Idle: the connection goes back to the pool.
                    held = None;
                    continue;
                }
            }
        } else {
            match queue.recv_async().await {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.reply.is_closed() {
            continue;
        }
        if let Some(conn) = held.as_mut()
            && health.idle_since_a_loss(last_used.elapsed())
            && conn.ping().await.is_err()
            && let Some(mut conn) = held.take()
        {
            conn.close_on_drop();
        }
        let conn = match held.as_mut() {
            Some(conn) => conn,
            None => match pool.acquire().await {
                Ok(conn) => held.insert(conn),
                Err(e) => {
                    let _ = job.reply.send(Err(acquire_err(e)));
                    continue;
                }
            },
        };
        let Job { stmt, reply } = job;
        let values = stmt
            .values
            .unwrap_or(sea_orm::sea_query::Values(Vec::new()));
        let sent = sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql), SqlxValues(values))
            .fetch_optional(&mut **conn)
            .await;
        let outcome = match sent {
            Ok(row) => Ok(row.map(QueryResult::from)),
            Err(e) => {
                if broken(&e)
                    && let Some(mut conn) = held.take()
                {
                    conn.close_on_drop();
                }
                Err(query_err(e))
            }
        };
        last_used = Instant::now();
        let _ = reply.send(outcome);
    }
}

/// Is the connection itself broken (rather than the statement refused)? I/O, TLS and protocol
/// failures, and the server ending the session (a terminated backend reports 57P01 and then
/// closes its socket).
fn broken(e: &sqlx::Error) -> bool {
    StorageFault::of_sqlx(e) == Some(StorageFault::ConnectionLost)
}

/// As sea-orm reports a failure to get a pooled connection.
fn acquire_err(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))),
    }
}

/// As sea-orm reports a failed query.
fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_fifths_of_the_pool_and_always_one_left_for_the_rest() {
        assert_eq!(lane_count(20), 16);
        assert_eq!(lane_count(8), 6);
        assert_eq!(lane_count(3), 2);
        assert_eq!(lane_count(2), 1);
        assert_eq!(lane_count(1), 1);
    }

    #[test]
    fn a_broken_connection_is_told_from_a_refused_statement() {
        assert!(broken(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(broken(&sqlx::Error::Protocol("unexpected message".into())));
        assert!(!broken(&sqlx::Error::RowNotFound));
        assert!(!broken(&sqlx::Error::PoolTimedOut));
    }
}
