//! Dependency injection: the shaku modules. [`ClientModule`] holds every client component —
//! the clock, the repositories (of any type), the outbox, the session, the remote, the executor registry,
//! the upstream processor, the per-entity sync use cases, the downstream manager, the
//! reachability monitor, the status provider and the coordinator — over one local store.
//!
//! Async and fallible setup (opening the database, running migrations, building HTTP clients)
//! happens first, in [`open_client_module`] and [`client_module_builder`]; the module is then
//! built from ready parts and cannot fail.
//!
//! A program puts a component of its own in place of one of the module's through the builder,
//! before building: any port the module resolves can be overridden, and every component that
//! uses the port gets the program's.
//!
//! ```no_run
//! # async fn example(my_remote: Box<dyn trackflow_domain::ports::RemoteDataSource>) -> anyhow::Result<()> {
//! use trackflow_client::{wiring, EngineOptions, SyncEngine};
//! use trackflow_domain::ports::RemoteDataSource;
//!
//! let options = EngineOptions::default();
//! let store = wiring::open_store(std::path::Path::new("./data")).await?;
//! let module = wiring::client_module_builder(&store, &options)?
//!     .with_component_override::<dyn RemoteDataSource>(my_remote)
//!     .build();
//! let engine = SyncEngine::with_module(store, module, options);
//! # Ok(()) }
//! ```

mod client;

pub use client::{MonitorParameters, RealtimeParameters, Required, UpstreamParameters};

use crate::{engine::EngineOptions, ClientError};
use shaku::{module, HasComponent, ModuleBuilder};
use std::{path::Path, sync::Arc};
use trackflow_domain::{
    ports::{BlobRemote, EventSource, HealthProbe, Repository, SessionStorage},
    SyncEntity,
};
use trackflow_executors::{ExecutorRegistry, PendingOperationsManager};
use trackflow_remote::{HttpRemote, HttpRemoteParameters};
use trackflow_store::{
    BlobCacheOptions, LocalStore, LocalStoreOptions, Repositories, RepositoryParameters, SessionReload,
    SqliteBlobCache, SqliteBlobCacheParameters, SqliteChangeFeed, SqliteChangeFeedParameters,
    SqliteConflictRepository, SqliteConflictRepositoryParameters, SqliteDownstreamRepository,
    SqliteDownstreamRepositoryParameters, SqlitePendingOperationsRepository,
    SqlitePendingOperationsRepositoryParameters, SqliteSessionStorage, SqliteSessionStorageParameters,
    SystemClock,
};
use trackflow_usecases::{
    AudioFiles, BackgroundSyncCoordinator, MonitoredRemote, ReachabilityMonitor, RealtimeListener,
    SyncDataManager, SyncStatusProvider, SyncUseCases,
};

/// The file name of the local database inside the data directory.
pub const DATABASE_FILE: &str = "trackflow.db";

mod generated {
    // shaku's macro generates items without doc comments.
    #![allow(missing_docs)]
    use super::*;

    module! {
        pub ClientModule {
            components = [
                SystemClock,
                Repositories,
                SqlitePendingOperationsRepository,
                SqliteSessionStorage,
                SqliteConflictRepository,
                SqliteDownstreamRepository,
                SqliteChangeFeed,
                SqliteBlobCache,
                SessionReload,
                HttpRemote,
                ReachabilityMonitor,
                MonitoredRemote,
                ExecutorRegistry,
                PendingOperationsManager,
                SyncUseCases,
                SyncDataManager,
                SyncStatusProvider,
                BackgroundSyncCoordinator,
                RealtimeListener,
                AudioFiles,
            ],
            providers = []
        }
    }
}

/// Everything a client needs, offline and syncing, over one local store, whatever types the
/// program registered: their repositories come from one [`Repositories`] component. Build it
/// with [`client_module`] or [`client_module_with`].
pub use generated::ClientModule;

/// The repository of `E` in `module` (from its [`Repositories`]).
pub fn repository<E: SyncEntity>(module: &ClientModule) -> Arc<dyn Repository<E>> {
    HasComponent::<Repositories>::resolve_ref(module).of::<E>()
}

/// Builds the module over an opened store, with the default options.
pub fn client_module(store: &LocalStore) -> Result<ClientModule, ClientError> {
    client_module_with(store, &EngineOptions::default())
}

/// Builds the module over an opened store, syncing as `options` say.
pub fn client_module_with(store: &LocalStore, options: &EngineOptions) -> Result<ClientModule, ClientError> {
    Ok(client_module_builder(store, options)?.build())
}

/// The module's builder over an opened store, given every parameter `options` say: override
/// components on it (`with_component_override::<dyn Port>(...)`), then `build` it.
pub fn client_module_builder(
    store: &LocalStore,
    options: &EngineOptions,
) -> Result<ModuleBuilder<ClientModule>, ClientError> {
    // Every answer corrects the clock the store stamps writes with.
    let server_clock = store.server_clock();
    let remote = HttpRemoteParameters {
        server_clock: Some(Arc::clone(&server_clock)),
        ..HttpRemote::parameters(&options.remote).map_err(ClientError::Http)?
    };
    let session: Arc<dyn SessionStorage> = Arc::new(SqliteSessionStorage::new(store.clone()));
    // One more client for what the module's remote does not offer under its interface: the
    // health probe, blob transfers and the event stream.
    let http = Arc::new(
        HttpRemote::new(session, &options.remote).map_err(ClientError::Http)?.with_server_clock(server_clock),
    );
    let probe: Arc<dyn HealthProbe> = http.clone();
    let blob_remote: Arc<dyn BlobRemote> = http.clone();
    let events: Arc<dyn EventSource> = http;
    let blob_cache = options.blob_cache.clone().unwrap_or_else(|| BlobCacheOptions::beside(store));
    Ok(ClientModule::builder()
        .with_component_parameters::<Repositories>(RepositoryParameters { store: Some(store.clone()) })
        .with_component_parameters::<ReachabilityMonitor>(MonitorParameters {
            options: options.probe,
            probe: Required(Some(probe)),
        })
        .with_component_parameters::<PendingOperationsManager>(UpstreamParameters {
            options: options.upstream.clone(),
            client_id: Required(Some(store.replica_id())),
            blob_remote: Required(Some(blob_remote.clone())),
        })
        .with_component_parameters::<AudioFiles>(Required(Some(blob_remote)))
        .with_component_parameters::<RealtimeListener>(RealtimeParameters {
            events: Required(Some(events)),
            backoff: options.probe,
        })
        .with_component_parameters::<SqliteBlobCache>(SqliteBlobCacheParameters {
            store: store.clone(),
            options: blob_cache,
        })
        .with_component_parameters::<SyncUseCases>(options.downstream.use_cases.clone())
        .with_component_parameters::<SyncDataManager>(options.downstream.clone())
        .with_component_parameters::<SqlitePendingOperationsRepository>(
            SqlitePendingOperationsRepositoryParameters { store: store.clone() },
        )
        .with_component_parameters::<SqliteSessionStorage>(SqliteSessionStorageParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteConflictRepository>(SqliteConflictRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteDownstreamRepository>(SqliteDownstreamRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteChangeFeed>(SqliteChangeFeedParameters { store: store.clone() })
        .with_component_parameters::<HttpRemote>(remote))
}

/// Opens (creating and migrating if needed) the database in `data_dir` and builds the module.
pub async fn open_client_module(data_dir: &Path) -> Result<ClientModule, ClientError> {
    let store = open_store(data_dir).await?;
    client_module(&store)
}

/// Opens the database in `data_dir`, with the tables of the installed registry's types.
pub async fn open_store(data_dir: &Path) -> Result<LocalStore, ClientError> {
    let path = data_dir.join(DATABASE_FILE);
    Ok(LocalStore::open(LocalStoreOptions::new(&path), Arc::new(SystemClock)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shaku::HasComponent;
    use trackflow_domain::{ports::PendingOperationsRepository, Timestamp, UserId};
    use trackflow_music::Project;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_modules_resolve_every_component_with_real_parameters() {
        trackflow_music::install().expect("the music registry installs");
        use trackflow_domain::ports::{
            Clock, ConflictRepository, DownstreamRepository, NetworkMonitor as _, Reauthenticator,
            RemoteDataSource, Repository,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(dir.path()).await.expect("store");
        let options = EngineOptions { periodic: None, ..EngineOptions::default() };
        let module = client_module_with(&store, &options).expect("module");
        // Every port and component, each resolved once.
        let _: Arc<dyn Clock> = module.resolve();
        // The repositories, of any registered type.
        let repositories: Arc<Repositories> = module.resolve();
        let _: Arc<dyn Repository<Project>> = repositories.of::<Project>();
        let _: Arc<dyn PendingOperationsRepository> = module.resolve();
        let _: Arc<dyn SessionStorage> = module.resolve();
        let _: Arc<dyn ConflictRepository> = module.resolve();
        let _: Arc<dyn DownstreamRepository> = module.resolve();
        let _: Arc<dyn Reauthenticator> = module.resolve();
        let _: Arc<dyn RemoteDataSource> = module.resolve();
        let _: Arc<MonitoredRemote> = module.resolve();
        let registry: Arc<ExecutorRegistry> = module.resolve();
        for &entity_type in trackflow_domain::EntityType::all() {
            assert!(registry.get(entity_type.as_str()).is_ok(), "an executor for {entity_type}");
        }
        let use_cases: Arc<SyncUseCases> = module.resolve();
        assert_eq!(use_cases.by_type().len(), trackflow_domain::EntityType::all().len());
        let _: Arc<SyncDataManager> = module.resolve();
        let monitor: Arc<ReachabilityMonitor> = module.resolve();
        assert!(monitor.is_online(), "optimistic until a request fails");
        let status: Arc<SyncStatusProvider> = module.resolve();
        // The managers and the coordinator share the module's components.
        let upstream: Arc<PendingOperationsManager> = module.resolve();
        assert_eq!(upstream.health().await.expect("health").pending, 0);
        let coordinator: &BackgroundSyncCoordinator = module.resolve_ref();
        assert!(coordinator.ongoing().is_empty());
        // No session: the coordinator's run finds nothing to do and says so in the status.
        assert!(!coordinator.trigger_if_ready("test").await, "nobody is signed in");
        assert_eq!(status.current(), trackflow_domain::SyncState::default());
    }

    #[tokio::test]
    async fn the_module_resolves_repositories_that_share_one_store() {
        trackflow_music::install().expect("the music registry installs");
        let dir = tempfile::tempdir().expect("temp dir");
        let module = open_client_module(dir.path()).await.expect("module");
        let projects = repository::<Project>(&module);
        let outbox: Arc<dyn PendingOperationsRepository> = module.resolve();
        let p = Project::new(UserId::new(), "Wired", None, Timestamp(1)).expect("valid");
        projects.create(p).await.expect("create");
        assert_eq!(outbox.counts().await.expect("counts").pending, 1);
    }
}
