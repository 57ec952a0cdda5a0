//! # trackflow-usecases
//!
//! Downstream sync of TrackFlow Sync: the [`SyncDataManager`], which pulls a scope's changes
//! from the server page by page and has each page merged into the local store with its cursor.
//! The coordinator and the status provider will live here too (see the issues).

mod downstream;

pub use downstream::{PullError, PullReport, SyncDataManager, SyncDataOptions};
pub use trackflow_domain::SyncState;
