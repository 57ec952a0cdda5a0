//! What the upstream processor decides about queued operations, in the form the outbox port
//! applies: a coalescing plan, and the settlement of each sent operation.

use super::{OperationKind, QueuedOperation, SyncOperation};
use crate::{entities::EntityRef, ids::OperationId, protocol::EntityState, time::Timestamp};
use std::collections::HashSet;

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

/// What must go from `queue` when the operations `dropped` go (a create cancelled by its delete,
/// or a failed operation the user discards): the operations on entities whose create is dropped,
/// and, transitively, everything created inside those entities (a project's tracks, a track's
/// comments). Returns the ids of `dropped` and of all of those, in queue order.
///
/// Only parent links cascade. An operation that merely references a dropped create (a playlist
/// listing a track) is not in the result: see [`referenced_by_survivors`].
pub fn cascade(queue: &[QueuedOperation], dropped: &HashSet<OperationId>) -> Vec<OperationId> {
    let mut gone: HashSet<OperationId> = dropped.clone();
    let mut entities: HashSet<EntityRef> = queue
        .iter()
        .filter(|op| gone.contains(&op.id) && op.kind == OperationKind::Create)
        .map(|op| op.entity)
        .collect();
    let creates_of = |entities: &HashSet<EntityRef>| -> HashSet<OperationId> {
        queue
            .iter()
            .filter(|op| op.kind == OperationKind::Create && entities.contains(&op.entity))
            .map(|op| op.id)
            .collect()
    };
    loop {
        let dropped_creates = creates_of(&entities);
        let before = (gone.len(), entities.len());
        for op in queue {
            let inside = op.entity.entity_type.parent_type().is_some_and(|parent| {
                op.depends_on.iter().any(|d| {
                    dropped_creates.contains(d)
                        && queue.iter().any(|c| c.id == *d && c.entity.entity_type == parent)
                })
            });
            if inside && op.kind == OperationKind::Create {
                entities.insert(op.entity);
            }
            if inside || entities.contains(&op.entity) {
                gone.insert(op.id);
            }
        }
        if (gone.len(), entities.len()) == before {
            break;
        }
    }
    queue.iter().filter(|op| gone.contains(&op.id)).map(|op| op.id).collect()
}

/// Whether an operation outside `gone` waits for one inside it: removing `gone` would leave it
/// referencing something the server never receives.
pub fn referenced_by_survivors(queue: &[QueuedOperation], gone: &[OperationId]) -> bool {
    let gone: HashSet<OperationId> = gone.iter().copied().collect();
    queue.iter().any(|op| !gone.contains(&op.id) && op.depends_on.iter().any(|d| gone.contains(d)))
}
