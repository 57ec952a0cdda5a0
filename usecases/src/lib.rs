//! # trackflow-usecases
//!
//! Downstream sync of TrackFlow Sync: the [`SyncDataManager`], which pulls a scope's changes
//! from the server page by page and has each page merged into the local store with its cursor,
//! and the per-entity sync use cases ([`entities`]), which decide how each entity type's rows
//! are applied; the [`BackgroundSyncCoordinator`], which runs push then pull in the background,
//! the [`ReachabilityMonitor`], which knows whether the server can be reached, the
//! [`RealtimeListener`], which pulls when the server's event stream pokes, and the
//! [`SyncStatusProvider`], which tells a UI what is happening.

mod audio;
mod coordinator;
mod downstream;
pub mod entities;
mod network;
mod realtime;
mod status;

pub use audio::{AudioError, AudioFiles};
pub use coordinator::{BackgroundSyncCoordinator, CoordinatorPorts, FORCE_KEY, NETWORK_KEY, PERIODIC_KEY};
pub use downstream::{PullError, PullReport, SyncDataManager, SyncDataOptions};
pub use entities::{DeclaredUseCase, EntitySyncUseCase, SyncUseCases};
pub use network::{probe_delay, MonitoredRemote, ProbeOptions, ReachabilityMonitor};
pub use realtime::RealtimeListener;
pub use status::SyncStatusProvider;
pub use trackflow_domain::SyncState;
