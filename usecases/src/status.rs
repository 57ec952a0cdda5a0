//! The `SyncStatusProvider`: one [`SyncState`] for a UI to watch, kept up to date by the
//! coordinator (phase, progress, errors, last success) and by the stores (pending and failed
//! operations, open conflicts).

use std::sync::Arc;
use tokio::sync::watch;
use trackflow_domain::{
    ports::{ConflictRepository, PendingOperationsRepository, SyncProgressObserver},
    RepositoryError, SyncPhase, SyncProgress, SyncState,
};

/// Publishes the sync state as a watch stream: every receiver sees the newest state, and a
/// slow one skips the states in between.
pub struct SyncStatusProvider {
    state: watch::Sender<SyncState>,
    outbox: Arc<dyn PendingOperationsRepository>,
    conflicts: Arc<dyn ConflictRepository>,
}

impl SyncStatusProvider {
    /// A provider counting operations in `outbox` and conflicts in `conflicts`.
    pub fn new(outbox: Arc<dyn PendingOperationsRepository>, conflicts: Arc<dyn ConflictRepository>) -> Self {
        Self { state: watch::Sender::new(SyncState::default()), outbox, conflicts }
    }

    /// A stream of states, starting with the current one.
    pub fn watch(&self) -> watch::Receiver<SyncState> {
        self.state.subscribe()
    }

    /// The state now.
    pub fn current(&self) -> SyncState {
        self.state.borrow().clone()
    }

    /// Changes the state; receivers are told only if it changed.
    pub fn update(&self, change: impl FnOnce(&mut SyncState)) {
        self.state.send_if_modified(|state| {
            let before = state.clone();
            change(state);
            *state != before
        });
    }

    /// Enters `phase`, with no progress yet.
    pub fn enter(&self, phase: SyncPhase) {
        self.update(|s| {
            s.phase = phase;
            s.progress = None;
        });
    }

    /// Reads the pending and failed operations and the open conflicts from the stores.
    pub async fn refresh_counts(&self) -> Result<(), RepositoryError> {
        let counts = self.outbox.counts().await?;
        let conflicts = self.conflicts.list(true).await?.len() as u64;
        self.update(|s| {
            s.pending = counts.pending + counts.in_flight;
            s.failed = counts.failed;
            s.conflicts = conflicts;
        });
        Ok(())
    }
}

impl SyncStatusProvider {
    /// An observer for pushes made outside a coordinated run (the background processor's
    /// passes): the operations not through yet are the pending count. It leaves the phase and
    /// the progress alone: nothing is shown as running while the state says idle.
    pub fn pending_counter(self: &Arc<Self>) -> Arc<dyn SyncProgressObserver> {
        Arc::new(PendingCounter(Arc::clone(self)))
    }
}

/// See [`SyncStatusProvider::pending_counter`].
struct PendingCounter(Arc<SyncStatusProvider>);

impl SyncProgressObserver for PendingCounter {
    fn progress(&self, done: u64, total: u64) {
        self.0.update(|s| s.pending = total.saturating_sub(done));
    }
}

impl SyncProgressObserver for SyncStatusProvider {
    /// While pushing, the operations not through yet are the pending ones: a watcher sees the
    /// count fall as the device's writes reach the server, not only when the push ends.
    fn progress(&self, done: u64, total: u64) {
        self.update(|s| {
            s.progress = Some(SyncProgress { done, total });
            if s.phase == SyncPhase::Pushing {
                s.pending = total.saturating_sub(done);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::ports::{MockConflictRepository, MockPendingOperationsRepository, OutboxCounts};

    fn provider() -> SyncStatusProvider {
        let mut outbox = MockPendingOperationsRepository::new();
        outbox.expect_counts().returning(|| {
            Ok(OutboxCounts {
                pending: 2,
                in_flight: 1,
                failed: 4,
                oldest_pending_at: None,
                last_error: None,
            })
        });
        let mut conflicts = MockConflictRepository::new();
        conflicts.expect_list().withf(|open| *open).returning(|_| Ok(Vec::new()));
        SyncStatusProvider::new(Arc::new(outbox), Arc::new(conflicts))
    }

    #[tokio::test]
    async fn counts_come_from_the_stores_and_reach_watchers() {
        let status = provider();
        let mut watcher = status.watch();
        status.refresh_counts().await.expect("counts");
        assert!(watcher.has_changed().expect("open"));
        let seen = watcher.borrow_and_update().clone();
        assert_eq!((seen.pending, seen.failed, seen.conflicts), (3, 4, 0), "in flight counts as pending");
    }

    #[tokio::test]
    async fn watchers_are_told_only_of_changes() {
        let status = provider();
        let mut watcher = status.watch();
        status.enter(SyncPhase::Pushing);
        status.progress(5, 10);
        assert!(watcher.has_changed().expect("open"));
        let seen = watcher.borrow_and_update().clone();
        assert_eq!(seen.progress, Some(SyncProgress { done: 5, total: 10 }));
        assert_eq!(seen.pending, 5, "while pushing, what is not through yet is pending");
        status.progress(5, 10);
        assert!(!watcher.has_changed().expect("open"), "the same progress again is no news");
        status.enter(SyncPhase::Pulling);
        let seen = watcher.borrow_and_update().clone();
        assert_eq!(
            (seen.phase, seen.progress),
            (SyncPhase::Pulling, None),
            "a new phase starts without progress"
        );
        status.progress(40, 100);
        assert_eq!(watcher.borrow_and_update().pending, 5, "a pull's progress counts rows, not operations");
    }

    #[tokio::test]
    async fn a_background_push_counts_down_pending_without_showing_progress() {
        let status = Arc::new(provider());
        let mut watcher = status.watch();
        status.pending_counter().progress(30, 100);
        let seen = watcher.borrow_and_update().clone();
        assert_eq!((seen.phase, seen.pending, seen.progress), (SyncPhase::Idle, 70, None));
    }
}
