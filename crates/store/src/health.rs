//! What the store knows about the database's health, from the writes it ran and the connections
//! it lost: the readiness check reads it, the connection pools act on it.
//!
//! - **Writes.** Every [`Store::transact`](crate::Store) outcome is recorded: a storage fault
//!   (full disk, read-only file, I/O error, lost database) makes the store *not ready* until a
//!   write succeeds again, by a request or by the readiness check's own probe.
//! - **Lost connections.** When a query fails because its connection broke, every connection that
//!   sat idle in the pool since before that moment is suspect (a restarted or failed-over
//!   PostgreSQL broke them all): each is pinged before it is handed out, and replaced if the ping
//!   fails, so one broken connection costs one retry, not one failed request per pooled
//!   connection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::DbErr;

use crate::{StorageFault, StoreError};

/// While a write fault is recorded, the readiness check probes at most this often.
const PROBE_WHILE_FAULTY: Duration = Duration::from_secs(1);
/// Without a fault, the readiness check probes only when no write succeeded for this long
/// (an idle service can still find its file system remounted read-only or full).
const PROBE_WHEN_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Health {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 when a connection was last found broken; 0: never.
    connection_lost_at: AtomicU64,
    writes: Mutex<WriteState>,
    /// A write probe is running (at most one at a time).
    probing: AtomicBool,
}

#[derive(Debug, Default)]
struct WriteState {
    /// The fault of the last write that failed for a storage reason, cleared by the next
    /// write that succeeds.
    fault: Option<(StorageFault, DbErr)>,
    last_ok: Option<Instant>,
    last_probe: Option<Instant>,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            connection_lost_at: AtomicU64::new(0),
            writes: Mutex::new(WriteState::default()),
            probing: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        // The state is a few plain values: a panic elsewhere cannot leave it inconsistent.
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write_succeeded(&self) {
        let mut s = self.state();
        if let Some((fault, _)) = s.fault.take() {
            tracing::info!(%fault, "the database takes writes again");
        }
        s.last_ok = Some(Instant::now());
    }

    pub(crate) fn write_failed(&self, fault: StorageFault, cause: &DbErr) {
        let mut s = self.state();
        if s.fault.is_none() {
            tracing::warn!(%fault, error = %cause, "the database cannot take writes");
        }
        s.fault = Some((fault, cause.clone()));
    }

    /// The recorded write fault, as the error a write would get now.
    pub(crate) fn write_fault(&self) -> Option<StoreError> {
        self.state()
            .fault
            .as_ref()
            .map(|(fault, source)| StoreError::StorageUnavailable {
                fault: *fault,
                source: source.clone(),
            })
    }

    /// Should the readiness check write a probe now? If so, the probe is counted as started
    /// and [`Health::probe_finished`] must follow.
    pub(crate) fn start_probe(&self) -> bool {
        let now = Instant::now();
        let due = {
            let s = self.state();
            let since = |t: Option<Instant>, d: Duration| t.is_none_or(|t| now - t >= d);
            if s.fault.is_some() {
                since(s.last_probe, PROBE_WHILE_FAULTY)
            } else {
                since(s.last_ok, PROBE_WHEN_IDLE) && since(s.last_probe, PROBE_WHEN_IDLE)
            }
        };
        if !due || self.probing.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.state().last_probe = Some(now);
        true
    }

    pub(crate) fn probe_finished(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// A query failed because its connection broke.
    pub(crate) fn connection_lost(&self) {
        let at = self.epoch.elapsed().as_millis() as u64 + 1;
        self.connection_lost_at.fetch_max(at, Ordering::AcqRel);
    }

    /// Was a pooled connection idle for `idle_for` already in the pool when a connection was
    /// last found broken? Then it may be broken too.
    pub(crate) fn idle_since_a_loss(&self, idle_for: Duration) -> bool {
        let lost = self.connection_lost_at.load(Ordering::Acquire);
        if lost == 0 {
            return false;
        }
        let released = self.epoch.elapsed().saturating_sub(idle_for);
        (released.as_millis() as u64) < lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_released_before_a_loss_are_suspect() {
        let h = Health::new();
        assert!(!h.idle_since_a_loss(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        h.connection_lost();
        assert!(h.idle_since_a_loss(Duration::from_millis(15)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!h.idle_since_a_loss(Duration::from_millis(5)));
    }

    #[test]
    fn a_fault_is_reported_until_a_write_succeeds() {
        let h = Health::new();
        assert!(h.write_fault().is_none());
        h.write_failed(StorageFault::Full, &DbErr::Custom("full".into()));
        assert_eq!(
            h.write_fault().and_then(|e| e.storage_fault()),
            Some(StorageFault::Full)
        );
        h.write_succeeded();
        assert!(h.write_fault().is_none());
    }

    #[test]
    fn probes_are_throttled_and_one_at_a_time() {
        let h = Health::new();
        assert!(h.start_probe(), "never written: probe");
        assert!(!h.start_probe(), "one probe at a time");
        h.probe_finished();
        assert!(!h.start_probe(), "probed a moment ago");
        h.write_failed(StorageFault::ReadOnly, &DbErr::Custom("ro".into()));
        std::thread::sleep(PROBE_WHILE_FAULTY);
        assert!(h.start_probe(), "faulty: probe again soon");
        h.probe_finished();
        h.write_succeeded();
        assert!(!h.start_probe(), "a write just succeeded");
    }
}
