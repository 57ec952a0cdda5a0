use crate::{
    error::RepositoryError,
    ids::OperationId,
    sync::{OperationStatus, SyncOperation},
    time::Timestamp,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shaku::Interface;

/// How many operations the outbox holds, by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxCounts {
    /// Waiting to be sent.
    pub pending: u64,
    /// Sent, result not yet recorded.
    pub in_flight: u64,
    /// Parked as failed.
    pub failed: u64,
    /// Creation time of the oldest operation not yet acknowledged (pending or in flight).
    pub oldest_pending_at: Option<Timestamp>,
}

/// The outbox: local changes waiting to reach the server. Operations are written by the
/// repositories in the same transaction as the change itself; this port reads and manages them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PendingOperationsRepository: Interface {
    /// Operations in queue order (first-in first-out), optionally only those with `status`.
    async fn list(&self, status: Option<OperationStatus>) -> Result<Vec<SyncOperation>, RepositoryError>;

    /// One operation.
    async fn get(&self, id: OperationId) -> Result<Option<SyncOperation>, RepositoryError>;

    /// Counts by status and the oldest unacknowledged operation's age.
    async fn counts(&self) -> Result<OutboxCounts, RepositoryError>;
}
