use crate::{
    error::RepositoryError,
    ids::ConflictId,
    sync::{ConflictResolution, SyncConflict},
};
use async_trait::async_trait;
use shaku::Interface;

/// Conflicts kept for the user or a resolution policy. Upstream sync records here every push
/// whose fields lost to newer writes, so no lost value goes unnoticed.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ConflictRepository: Interface {
    /// Stores `conflict`. Idempotent: a conflict whose id is stored already is left as it is,
    /// so a result replayed after a lost response is recorded once.
    async fn record(&self, conflict: SyncConflict) -> Result<(), RepositoryError>;

    /// Stored conflicts, oldest first; only the unresolved ones if `unresolved_only`.
    async fn list(&self, unresolved_only: bool) -> Result<Vec<SyncConflict>, RepositoryError>;

    /// Resolves the unresolved conflict `id`: writes the chosen values (the local side's, the
    /// remote side's, or merged ones naming only the conflict's fields) over the entity and
    /// queues them as a normal update, which wins over both sides everywhere; marks the
    /// conflict resolved. One transaction. Returns the resolved conflict.
    async fn resolve(
        &self,
        id: ConflictId,
        resolution: ConflictResolution,
    ) -> Result<SyncConflict, RepositoryError>;
}
