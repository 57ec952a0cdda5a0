//! Ports: the async traits through which inner layers reach storage, the network and the
//! outside world. Outer crates implement them (`trackflow-data`); the app crate wires them with
//! shaku. Every port is `Interface` (so `Send + Sync + 'static`), async, and mockable: with the
//! `mock` feature each gets a mockall `Mock...` type.

mod blobs;
mod changes;
mod clock;
mod conflicts;
mod downstream;
mod events;
mod network;
mod outbox;
mod pokes;
mod remote;
mod repositories;
mod server_store;
mod session;
mod sync;

pub use blobs::{BlobCache, BlobReader, BlobRemote, BlobStorage, BlobStorageError, BlobWriter, EntityFile};
pub use changes::{ChangeFeed, ChangeSubscription, LiveResults, Missed};
pub use clock::{Clock, ServerClock};
pub use conflicts::ConflictRepository;
pub use downstream::{
    ApplyCounts, ApplyPlan, ConflictPolicies, DownstreamRepository, IncompletePlan, ScopeSync,
    SyncStatistics, DEFAULT_PULL_INTERVAL,
};
pub use events::{EventSource, EventStream, ServerEvent};
pub use network::NetworkMonitor;
pub use outbox::{OutboxCounts, PendingOperationsRepository};
pub use pokes::{PokeHandler, PokeRelay};
pub use remote::{RemoteDataSource, RemoteError};
pub use repositories::{IdentifiedFields, Repository, WriteContext};
pub use server_store::{Account, Purged, Retention, ServerStore, ServerStoreError, StoredToken};
pub use session::{AccessToken, Reauthenticator, Session, SessionStorage};
pub use sync::{
    DownstreamSync, HealthProbe, NoProgress, PullSummary, PushSummary, SyncError, SyncProgressObserver,
    UpstreamSync,
};

#[cfg(any(test, feature = "mock"))]
pub use blobs::{MockBlobCache, MockBlobRemote, MockBlobStorage};
#[cfg(any(test, feature = "mock"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mock"))]
pub use conflicts::MockConflictRepository;
#[cfg(any(test, feature = "mock"))]
pub use downstream::MockDownstreamRepository;
#[cfg(any(test, feature = "mock"))]
pub use events::MockEventSource;
#[cfg(any(test, feature = "mock"))]
pub use network::MockNetworkMonitor;
#[cfg(any(test, feature = "mock"))]
pub use outbox::MockPendingOperationsRepository;
#[cfg(any(test, feature = "mock"))]
pub use pokes::MockPokeRelay;
#[cfg(any(test, feature = "mock"))]
pub use remote::MockRemoteDataSource;
#[cfg(any(test, feature = "mock"))]
pub use repositories::MockRepository;
#[cfg(any(test, feature = "mock"))]
pub use server_store::MockServerStore;
#[cfg(any(test, feature = "mock"))]
pub use session::{MockReauthenticator, MockSessionStorage};
#[cfg(any(test, feature = "mock"))]
pub use sync::{MockDownstreamSync, MockHealthProbe, MockUpstreamSync};
