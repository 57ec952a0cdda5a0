//! # trackflow-db
//!
//! Diesel plumbing shared by TrackFlow Sync's two stores, the client's (`trackflow-store`) and the
//! server's (`trackflow-server-store`):
//! - [`blocking`]: the one way a Diesel call leaves async worker duty, inside the caller's span;
//! - [`error`]: [`StoreError`] and how it maps onto the domain's port errors;
//! - [`migrate`]: applying embedded migrations, refusing a database written by a newer build;
//! - [`sqlite`]: the settings every SQLite connection gets.
//!
//! Architecture invariant: every Diesel call goes through [`blocking::run_blocking_with`],
//! which carries the caller's tracing span and takes the work out of async worker duty
//! (`block_in_place` on multi-thread runtimes, `spawn_blocking` elsewhere); no Diesel call
//! ever blocks a thread that the runtime counts as a worker.

pub mod blocking;
pub mod error;
pub mod migrate;
pub mod sqlite;

pub use error::{StoreError, StoreResult};
