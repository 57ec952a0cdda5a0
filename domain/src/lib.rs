//! # trackflow-domain
//!
//! The pure core of TrackFlow Sync: what a synced type declares ([`SyncEntity`]) and the
//! registry of a program's types, the sync model (sync metadata, the hybrid logical clock,
//! outbox operations and priorities, sync state and conflicts), authorization, the wire protocol
//! types, and the ports — async traits that outer layers implement. It names no type of any
//! program: the music model lives in `trackflow-music`.
//!
//! Architecture invariant: this crate performs no I/O and knows nothing of Diesel, reqwest, axum
//! or a runtime. Everything here can be tested with plain `#[test]` functions.
//!
//! With the `mock` feature every port also gets a [mockall](https://docs.rs/mockall) mock (`MockRepository`, `MockRemoteDataSource`, ...)
//! for tests in other crates.

pub mod authorization;
pub mod blob;
pub mod entities;
pub mod error;
pub mod ids;
pub mod ports;
pub mod protocol;
pub mod sync;
pub mod time;

// The crates whose types the declarations name (`Uuid` ids, `serde_json::Value` fields), so a
// program declaring its types needs no versions of its own.
pub use serde_json;
pub use uuid;

/// What the crate's macros name, re-exported so that a crate invoking them needs no more.
#[doc(hidden)]
pub mod __private {
    pub use uuid::Uuid;
}
pub mod validate;

pub use blob::{BlobHash, CachedBlob, EvictionReport};
pub use entities::{CollaboratorRole, EntityRef, EntityType, SyncEntity};
pub use error::{ClockError, RepositoryError, ValidationError};
pub use ids::{ConflictId, NodeId, OperationId, ScopeId, UserId};
pub use sync::{
    FieldChange, Hlc, HybridLogicalClock, OperationKind, OperationStatus, Priority, QueuedOperation,
    SyncConflict, SyncMeta, SyncOperation, SyncPhase, SyncProgress, SyncState,
};
pub use time::Timestamp;
pub use validate::email_address;
