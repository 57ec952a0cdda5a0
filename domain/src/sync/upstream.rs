//! What the upstream processor decides about queued operations, in the form the outbox port
//! applies: a coalescing plan, and the settlement of each sent operation.

use super::SyncOperation;
use crate::{ids::OperationId, protocol::EntityState, time::Timestamp};

/// What coalescing does to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoalescePlan {
    /// Operations rewritten in place: each keeps the id and queue position of the first
    /// operation of its run and takes the run's combined content.
    pub rewrite: Vec<SyncOperation>,
    /// Operations to remove (merged into a rewritten one, or cancelled out).
    pub remove: Vec<OperationId>,
}

impl CoalescePlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rewrite.is_empty() && self.remove.is_empty()
    }
}

/// What becomes of one sent operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The server holds the change (applied now or before): the row is at `version`. The
    /// operation leaves the outbox.
    Applied {
        /// The row's server version.
        version: i64,
    },
    /// The server merged the change with newer writes and some fields lost. The conflict has
    /// been recorded; the operation leaves the outbox.
    Conflict {
        /// The server row after the merge.
        server: EntityState,
    },
    /// Parked as failed with the server's (or the executor's) reason; waits for the user.
    Failed {
        /// Why, for the user.
        reason: String,
    },
    /// Back to pending, to be sent again.
    Retry {
        /// Failed sends so far.
        attempts: u32,
        /// Not before this instant; `None` for as soon as the processor runs.
        not_before: Option<Timestamp>,
        /// What went wrong, for health reports.
        error: String,
    },
}
