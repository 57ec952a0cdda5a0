//! # trackflow-data
//!
//! The data layer of TrackFlow Sync:
//! - [`local`]: the client's local store, Diesel on a SQLite file (WAL) with the cache of every
//!   entity, the transactional outbox and its upstream bookkeeping, per-scope sync metadata and
//!   conflicts, and the offline-first repositories that implement the domain's ports;
//! - [`remote`]: the sync server as the client reaches it, over reqwest;
//! - [`server`]: the server's store, on SQLite or PostgreSQL.
//!
//! Architecture invariant: every Diesel call goes through [`blocking::run_blocking_with`],
//! which carries the caller's tracing span and takes the work out of async worker duty
//! (`block_in_place` on multi-thread runtimes, `spawn_blocking` elsewhere); no Diesel call
//! ever blocks a thread that the runtime counts as a worker.

pub mod blocking;
pub mod clock;
pub mod error;
pub mod local;
mod migrate;
pub mod remote;
pub mod server;

pub use clock::SystemClock;
pub use error::StoreError;
pub use local::{
    LocalStore, LocalStoreOptions, SessionReload, SqliteAudioCommentRepository, SqliteAudioTrackRepository,
    SqliteCollaboratorRepository, SqliteConflictRepository, SqliteDownstreamRepository,
    SqlitePendingOperationsRepository, SqlitePlaylistRepository, SqliteProjectRepository,
    SqliteSessionStorage, SqliteUserProfileRepository,
};
pub use remote::{AuthClient, HttpRemote, RemoteOptions};
pub use server::{AppliedCounts, DieselServerStore, ServerDatabase};
