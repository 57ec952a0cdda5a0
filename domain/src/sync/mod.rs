//! The sync model: per-row metadata, the hybrid logical clock, outbox operations, the status a
//! UI shows, and conflicts.

mod changes;
mod conflict;
pub mod field_merge;
mod hlc;
mod metadata;
pub mod mutation_plan;
mod operation;
pub mod resolution;
mod state;
pub mod upstream;

pub use changes::{ChangeEvent, ChangeKind, ChangeOrigin, EntityChange, LiveQuery};
pub use conflict::{ConflictKind, ConflictResolution, SyncConflict};
pub use hlc::{Hlc, HybridLogicalClock, ParseHlcError};
pub use metadata::SyncMeta;
pub use operation::{FieldChange, OperationKind, OperationStatus, Priority, QueuedOperation, SyncOperation};
pub use resolution::{resolve, ConflictPolicy, FieldConflict, LocalRow, Resolution};
pub use state::{SyncPhase, SyncProgress, SyncState};
pub use upstream::{CoalescePlan, Settlement};
