//! # trackflow-store
//!
//! The client's local store: one SQLite file (WAL) holding the cache of every entity, the
//! transactional outbox and its upstream bookkeeping, per-scope sync metadata, conflicts and
//! the audio cache, and the offline-first repositories that implement the domain's ports.
//! Every Diesel call runs through `trackflow_db::blocking`.

mod blobs;
mod checkpoint;
mod clock;
mod conflicts;
mod connection;
mod downstream;
mod feed;
mod field_clock;
mod kept;
mod live;
mod outbox;
mod records;
mod renamed;
pub mod repair;
mod repositories;
mod reverts;
mod rows;
pub mod schema;
mod session;
mod tables;
mod upstream;

pub use blobs::{hash_file, BlobCacheOptions, SqliteBlobCache, SqliteBlobCacheParameters};
pub use checkpoint::CheckpointOptions;
pub use clock::SystemClock;
pub use conflicts::{SqliteConflictRepository, SqliteConflictRepositoryParameters};
pub use connection::MIGRATIONS;
pub use downstream::{SqliteDownstreamRepository, SqliteDownstreamRepositoryParameters};
pub use feed::{SqliteChangeFeed, SqliteChangeFeedParameters};
pub use outbox::{SqlitePendingOperationsRepository, SqlitePendingOperationsRepositoryParameters};
pub use repositories::{Repositories, RepositoryParameters, SqliteRepository};
pub use session::{SessionReload, SqliteSessionStorage, SqliteSessionStorageParameters};
pub use trackflow_db::sqlite::configure_connection;
pub use trackflow_db::{blocking::Offload, StoreError};
/// A program's local migrations are declared with its types, in its registry.
pub use trackflow_domain::entities::AppMigration;

use diesel::{
    r2d2::{ConnectionManager, Pool},
    SqliteConnection,
};
use records::WriteClock;
use std::{fmt, path::PathBuf, sync::Arc, time::Duration};
use tokio::sync::watch;
use trackflow_db::{blocking::run_blocking_with, error::StoreResult};
use trackflow_domain::{
    ports::{Clock, ServerClock},
    NodeId, RepositoryError,
};

/// How to open a [`LocalStore`].
#[derive(Debug, Clone)]
pub struct LocalStoreOptions {
    /// The database file; created (with its directory) if missing.
    pub path: PathBuf,
    /// Most pooled connections. SQLite serialises writers anyway; more connections only help
    /// concurrent readers.
    pub max_connections: u32,
    /// How long a statement waits for another connection's write lock before failing.
    pub busy_timeout: Duration,
    /// How database work leaves the async worker (see [`Offload`]). Use
    /// [`Offload::SpawnBlocking`] when calling the store from inside a tokio `LocalSet`.
    pub offload: Offload,
    /// Change events a subscriber of the change feed may fall behind by before it loses the
    /// oldest (and is told so).
    pub feed_capacity: usize,
    /// When the write-ahead log is copied back into the database file (see
    /// [`CheckpointOptions`]).
    pub checkpoint: CheckpointOptions,
}

impl LocalStoreOptions {
    /// Defaults for the database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
            offload: Offload::Auto,
            feed_capacity: 1024,
            checkpoint: CheckpointOptions::default(),
        }
    }
}

/// A handle on the local database. Cheap to clone; every clone shares one pool and one hybrid
/// logical clock.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    clock: WriteClock,
    path: PathBuf,
    offload: Offload,
    /// Counts the local writes made through this handle; see [`LocalStore::watch_writes`].
    writes: watch::Sender<u64>,
    /// Outbox keys of listed operations, shared by the outbox repositories of this store.
    outbox_keys: upstream::Keys,
    /// What committed transactions changed, for the app's UI, and the live queries.
    feed: feed::Feed,
    /// Copies the log back into the database file off the writers' path.
    checkpointer: checkpoint::Checkpointer,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("path", &self.inner.path)
            .field("replica", &self.inner.clock.replica())
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens (creating if needed) the database at `options.path`, applies pending migrations,
    /// and loads this replica's identity. Fails with [`StoreError::NewerSchema`] if a newer
    /// build has migrated the file.
    ///
    /// `clock` is the device's clock; the store corrects it by the server's (see
    /// [`server_clock`](Self::server_clock)).
    #[tracing::instrument(skip_all, fields(path = %options.path.display()))]
    pub async fn open(options: LocalStoreOptions, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        run_blocking_with(options.offload, move || {
            let opened = connection::open(&options, clock.now())?;
            let checkpointer =
                checkpoint::Checkpointer::start(&options.path, &options.checkpoint, options.busy_timeout)?;
            let server_clock = Arc::new(ServerClock::new(clock, opened.server_offset_ms));
            Ok(Self {
                inner: Arc::new(Inner {
                    pool: opened.pool,
                    clock: WriteClock::new(opened.replica, server_clock),
                    path: options.path,
                    offload: options.offload,
                    writes: watch::Sender::new(0),
                    outbox_keys: upstream::Keys::default(),
                    feed: feed::Feed::new(options.feed_capacity),
                    checkpointer,
                }),
            })
        })
        .await
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// This replica's id, stamped on its clock readings.
    pub fn replica_id(&self) -> NodeId {
        self.inner.clock.replica()
    }

    /// The server's clock as this device estimates it, which clock readings are taken from.
    /// The remote tells it what every answer says of the server's clock.
    pub fn server_clock(&self) -> Arc<ServerClock> {
        Arc::clone(self.inner.clock.server_clock())
    }

    /// A receiver that sees a change after every committed local write made through this
    /// store (any clone of it): what wakes the upstream processor. Writes made by another
    /// process on the same file are not seen; the processor's idle poll finds those.
    pub fn watch_writes(&self) -> watch::Receiver<u64> {
        self.inner.writes.subscribe()
    }

    /// Runs `work` with a pooled connection on the blocking pool.
    pub async fn with_connection<T, F>(&self, work: F) -> StoreResult<T>
    where
        F: FnOnce(&mut SqliteConnection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking_with(self.inner.offload, move || {
            let mut conn = inner.pool.get().map_err(|e| StoreError::Pool(e.to_string()))?;
            let done = work(&mut conn);
            inner.checkpointer.poke();
            done
        })
        .await
    }

    /// A receiver that sees the number of checkpoints the store's own thread has run (see
    /// [`CheckpointOptions`]).
    pub fn checkpoints(&self) -> watch::Receiver<u64> {
        self.inner.checkpointer.done()
    }

    /// Runs a write that needs the clock and reports what it changes to the feed, and maps the
    /// outcome to a port error.
    async fn write<T, F>(&self, work: F) -> Result<T, RepositoryError>
    where
        F: FnOnce(&mut SqliteConnection, &WriteClock, &mut feed::Changes) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = self
            .with_connection(move |conn| inner.feed.publish(|changes| work(conn, &inner.clock, changes)))
            .await
            .map_err(report);
        if result.is_ok() {
            self.announce_write();
        }
        result
    }

    /// Runs `work`, a write transaction that reports what it changes, and publishes its changes
    /// after the commit (see [`feed`]).
    pub(crate) fn publishing<T>(
        &self,
        conn: &mut SqliteConnection,
        work: impl FnOnce(&mut SqliteConnection, &mut feed::Changes) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.inner.feed.publish(|changes| work(conn, changes))
    }

    /// The change feed: one event per committed transaction that changed what a reader sees.
    pub fn changes(&self) -> Box<dyn trackflow_domain::ports::ChangeSubscription> {
        Box::new(feed::Subscription(self.feed()))
    }

    /// The change feed's receiver.
    fn feed(&self) -> tokio::sync::broadcast::Receiver<Arc<trackflow_domain::sync::ChangeEvent>> {
        self.inner.feed.subscribe()
    }

    /// Opens a live query of `entity_type`: its registration sees the number of the last
    /// change event that can affect it. Open it before reading the query's first result.
    pub(crate) fn live_query(
        &self,
        entity_type: trackflow_domain::EntityType,
        query: trackflow_domain::sync::LiveQuery,
    ) -> live::Registration {
        self.inner.feed.open_live(entity_type, query)
    }

    /// The number of the last change event sent: a read that starts now sees what every event
    /// up to it changed.
    pub(crate) fn published_changes(&self) -> u64 {
        self.inner.feed.published()
    }

    /// Runs `work` with the store's write clock.
    pub(crate) fn with_clock<T>(&self, work: impl FnOnce(&WriteClock) -> T) -> T {
        work(&self.inner.clock)
    }

    /// Wall-clock time by the store's clock.
    pub(crate) fn now(&self) -> trackflow_domain::Timestamp {
        self.inner.clock.now()
    }

    /// The keys of outbox operations listed through this store (see [`upstream::Keys`]).
    pub(crate) fn outbox_keys(&self) -> &upstream::Keys {
        &self.inner.outbox_keys
    }

    /// Tells [`watch_writes`](Self::watch_writes) receivers that the queue changed.
    pub(crate) fn announce_write(&self) {
        self.inner.writes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs a read and maps the outcome to a port error.
    async fn read<T, F>(&self, work: F) -> Result<T, RepositoryError>
    where
        F: FnOnce(&mut SqliteConnection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.with_connection(work).await.map_err(report)
    }
}

/// Logs a failure at the level it deserves and converts it for the ports: a missing entity or
/// an invalid input is the caller's business (debug); the store failing is an error.
fn report(error: StoreError) -> RepositoryError {
    match &error {
        StoreError::NotFound(_) | StoreError::Validation(_) | StoreError::Conflict(_) => {
            tracing::debug!(%error, "refused");
        }
        _ => tracing::error!(%error, "local store failure"),
    }
    error.into()
}
