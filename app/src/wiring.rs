//! Dependency injection: the shaku module that wires the local store and the repositories.
//!
//! Async and fallible setup (opening the database, running migrations) happens first, in
//! [`open_local_module`]; the module is then built from ready parts and cannot fail.

use anyhow::Context;
use shaku::{module, HasComponent};
use std::{path::Path, sync::Arc};
use tokio::sync::watch;
use trackflow_data::{
    local::{
        SqliteAudioCommentRepositoryParameters, SqliteAudioTrackRepositoryParameters,
        SqliteCollaboratorRepositoryParameters, SqlitePendingOperationsRepositoryParameters,
        SqlitePlaylistRepositoryParameters, SqliteProjectRepositoryParameters,
        SqliteSessionStorageParameters, SqliteUserProfileRepositoryParameters,
    },
    local::{SqliteConflictRepositoryParameters, SqliteDownstreamRepositoryParameters},
    HttpRemote, LocalStore, LocalStoreOptions, RemoteOptions, SessionReload, SqliteAudioCommentRepository,
    SqliteAudioTrackRepository, SqliteCollaboratorRepository, SqliteConflictRepository,
    SqliteDownstreamRepository, SqlitePendingOperationsRepository, SqlitePlaylistRepository,
    SqliteProjectRepository, SqliteSessionStorage, SqliteUserProfileRepository, SystemClock,
};
use trackflow_executors::{ExecutorRegistry, PendingOperationsManager, UpstreamOptions, UpstreamPorts};

/// The file name of the local database inside the data directory.
pub const DATABASE_FILE: &str = "trackflow.db";

/// Everything a client needs to work offline: the clock, the repositories, the outbox and the
/// session, all over one local store. Build it with [`local_module`].
pub use generated::LocalModule;

mod generated {
    // shaku's macro generates items without doc comments.
    #![allow(missing_docs)]
    use super::*;

    module! {
        pub LocalModule {
            components = [
                SystemClock,
                SqliteProjectRepository,
                SqliteAudioTrackRepository,
                SqliteAudioCommentRepository,
                SqliteUserProfileRepository,
                SqlitePlaylistRepository,
                SqliteCollaboratorRepository,
                SqlitePendingOperationsRepository,
                SqliteSessionStorage,
                SqliteConflictRepository,
                SqliteDownstreamRepository,
                SessionReload,
                HttpRemote,
            ],
            providers = []
        }
    }
}

/// Builds the module over an opened store.
pub fn local_module(store: &LocalStore) -> anyhow::Result<LocalModule> {
    let remote = HttpRemote::parameters(&RemoteOptions::default()).context("building the HTTP client")?;
    Ok(LocalModule::builder()
        .with_component_parameters::<SqliteProjectRepository>(SqliteProjectRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteAudioTrackRepository>(SqliteAudioTrackRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteAudioCommentRepository>(SqliteAudioCommentRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteUserProfileRepository>(SqliteUserProfileRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqlitePlaylistRepository>(SqlitePlaylistRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteCollaboratorRepository>(SqliteCollaboratorRepositoryParameters {
            store: store.clone(),
        })
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
        .with_component_parameters::<HttpRemote>(remote)
        .build())
}

/// The upstream processor over the module's outbox, remote and session, sending as the
/// store's replica.
pub fn upstream_manager(
    module: &LocalModule,
    store: &LocalStore,
    options: UpstreamOptions,
) -> PendingOperationsManager {
    let ports = UpstreamPorts {
        outbox: module.resolve(),
        conflicts: module.resolve(),
        remote: module.resolve(),
        session: module.resolve(),
        reauthenticator: module.resolve(),
        clock: module.resolve(),
    };
    PendingOperationsManager::new(ports, ExecutorRegistry::default(), store.replica_id(), options)
}

/// The upstream processor running in the background.
pub struct UpstreamTask {
    /// The processor, to wake, resume or ask for health.
    pub manager: Arc<PendingOperationsManager>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl UpstreamTask {
    /// Starts `manager` and wakes it after every local write made through `store`.
    pub fn spawn(manager: PendingOperationsManager, store: &LocalStore) -> Self {
        let manager = Arc::new(manager);
        let (shutdown, stop) = watch::channel(false);
        let runner = {
            let manager = Arc::clone(&manager);
            tokio::spawn(async move { manager.run(stop).await })
        };
        let waker = {
            let manager = Arc::clone(&manager);
            let mut writes = store.watch_writes();
            tokio::spawn(async move {
                while writes.changed().await.is_ok() {
                    manager.wake();
                }
            })
        };
        Self { manager, shutdown, tasks: vec![runner, waker] }
    }

    /// Stops the processor after its current pass.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
        if let Some(runner) = tasks.next() {
            let _ = runner.await;
        }
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for UpstreamTask {
    /// Dropped without [`stop`](Self::stop): the tasks are aborted. Operations of a request cut
    /// short stay in flight and go back to pending at the next pass of any manager.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens (creating and migrating if needed) the database in `data_dir` and builds the module.
pub async fn open_local_module(data_dir: &Path) -> anyhow::Result<LocalModule> {
    let store = open_store(data_dir).await?;
    local_module(&store)
}

/// Opens the database in `data_dir`.
pub async fn open_store(data_dir: &Path) -> anyhow::Result<LocalStore> {
    let path = data_dir.join(DATABASE_FILE);
    LocalStore::open(LocalStoreOptions::new(&path), Arc::new(SystemClock))
        .await
        .with_context(|| format!("opening {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::{
        ports::{PendingOperationsRepository, ProjectRepository},
        Project, Timestamp, UserId,
    };

    #[tokio::test]
    async fn the_module_resolves_repositories_that_share_one_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let module = open_local_module(dir.path()).await.expect("module");
        let projects: Arc<dyn ProjectRepository> = module.resolve();
        let outbox: Arc<dyn PendingOperationsRepository> = module.resolve();
        let p = Project::new(UserId::new(), "Wired", None, Timestamp(1)).expect("valid");
        projects.create(p).await.expect("create");
        assert_eq!(outbox.counts().await.expect("counts").pending, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_write_wakes_the_background_processor_which_drains_it() {
        use trackflow_domain::ports::{AccessToken, Session, SessionStorage};
        let server_store =
            trackflow_data::DieselServerStore::open("sqlite::memory:", 1).expect("server store");
        let state = trackflow_server::AppState::new(Arc::new(server_store), Default::default());
        let server = trackflow_server::RunningServer::start("127.0.0.1:0".parse().expect("addr"), state)
            .await
            .expect("start");
        let user = UserId::new();
        let signup =
            serde_json::json!({"email": "ana@example.com", "password": "correct horse", "user_id": user});
        let response: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/auth/signup", server.url()))
            .json(&signup)
            .send()
            .await
            .expect("sign up")
            .json()
            .await
            .expect("json");

        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(dir.path()).await.expect("store");
        let module = local_module(&store).expect("module");
        let session: Arc<dyn SessionStorage> = module.resolve();
        let token = response["token"].as_str().expect("token");
        let signed_in = Session {
            user_id: user,
            server_url: Some(server.url()),
            access_token: Some(AccessToken::new(token)),
        };
        session.save(signed_in).await.expect("session");
        let options =
            UpstreamOptions { idle_poll: std::time::Duration::from_secs(3_600), ..Default::default() };
        let task = UpstreamTask::spawn(upstream_manager(&module, &store, options), &store);
        let mut passes = task.manager.passes();

        let projects: Arc<dyn ProjectRepository> = module.resolve();
        let outbox: Arc<dyn PendingOperationsRepository> = module.resolve();
        projects
            .create(Project::new(user, "Synced", None, Timestamp(1)).expect("valid"))
            .await
            .expect("create");
        // Only the write can wake the processor before its hour-long idle poll.
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while outbox.counts().await.expect("counts").pending > 0 {
                passes.changed().await.expect("running");
            }
        })
        .await
        .expect("drained after the write");
        task.stop().await;
        server.shutdown().await.expect("shutdown");
    }
}
