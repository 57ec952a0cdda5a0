//! # trackflow-usecases
//!
//! Downstream sync and coordination of TrackFlow Sync: it will hold the per-entity sync use
//! cases and the `SyncDataManager` (cursor pulls applied page by page), the conflict
//! resolution service, the `BackgroundSyncCoordinator` and the `SyncStatusProvider`.
//!
//! Today it holds nothing but this description; it depends on the domain only.

pub use trackflow_domain::SyncState;
