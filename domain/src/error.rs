//! Error types of the domain and of its ports.

use crate::entities::EntityRef;

/// A value that breaks a domain rule. It names the offending field so a CLI or an API can point
/// at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The field that failed, as named in the wire format (`name`, `timestamp_ms`, ...).
    pub field: &'static str,
    /// What is wrong with it, in words.
    pub reason: String,
}

impl ValidationError {
    /// A validation error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// A remote hybrid logical clock reading that is too far ahead of local physical time to trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// The remote wall time is further ahead of ours than the configured maximum drift.
    #[error("remote clock is {ahead_ms} ms ahead of local time (max drift {max_drift_ms} ms)")]
    Drift {
        /// How far ahead the remote reading is.
        ahead_ms: u64,
        /// The configured tolerance.
        max_drift_ms: u64,
    },
}

/// Errors from repository and outbox ports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The entity does not exist locally (or only as a tombstone).
    #[error("{0} not found")]
    NotFound(EntityRef),
    /// The input breaks a domain rule; nothing was written.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The write contradicts existing local state (a duplicate id, a second collaborator record
    /// for the same user, ...); nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// The signed-in user's role, as this device knows it, does not allow the write (a viewer
    /// editing, an editor deleting what only the owner deletes); nothing was written or queued.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The storage engine failed. `transient` says whether retrying the same call may succeed
    /// (a busy database) or not (a corrupt file, a full disk).
    #[error("storage error: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// Whether a retry may succeed.
        transient: bool,
    },
}

impl RepositoryError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RepositoryError::Storage { transient: true, .. })
    }
}
