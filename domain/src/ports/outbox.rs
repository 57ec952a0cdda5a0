use crate::{
    error::RepositoryError,
    ids::OperationId,
    sync::{CoalescePlan, OperationStatus, QueuedOperation, Settlement, SyncOperation},
    time::Timestamp,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shaku::Interface;

/// How many operations the outbox holds, by status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxCounts {
    /// Waiting to be sent.
    pub pending: u64,
    /// Sent, result not yet recorded.
    pub in_flight: u64,
    /// Parked as failed.
    pub failed: u64,
    /// Creation time of the oldest operation not yet acknowledged (pending or in flight).
    pub oldest_pending_at: Option<Timestamp>,
    /// The most recent error on an operation still waiting to be sent, or else the reason of
    /// the newest failed operation.
    pub last_error: Option<String>,
}

/// The outbox: local changes waiting to reach the server. Operations are written by the
/// repositories in the same transaction as the change itself; this port reads and manages them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PendingOperationsRepository: Interface {
    /// Operations in queue order (first-in first-out), optionally only those with `status`.
    async fn list(&self, status: Option<OperationStatus>) -> Result<Vec<SyncOperation>, RepositoryError>;

    /// Every queued operation in queue order, without its content: what the upstream
    /// processor schedules by. It reads the content of the few it sends with
    /// [`load`](Self::load).
    async fn queue(&self) -> Result<Vec<QueuedOperation>, RepositoryError> {
        Ok(self.list(None).await?.iter().map(QueuedOperation::from).collect())
    }

    /// The queued operations with these ids, whole, in queue order; ids no longer queued are
    /// left out.
    async fn load(&self, ids: Vec<OperationId>) -> Result<Vec<SyncOperation>, RepositoryError> {
        let wanted: std::collections::HashSet<OperationId> = ids.into_iter().collect();
        let mut queued = self.list(None).await?;
        queued.retain(|op| wanted.contains(&op.id));
        Ok(queued)
    }

    /// One operation.
    async fn get(&self, id: OperationId) -> Result<Option<SyncOperation>, RepositoryError>;

    /// Counts by status and the oldest unacknowledged operation's age.
    async fn counts(&self) -> Result<OutboxCounts, RepositoryError>;

    /// Applies a coalescing plan in one transaction. Changes nothing and returns `false` if any
    /// operation the plan names was sent or removed since the queue was read.
    async fn apply_coalescing(&self, plan: CoalescePlan) -> Result<bool, RepositoryError>;

    /// Marks operations as going out in a request: in flight, and sent (frozen).
    async fn mark_sent(&self, ids: Vec<OperationId>) -> Result<(), RepositoryError>;

    /// Records what became of sent operations, in one transaction. An operation that leaves the
    /// outbox updates its row's version and sync metadata in the same transaction.
    async fn settle(&self, settlements: Vec<(OperationId, Settlement)>) -> Result<(), RepositoryError>;

    /// Gives new clock readings, in queue order, to the waiting operations whose readings are
    /// too far ahead of the server's clock as this device now knows it (stamped while the
    /// device did not know its clock was fast). Their rows take the new readings too. Returns
    /// how many were stamped again.
    async fn restamp(&self) -> Result<u64, RepositoryError>;

    /// Returns operations left in flight by a processor that stopped mid-request to pending
    /// (they stay frozen: the server may hold them). Returns how many.
    async fn release_in_flight(&self) -> Result<u64, RepositoryError>;

    /// Sends failed operations again from a fresh attempt count: `ids`, or every failed one.
    /// Returns how many were failed and are pending now.
    async fn retry_failed(&self, ids: Option<Vec<OperationId>>) -> Result<u64, RepositoryError>;

    /// Drops failed operations for good, with every queued operation that depends on them
    /// (transitively). Their rows keep their local values, except rows the server never
    /// acknowledged whose create is dropped: those go. Returns the ids removed.
    async fn discard_failed(&self, ids: Vec<OperationId>) -> Result<Vec<OperationId>, RepositoryError>;
}
