//! Group commit: how [`Store::transact`](crate::Store) writes on SQLite.
//!
//! SQLite takes one writer at a time, and each COMMIT waits for the disk (`synchronous=FULL`):
//! with one commit per request, the fsync, not the SQL, is the limit. So the writes of requests
//! that arrive together share one transaction and one COMMIT:
//!
//! - A **batch** is one open transaction on the single writing connection (`BEGIN IMMEDIATE`),
//!   kept in a slot behind an async mutex. A write takes the mutex, opens the batch if none is
//!   open, and runs its body inside a `SAVEPOINT` of its own (the body's [`Tx`] is the batch's
//!   transaction). A body that returns `Ok` is `RELEASE`d into the batch; one that returns `Err`
//!   is rolled back to its savepoint, so its effects are gone and the others' are untouched.
//!   The batch's first write runs without a savepoint: nobody else is in the transaction while
//!   it runs (the others queue for the mutex), so if it fails the whole transaction is rolled
//!   back instead, and its refusal, resting on committed data only, is answered at once. A
//!   lone write therefore costs what a transaction of its own would.
//! - Then, if other writes are queued for the mutex (and the batch has fewer than
//!   [`MAX_MEMBERS`]), the write leaves the batch open for them and lets the next one in;
//!   otherwise the batch is committed. Batches form by themselves while the previous COMMIT
//!   waits for the disk; a write that arrives alone is committed alone, without waiting.
//! - **No write is answered before its COMMIT is durable.** Every member — including one whose
//!   body failed, since its refusal may rest on another member's write — waits for the batch's
//!   outcome. If the COMMIT fails, or the batch had to be rolled back (a storage fault inside any
//!   body, a savepoint that could not be closed), every member not answered yet gets the error:
//!   unacknowledged, never lost. A storage fault inside a body must end the whole batch: SQLite
//!   may already have rolled the transaction back by itself (a full disk, an I/O error).
//! - **Cancellation.** A member's future can be dropped at any await (a client disconnects). The
//!   COMMIT and a rollback of the whole batch run in spawned tasks, so they finish whoever waits
//!   for them. A member dropped while it holds the mutex hands the batch to a spawned task that
//!   rolls its open savepoint back (or, if that fails, the whole batch) and then commits or
//!   leaves the batch open as above. A member dropped while queued nudges the batch, so that a
//!   batch left open for it is committed. Nothing depends on a member that may disappear.
//!
//! Everything else runs in the calling request's task: bodies borrow what they need from the
//! request, so no writer task (and no boxing of bodies) is needed. The cost of waiting for the
//! batch is bounded by the bodies queued before the COMMIT (at most [`MAX_MEMBERS`]), each a few
//! statements on an in-process database.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, RuntimeErr, sqlx};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::{Attempt, Tx};
use crate::StoreError;

/// Writes per batch at most: a longer batch would keep its first members waiting for the bodies
/// of the later ones.
pub(crate) const MAX_MEMBERS: usize = 64;

/// Each member's savepoint. One is open at a time: a member closes its own before the next
/// one opens another.
const SAVEPOINT: &str = "releasedesk_write";

/// The writing connection's batches. Shared by every clone of the store.
#[derive(Default)]
pub(crate) struct GroupCommit {
    slot: Arc<Mutex<Option<Batch>>>,
    /// Writes queued for `slot`, not yet inside it.
    waiting: AtomicUsize,
    /// COMMITs that succeeded, and the writes they carried.
    commits: AtomicU64,
    committed_writes: AtomicU64,
}

type Slot = OwnedMutexGuard<Option<Batch>>;

/// One open transaction and the writes inside it.
struct Batch {
    tx: Arc<DatabaseTransaction>,
    /// Writes that ran in it, and those whose body succeeded (kept by the COMMIT).
    members: usize,
    kept: usize,
    /// What must be undone if the member running now is dropped.
    undo: Undo,
    outcome: watch::Sender<Option<Outcome>>,
}

/// The running member's writes, if it is dropped before it closed them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// No member is running (or the running one has nothing open yet).
    Nothing,
    /// Its savepoint may be open: set before `SAVEPOINT`, cleared once it is closed.
    Savepoint,
    /// It is the batch's first member, which runs without a savepoint: its writes are the
    /// whole transaction.
    Batch,
}

/// How a batch ended.
#[derive(Clone)]
enum Outcome {
    Committed,
    /// Rolled back before any COMMIT was sent: nothing of it was written.
    RolledBack(DbErr),
    /// The COMMIT failed.
    CommitFailed(DbErr),
}

impl GroupCommit {
    /// `(commits, writes committed)` so far.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.committed_writes.load(Ordering::Relaxed),
        )
    }

    /// Runs `body` as one write of a batch; `begin` opens a batch when none is open. Returns
    /// once the batch's outcome is known (see the module documentation).
    pub(crate) async fn run<T, B, BFut, F, Fut>(
        self: &Arc<Self>,
        begin: B,
        body: &F,
    ) -> Result<T, Attempt>
    where
        B: FnOnce() -> BFut,
        BFut: Future<Output = Result<DatabaseTransaction, DbErr>>,
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let queued = Queued::new(self);
        let slot = self.slot.clone().lock_owned().await;
        queued.admitted();
        let mut turn = Turn {
            group: self.clone(),
            slot: Some(slot),
        };
        let slot = turn.slot.as_mut().expect("the turn holds the slot");
        if slot.is_none() {
            match begin().await {
                Ok(tx) => {
                    **slot = Some(Batch {
                        tx: Arc::new(tx),
                        members: 0,
                        kept: 0,
                        undo: Undo::Nothing,
                        outcome: watch::channel(None).0,
                    });
                }
                Err(e) => {
                    drop(turn.slot.take());
                    return Err(Attempt::BeforeCommit(e.into()));
                }
            }
        }
        let batch = slot.as_mut().expect("a batch is open");
        // The first member is alone in the transaction while it runs (the others queue for
        // the slot), so it needs no savepoint: its failure rolls the whole transaction back.
        let first = batch.members == 0;
        batch.members += 1;
        let mut outcome = batch.outcome.subscribe();

        if first {
            batch.undo = Undo::Batch;
        } else {
            batch.undo = Undo::Savepoint;
            if let Err(e) = batch
                .tx
                .execute_unprepared(&format!("SAVEPOINT {SAVEPOINT}"))
                .await
            {
                self.abort(turn.slot.take(), e.clone());
                return Err(Attempt::BeforeCommit(e.into()));
            }
        }
        let result = body(Tx(batch.tx.clone())).await;
        let closed = if Arc::strong_count(&batch.tx) > 1 {
            Err(DbErr::Custom(
                "a transaction handle outlived its transaction body".into(),
            ))
        } else {
            match &result {
                Err(StoreError::StorageUnavailable { source, .. }) => Err(source.clone()),
                Ok(_) if first => Ok(()),
                Ok(_) => release(&batch.tx).await,
                Err(own) if first => {
                    // Only its own writes to undo, and its refusal rests on committed data
                    // only: it is answered at once.
                    let cause = DbErr::Custom(format!("the batch's first write failed: {own}"));
                    self.abort(turn.slot.take(), cause);
                    return result.map_err(Attempt::BeforeCommit);
                }
                Err(_) => rollback_to(&batch.tx).await,
            }
        };
        if let Err(e) = closed {
            self.abort(turn.slot.take(), e.clone());
            return Err(Attempt::BeforeCommit(match result {
                Err(own @ StoreError::StorageUnavailable { .. }) => own,
                _ => e.into(),
            }));
        }
        batch.undo = Undo::Nothing;
        if result.is_ok() {
            batch.kept += 1;
        }

        let slot = turn.slot.take().expect("the turn holds the slot");
        if self.more_to_come(&slot) {
            drop(slot);
        } else {
            let group = self.clone();
            tokio::spawn(async move { group.commit(slot).await });
        }
        let outcome = match outcome.wait_for(Option::is_some).await {
            Ok(o) => o.clone().expect("waited for an outcome"),
            // The batch was dropped without an outcome (the runtime is shutting down): whether
            // it committed is not known.
            Err(_) => Outcome::CommitFailed(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
                sqlx::Error::WorkerCrashed,
            )))),
        };
        match outcome {
            Outcome::Committed => result.map_err(Attempt::BeforeCommit),
            Outcome::RolledBack(e) => Err(Attempt::BeforeCommit(e.into())),
            Outcome::CommitFailed(e) => Err(Attempt::AtCommit(e)),
        }
    }

    /// Should the batch in `slot` stay open for the writes queued behind it?
    fn more_to_come(&self, slot: &Slot) -> bool {
        slot.as_ref().is_some_and(|b| b.members < MAX_MEMBERS)
            && self.waiting.load(Ordering::Acquire) > 0
    }

    /// Commits the batch in `slot` (if any), publishes the outcome, and lets the next write in.
    async fn commit(&self, mut slot: Slot) {
        let Some(batch) = slot.take() else {
            return;
        };
        let Batch {
            tx,
            members,
            kept,
            outcome,
            ..
        } = batch;
        let result = match Arc::into_inner(tx) {
            // Dropping the last handle rolls back.
            None => Outcome::RolledBack(DbErr::Custom(
                "a transaction handle outlived its transaction body".into(),
            )),
            Some(tx) if kept == 0 => {
                // Nothing to keep: every member's body failed.
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back an empty batch failed; its connection is closed");
                }
                Outcome::Committed
            }
            // A failed COMMIT drops the transaction still open: sea-orm queues a ROLLBACK, and
            // the pool retires the connection if that does not end the transaction.
            Some(tx) => match tx.commit().await {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    self.committed_writes
                        .fetch_add(kept as u64, Ordering::Relaxed);
                    crate::stats::count_commit(kept);
                    Outcome::Committed
                }
                Err(e) => {
                    tracing::warn!(error = %e, members, "a batch's COMMIT failed; none of its writes was kept");
                    Outcome::CommitFailed(e)
                }
            },
        };
        outcome.send_replace(Some(result));
    }

    /// Rolls the whole batch in `slot` back (in a task of its own: it must finish even if the
    /// caller is dropped) and gives every member `cause`.
    fn abort(self: &Arc<Self>, slot: Option<Slot>, cause: DbErr) {
        let Some(mut slot) = slot else {
            return;
        };
        tokio::spawn(async move {
            let Some(batch) = slot.take() else {
                return;
            };
            tracing::warn!(error = %cause, members = batch.members, "a batch is rolled back; none of its writes was kept");
            if let Some(tx) = Arc::into_inner(batch.tx)
                && let Err(e) = tx.rollback().await
            {
                tracing::warn!(error = %e, "rolling back a batch failed; its connection is closed");
            }
            batch.outcome.send_replace(Some(Outcome::RolledBack(cause)));
        });
    }

    /// After a member was dropped holding the slot: undo its open savepoint, then commit the
    /// batch or leave it open for the writes queued behind it.
    async fn settle(self: Arc<Self>, mut slot: Slot) {
        if let Some(batch) = slot.as_ref() {
            // The dropped member's handle may still be going away on another thread (this task
            // can start before the member's future has been dropped in full); the COMMIT needs
            // the batch's only handle.
            for _ in 0..1000 {
                if Arc::strong_count(&batch.tx) == 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        if let Some(batch) = slot.as_mut() {
            match batch.undo {
                Undo::Nothing => {}
                Undo::Savepoint => match rollback_to(&batch.tx).await {
                    Ok(()) => batch.undo = Undo::Nothing,
                    Err(e) => return self.abort(Some(slot), e),
                },
                Undo::Batch => {
                    let cause = DbErr::Custom("the batch's first write was dropped".into());
                    return self.abort(Some(slot), cause);
                }
            }
        }
        self.hand_on(slot).await;
    }

    /// After a queued write was dropped: a batch may have been left open for it.
    async fn nudge(self: Arc<Self>) {
        let slot = self.slot.clone().lock_owned().await;
        self.hand_on(slot).await;
    }

    async fn hand_on(&self, slot: Slot) {
        if !self.more_to_come(&slot) {
            self.commit(slot).await;
        }
    }
}

async fn release(tx: &DatabaseTransaction) -> Result<(), DbErr> {
    tx.execute_unprepared(&format!("RELEASE {SAVEPOINT}"))
        .await
        .map(drop)
}

/// Undoes a member's writes and closes its savepoint (`ROLLBACK TO` leaves it open).
async fn rollback_to(tx: &DatabaseTransaction) -> Result<(), DbErr> {
    tx.execute_unprepared(&format!("ROLLBACK TO {SAVEPOINT}"))
        .await?;
    release(tx).await
}

/// Counts a write queued for the slot; dropped before it got in, it nudges the batch.
struct Queued<'a> {
    group: &'a Arc<GroupCommit>,
    armed: bool,
}

impl<'a> Queued<'a> {
    fn new(group: &'a Arc<GroupCommit>) -> Self {
        group.waiting.fetch_add(1, Ordering::AcqRel);
        Self { group, armed: true }
    }

    /// In the slot (counted out while holding it).
    fn admitted(mut self) {
        self.armed = false;
        self.group.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.group.waiting.fetch_sub(1, Ordering::AcqRel);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(self.group.clone().nudge());
            }
        }
    }
}

/// A write holding the slot; dropped while it still holds it, it hands the batch to
/// [`GroupCommit::settle`].
struct Turn {
    group: Arc<GroupCommit>,
    slot: Option<Slot>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(self.group.clone().settle(slot))),
            // No runtime to finish it on: drop the batch (its transaction rolls back; its
            // members learn that its outcome is unknown), never leave it half-written.
            Err(_) => drop(slot.take()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    use super::*;
    use crate::{StorageFault, Store, StoreOptions};

    const WITHIN: Duration = Duration::from_secs(10);

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("gc.db").display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store
            .transact(|tx| async move {
                tx.execute_unprepared("CREATE TABLE probe (name TEXT PRIMARY KEY, v BLOB)")
                    .await?;
                Ok(())
            })
            .await
            .unwrap();
        (store, dir)
    }

    /// One write: a row `name`, then `after` (waits, fails, …) inside the same body.
    async fn write<Fut>(
        store: &Store,
        name: &str,
        size: usize,
        after: impl Fn() -> Fut,
    ) -> Result<(), StoreError>
    where
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let after = &after;
        store
            .transact(|tx| async move {
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "INSERT INTO probe (name, v) VALUES (?, zeroblob(?))",
                    [name.into(), (size as i64).into()],
                ))
                .await?;
                after().await
            })
            .await
    }

    fn spawn_write(
        store: &Store,
        name: &str,
        size: usize,
        pause: Duration,
        fail: bool,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let (store, name) = (store.clone(), name.to_owned());
        tokio::spawn(async move {
            write(&store, &name, size, || async {
                tokio::time::sleep(pause).await;
                if fail {
                    Err(StoreError::ReleaseAlreadyPending)
                } else {
                    Ok(())
                }
            })
            .await
        })
    }

    async fn rows(store: &Store) -> Vec<String> {
        store
            .reader()
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT name FROM probe ORDER BY name",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect()
    }

    async fn join(
        handle: tokio::task::JoinHandle<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        tokio::time::timeout(WITHIN, handle)
            .await
            .expect("a write is answered")
            .expect("a write does not panic")
    }

    /// A write holds the batch for a while; the writes queued behind it meanwhile.
    async fn queue_behind_a_slow_write(
        store: &Store,
        names: &[&str],
    ) -> Vec<tokio::task::JoinHandle<Result<(), StoreError>>> {
        let mut handles = vec![spawn_write(
            store,
            "slow",
            0,
            Duration::from_millis(300),
            false,
        )];
        tokio::time::sleep(Duration::from_millis(50)).await;
        for name in names {
            handles.push(spawn_write(store, name, 0, Duration::ZERO, false));
            // One at a time, so that they queue in this order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handles
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_all_are_kept() {
        let (store, _dir) = store().await;
        let before = store.group_commit_stats();
        let names: Vec<String> = (0..32).map(|i| format!("w{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for h in queue_behind_a_slow_write(&store, &refs).await {
            join(h).await.unwrap();
        }
        let after = store.group_commit_stats();
        assert_eq!(after.writes - before.writes, 33);
        assert!(
            after.commits - before.commits <= 3,
            "33 writes queued together took {} COMMITs",
            after.commits - before.commits
        );
        assert_eq!(rows(&store).await.len(), 33);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_leaves_the_rest_of_its_batch_untouched() {
        let (store, _dir) = store().await;
        let before = store.group_commit_stats();
        let slow = spawn_write(&store, "slow", 0, Duration::from_millis(300), false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut handles = Vec::new();
        for i in 0..9 {
            let fail = i == 4;
            handles.push((
                fail,
                spawn_write(&store, &format!("w{i}"), 0, Duration::ZERO, fail),
            ));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        join(slow).await.unwrap();
        for (fail, h) in handles {
            let result = join(h).await;
            if fail {
                assert!(matches!(result, Err(StoreError::ReleaseAlreadyPending)));
            } else {
                result.unwrap();
            }
        }
        let after = store.group_commit_stats();
        assert_eq!(after.writes - before.writes, 9);
        assert!(
            after.commits - before.commits <= 2,
            "the writes shared a batch"
        );
        let kept = rows(&store).await;
        assert_eq!(kept.len(), 9);
        assert!(
            !kept.contains(&"w4".to_owned()),
            "the failed write's row is gone"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_storage_fault_fails_every_write_of_its_batch_and_keeps_none() {
        let (store, _dir) = store().await;
        // The database may not grow any more (the writing connection's limit: the current
        // size); small rows still fit in the table's page, a large one cannot.
        let slow = {
            let store = store.clone();
            tokio::spawn(async move {
                write(&store, "slow", 0, || async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut batch = vec![slow];
        let limit = store.clone();
        // Queued behind `slow`: limits the size, then small writes, then one too large.
        batch.push(tokio::spawn(async move {
            limit
                .transact(|tx| async move {
                    tx.execute_unprepared("PRAGMA max_page_count = 1").await?;
                    Ok(())
                })
                .await
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..4 {
            batch.push(spawn_write(
                &store,
                &format!("a{i}"),
                0,
                Duration::ZERO,
                false,
            ));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        batch.push(spawn_write(
            &store,
            "large",
            64 * 1024,
            Duration::ZERO,
            false,
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut later = Vec::new();
        for i in 0..3 {
            later.push(spawn_write(
                &store,
                &format!("b{i}"),
                0,
                Duration::ZERO,
                false,
            ));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for h in batch {
            let e = join(h)
                .await
                .expect_err("no write of the failed batch succeeds");
            assert_eq!(e.storage_fault(), Some(StorageFault::Full), "{}", e.chain());
        }
        // The writes queued behind the failed batch form a batch of their own.
        for h in later {
            join(h).await.unwrap();
        }
        assert_eq!(rows(&store).await, ["b0", "b1", "b2"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_inside_its_body_is_undone_and_the_batch_goes_on() {
        let (store, _dir) = store().await;
        let slow = spawn_write(&store, "slow", 0, Duration::from_millis(200), false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Never finishes its body on its own.
        let stuck = spawn_write(&store, "stuck", 0, Duration::from_secs(3600), false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = spawn_write(&store, "next", 0, Duration::ZERO, false);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!slow.is_finished(), "its batch waits for the stuck write");
        stuck.abort();
        join(slow).await.unwrap();
        join(next).await.unwrap();
        assert_eq!(rows(&store).await, ["next", "slow"]);
        write(&store, "after", 0, || async { Ok(()) })
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batchs_first_write_failing_or_dropped_is_undone_and_the_writes_behind_it_go_on() {
        let (store, _dir) = store().await;
        let failing = spawn_write(&store, "failing", 0, Duration::from_millis(200), true);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let behind = spawn_write(&store, "behind", 0, Duration::ZERO, false);
        assert!(matches!(
            join(failing).await,
            Err(StoreError::ReleaseAlreadyPending)
        ));
        join(behind).await.unwrap();
        assert_eq!(rows(&store).await, ["behind"]);

        let stuck = spawn_write(&store, "stuck", 0, Duration::from_secs(3600), false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = spawn_write(&store, "next", 0, Duration::ZERO, false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        stuck.abort();
        join(next).await.unwrap();
        assert_eq!(rows(&store).await, ["behind", "next"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_left_open_for_a_write_that_gave_up_waiting_still_commits() {
        let (store, _dir) = store().await;
        // A write queued for the slot (as if a request were waiting for it)…
        let queued = Queued::new(&store.group);
        // …so this one leaves its batch open for it after its body.
        let first = spawn_write(&store, "first", 0, Duration::ZERO, false);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!first.is_finished(), "the batch waits for the queued write");
        drop(queued);
        join(first).await.unwrap();
        assert_eq!(rows(&store).await, ["first"]);
    }
}
