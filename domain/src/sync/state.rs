//! What the status stream tells a UI.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What the engine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    /// Nothing to do, or waiting for the next trigger.
    #[default]
    Idle,
    /// Sending local changes.
    Pushing,
    /// Receiving remote changes.
    Pulling,
    /// The server is unreachable; local work continues and is queued.
    Offline,
    /// The last run failed; see `last_error`.
    Error,
}

/// Progress of a long sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Items done.
    pub done: u64,
    /// Items known so far (may grow while pulling).
    pub total: u64,
}

/// A snapshot of sync status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncState {
    /// Current phase.
    pub phase: SyncPhase,
    /// Operations waiting to be sent.
    pub pending: u64,
    /// Operations parked as failed.
    pub failed: u64,
    /// Unresolved conflicts.
    pub conflicts: u64,
    /// When a sync last completed without error.
    pub last_successful_sync: Option<Timestamp>,
    /// The most recent error, if the last run failed.
    pub last_error: Option<String>,
    /// Progress of the current run, if it reports one.
    pub progress: Option<SyncProgress>,
    /// Rows the last run brought back to the server's state because the server refused a
    /// local write of them for good (the refused operations are among `failed`).
    #[serde(default)]
    pub reverted: u64,
    /// Set when the server refused this app as too old (a breaking schema change): the schema
    /// version it requires. The app must be upgraded; queued work is kept for then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_required: Option<u32>,
}
