//! The halves of a sync run as the coordinator drives them, and the server's health probe.
//! The upstream processor and the downstream manager implement them; the coordinator and the
//! network monitor see nothing else of those.

use super::RemoteError;
use crate::error::RepositoryError;
use async_trait::async_trait;
use serde::Serialize;
use shaku::Interface;
use std::sync::Arc;

/// Why a push or pull pass failed as a whole. Failures of single operations or scopes are
/// counted in the summaries instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The server could not be asked, or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The local store failed.
    #[error(transparent)]
    Local(#[from] RepositoryError),
    /// The server answered against the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl SyncError {
    /// Whether the server could not be reached at all: the client is offline.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SyncError::Remote(RemoteError::Unreachable { .. }))
    }

    /// The schema version the server requires, if it refused this program as too old.
    pub fn upgrade_required(&self) -> Option<u32> {
        match self {
            SyncError::Remote(RemoteError::UpgradeRequired { min_version, .. }) => Some(*min_version),
            _ => None,
        }
    }
}

/// What one push pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PushSummary {
    /// Push requests made.
    pub requests: u64,
    /// Operations the server now holds.
    pub acknowledged: u64,
    /// Operations parked as failed in this pass.
    pub failed: u64,
    /// Operations scheduled to be sent again.
    pub retrying: u64,
    /// Why sending is paused after the pass (server unreachable, sign-in needed, ...), if it is.
    pub paused: Option<String>,
    /// Whether the pause is because the server could not be reached.
    pub unreachable: bool,
    /// The schema version the server requires, if it refused this client as too old.
    pub upgrade_required: Option<u32>,
}

/// What one pull of every scope did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PullSummary {
    /// Scopes pulled (asked and applied to the end).
    pub pulled: u64,
    /// Scopes whose pull failed; their cursor and data are as they were.
    pub failed: u64,
    /// Rows written.
    pub applied: u64,
    /// Fields in conflict.
    pub conflicts: u64,
    /// Rows brought back to the server's state after it refused a local write of them.
    pub reverted: u64,
    /// The first scope failure, if any.
    pub first_error: Option<String>,
    /// Whether a scope failed because the server could not be reached.
    pub unreachable: bool,
    /// The schema version the server requires, if it refused this client as too old.
    pub upgrade_required: Option<u32>,
}

/// A progress observer of a long push or pull: told how much of the work is done.
pub trait SyncProgressObserver: Send + Sync {
    /// `done` of `total` items (operations or scopes) are through.
    fn progress(&self, done: u64, total: u64);
}

/// An observer that ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncProgressObserver for NoProgress {
    fn progress(&self, _done: u64, _total: u64) {}
}

/// Sends local changes: one pass of the upstream processor.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UpstreamSync: Interface {
    /// Sends every operation that is ready now. Remote failures do not fail the pass: they
    /// pause or schedule retries, as [`PushSummary`] reports.
    async fn push(&self, progress: Arc<dyn SyncProgressObserver>) -> Result<PushSummary, SyncError>;

    /// Lifts any pause: the server is reachable again, or the user signed in.
    fn resume(&self);
}

/// Receives remote changes: one pull of every scope the user may read.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait DownstreamSync: Interface {
    /// Pulls the scopes that are due, or all of them if `force`. Fails as a whole only when
    /// the scopes cannot be listed.
    async fn pull(
        &self,
        force: bool,
        progress: Arc<dyn SyncProgressObserver>,
    ) -> Result<PullSummary, SyncError>;
}

/// Asks the server whether it is up (its unauthenticated health endpoint).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait HealthProbe: Interface {
    /// `Ok` when the server answered healthy.
    async fn probe(&self) -> Result<(), RemoteError>;
}
