//! Outbox operations: the durable record of a local change waiting to reach the server.

use super::Hlc;
use crate::{entities::EntityRef, ids::OperationId, time::Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{collections::BTreeMap, fmt, str::FromStr};

/// What an operation does to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// The entity was created; all fields travel.
    Create,
    /// Some fields changed; only those travel.
    Update,
    /// The entity was deleted.
    Delete,
    /// The entity's audio file (the blob named by the operation's `audio_sha256` field) goes to
    /// the server's blob store. Never a mutation: the processor streams the file, and what
    /// refers to the audio depends on this operation, so the server never holds a track whose
    /// audio it lacks.
    Upload,
}

/// Upstream priority. Variants are declared most urgent first, so `Ord` sorts them in
/// processing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Deletes and access changes.
    Critical,
    /// Projects and profiles.
    High,
    /// Tracks and comments.
    Medium,
    /// Everything that can wait.
    Low,
}

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Waiting to be sent (possibly until `next_attempt_at`).
    Pending,
    /// Sent in a batch whose result has not been recorded yet.
    InFlight,
    /// Parked after a permanent rejection or too many attempts; waits for the user.
    Failed,
}

macro_rules! stable_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The stable name used in storage and on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!("unknown {} '{other}'", stringify!($ty))),
                }
            }
        }
    };
}

stable_names!(OperationKind { Create => "create", Update => "update", Delete => "delete", Upload => "upload" });
stable_names!(Priority { Critical => "critical", High => "high", Medium => "medium", Low => "low" });
stable_names!(OperationStatus { Pending => "pending", InFlight => "in_flight", Failed => "failed" });

/// The new value of one field and the clock reading of the write that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The new value.
    pub value: Value,
    /// When it was written.
    pub hlc: Hlc,
}

/// One queued change of one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOperation {
    /// The idempotency key: the server applies an operation id at most once.
    pub id: OperationId,
    /// The changed entity.
    pub entity: EntityRef,
    /// Create, update or delete.
    pub kind: OperationKind,
    /// Only the fields this operation changes (all fields for a create, none for a delete).
    pub changed_fields: BTreeMap<String, FieldChange>,
    /// The clock reading of the write.
    pub hlc: Hlc,
    /// The server version the change was made against (0 for a create or an unsynced row).
    pub base_version: i64,
    /// Upstream priority.
    pub priority: Priority,
    /// Operations that must be acknowledged first (a parent's create).
    pub depends_on: Vec<OperationId>,
    /// How many sends have failed so far. Failures that certainly never reached the server
    /// (it was unreachable, or the credentials were refused) do not count.
    pub attempts: u32,
    /// Whether the operation has ever gone out in a request, so the server may hold it. A sent
    /// operation's content is frozen: it no longer coalesces, or its retry would carry the same
    /// id with other content.
    pub sent: bool,
    /// Not to be sent before this instant (backoff); `None` means now.
    pub next_attempt_at: Option<Timestamp>,
    /// Life-cycle state.
    pub status: OperationStatus,
    /// The last failure, for the user and for health reports.
    pub last_error: Option<String>,
    /// When the change was made locally.
    pub created_at: Timestamp,
}

/// A queued operation without its content (its fields, clock readings and last error): what
/// scheduling and coalescing decide by. The upstream processor holds one of these per queued
/// operation and reads an operation's content only to send it, so a long outbox costs a pass
/// little memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedOperation {
    /// The operation's id.
    pub id: OperationId,
    /// The changed entity.
    pub entity: EntityRef,
    /// Create, update, delete or upload.
    pub kind: OperationKind,
    /// Upstream priority.
    pub priority: Priority,
    /// Operations that must be acknowledged first.
    pub depends_on: Vec<OperationId>,
    /// Failed sends so far.
    pub attempts: u32,
    /// Whether it has ever gone out in a request.
    pub sent: bool,
    /// Not to be sent before this instant.
    pub next_attempt_at: Option<Timestamp>,
    /// Life-cycle state.
    pub status: OperationStatus,
}

impl QueuedOperation {
    /// See [`SyncOperation::is_unsent`].
    pub fn is_unsent(&self) -> bool {
        self.status == OperationStatus::Pending && !self.sent
    }
}

impl From<&SyncOperation> for QueuedOperation {
    fn from(op: &SyncOperation) -> Self {
        Self {
            id: op.id,
            entity: op.entity,
            kind: op.kind,
            priority: op.priority,
            depends_on: op.depends_on.clone(),
            attempts: op.attempts,
            sent: op.sent,
            next_attempt_at: op.next_attempt_at,
            status: op.status,
        }
    }
}

impl SyncOperation {
    /// Whether coalescing may merge or drop this operation: it is waiting and has never gone
    /// out in a request, so the server cannot hold it.
    pub fn is_unsent(&self) -> bool {
        self.status == OperationStatus::Pending && !self.sent
    }

    /// A fresh pending operation for a local write of `fields` at `hlc`, with the entity type's
    /// default priority.
    pub fn new(
        entity: EntityRef,
        kind: OperationKind,
        fields: BTreeMap<String, Value>,
        hlc: Hlc,
        base_version: i64,
        depends_on: Vec<OperationId>,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id: OperationId::new(),
            entity,
            kind,
            changed_fields: fields
                .into_iter()
                .map(|(name, value)| (name, FieldChange { value, hlc }))
                .collect(),
            hlc,
            base_version,
            priority: entity.entity_type.default_priority(kind),
            depends_on,
            attempts: 0,
            sent: false,
            next_attempt_at: None,
            status: OperationStatus::Pending,
            last_error: None,
            created_at,
        }
    }
}
