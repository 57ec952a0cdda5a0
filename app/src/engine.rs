//! The whole client in one value: the local module (stores and repositories), the upstream
//! processor, the downstream manager, the reachability monitor, the status provider and the
//! coordinator, wired over one local store. [`SyncEngine::start`] runs them in the background;
//! [`SyncEngine::sync_now`] runs one sync and waits for it; [`SyncEngine::shutdown`] stops
//! everything without losing what was being sent.

use crate::{
    wiring::{client_module_with, open_store, ClientModule},
    ClientError,
};
use shaku::HasComponent;
use std::{path::Path, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use trackflow_domain::{
    ports::{
        AccessToken, ChangeFeed, ChangeSubscription, DownstreamRepository, Repository, Session,
        SessionStorage,
    },
    RepositoryError, SyncEntity, SyncState, UserId,
};
use trackflow_executors::{PendingOperationsManager, UpstreamOptions};
use trackflow_remote::RemoteOptions;
use trackflow_store::{BlobCacheOptions, LocalStore, Repositories};
use trackflow_usecases::{
    BackgroundSyncCoordinator, ProbeOptions, ReachabilityMonitor, RealtimeListener, SyncDataOptions,
    SyncStatusProvider,
};

/// How the engine syncs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The upstream processor's batching, backoff and polling.
    pub upstream: UpstreamOptions,
    /// The downstream manager's pages, intervals, use cases and concurrency.
    pub downstream: SyncDataOptions,
    /// How the server is probed while it is away.
    pub probe: ProbeOptions,
    /// How often the background loop syncs; `None` for no periodic sync.
    pub periodic: Option<Duration>,
    /// Timeouts of the HTTP client.
    pub remote: RemoteOptions,
    /// Whether to follow the server's event stream and pull as soon as it pokes.
    pub realtime: bool,
    /// Where the audio cache lives and its cap; `None` for the directory beside the database
    /// and the default cap.
    pub blob_cache: Option<BlobCacheOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            upstream: UpstreamOptions::default(),
            downstream: SyncDataOptions::default(),
            probe: ProbeOptions::default(),
            periodic: Some(Duration::from_secs(60)),
            remote: RemoteOptions::default(),
            realtime: true,
            blob_cache: None,
        }
    }
}

/// An offline-first client: write through [`module`](Self::module)'s repositories, and the
/// engine syncs in the background once started.
pub struct SyncEngine {
    /// The stores and repositories: every read and write of the app goes through them.
    pub module: Arc<ClientModule>,
    store: LocalStore,
    upstream: Arc<PendingOperationsManager>,
    coordinator: BackgroundSyncCoordinator,
    monitor: Arc<ReachabilityMonitor>,
    status: Arc<SyncStatusProvider>,
    realtime: Option<Arc<RealtimeListener>>,
    periodic: Option<Duration>,
    stop: watch::Sender<bool>,
    /// Loops that end at `stop`.
    tasks: Vec<JoinHandle<()>>,
    /// The follower of local writes and upstream passes; it runs until aborted.
    followers: Vec<JoinHandle<()>>,
}

impl SyncEngine {
    /// Opens (creating and migrating if needed) the database in `data_dir` and wires the
    /// engine over it. Nothing runs until [`start`](Self::start).
    pub async fn open(data_dir: &Path, options: EngineOptions) -> Result<Self, ClientError> {
        let store = open_store(data_dir).await?;
        let engine = Self::over(store, options)?;
        engine.load_history().await;
        Ok(engine)
    }

    /// Starts the status from what the database remembers: the counts of its outbox and
    /// conflicts, and when a pull last completed. A status read before the first run of this
    /// process then tells the truth rather than "never synced".
    pub async fn load_history(&self) {
        if let Err(error) = self.status.refresh_counts().await {
            tracing::warn!(%error, "could not count pending operations");
        }
        // When a pull of each scope last completed (a failed pull does not count).
        let downstream: &dyn DownstreamRepository = self.module.resolve_ref();
        let mut last = None;
        let scopes = match downstream.pulled_scopes().await {
            Ok(scopes) => scopes,
            Err(error) => return tracing::warn!(%error, "could not read the sync history"),
        };
        for scope in scopes {
            match downstream.scope(&scope).await {
                Ok(sync) => last = last.max(sync.last_sync_at),
                Err(error) => return tracing::warn!(%error, "could not read the sync history"),
            }
        }
        self.status.update(|s| s.last_successful_sync = s.last_successful_sync.max(last));
    }

    /// The engine over an opened store: everything resolved from its [`ClientModule`].
    pub fn over(store: LocalStore, options: EngineOptions) -> Result<Self, ClientError> {
        let module = client_module_with(&store, &options)?;
        Ok(Self::with_module(store, module, options))
    }

    /// The engine over a module a program built itself over `store`, usually from
    /// [`client_module_builder`](crate::wiring::client_module_builder) with components of its
    /// own in place of some of ours. `options` must be the ones the module was built with.
    pub fn with_module(store: LocalStore, module: ClientModule, options: EngineOptions) -> Self {
        let module = Arc::new(module);
        Self {
            upstream: module.resolve(),
            coordinator: HasComponent::<BackgroundSyncCoordinator>::resolve_ref(module.as_ref()).clone(),
            monitor: module.resolve(),
            status: module.resolve(),
            realtime: options.realtime.then(|| module.resolve()),
            module,
            store,
            periodic: options.periodic,
            stop: watch::Sender::new(false),
            tasks: Vec::new(),
            followers: Vec::new(),
        }
    }

    /// Starts the background work: the upstream processor (woken by every local write), the
    /// reachability monitor, the coordinator's periodic loop and its network follower, the
    /// event-stream listener, status counts that follow writes and pushes, and a first sync if
    /// the server is reachable and someone is signed in.
    pub async fn start(&mut self) {
        self.upstream.observe_passes(self.status.pending_counter());
        let upstream = Arc::clone(&self.upstream);
        let stop = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move { upstream.run(stop).await }));
        // A local write wakes the processor; the status counts pending work as it is written
        // and as upstream sends it, not only when a coordinated run ends.
        let (upstream, status) = (Arc::clone(&self.upstream), Arc::clone(&self.status));
        let (mut passes, mut writes) = (self.upstream.passes(), self.store.watch_writes());
        self.followers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = writes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        upstream.wake();
                    }
                    changed = passes.changed() => if changed.is_err() { break },
                }
                if let Err(error) = status.refresh_counts().await {
                    tracing::warn!(%error, "could not count pending operations");
                }
            }
        }));
        let monitor = Arc::clone(&self.monitor);
        let stop = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move { monitor.run(stop).await }));
        self.coordinator.follow_network(self.monitor.subscribe());
        if let Some(interval) = self.periodic {
            self.coordinator.spawn_periodic(interval);
        }
        if let Some(realtime) = &self.realtime {
            let (realtime, stop) = (Arc::clone(realtime), self.stop.subscribe());
            self.tasks.push(tokio::spawn(async move { realtime.run(stop).await }));
        }
        self.coordinator.trigger_if_ready("start").await;
    }

    /// The event-stream listener, if realtime is on.
    pub fn realtime(&self) -> Option<&RealtimeListener> {
        self.realtime.as_deref()
    }

    /// Stores the session that lets the engine sync: `user`, signed in to the server at
    /// `server` with the bearer `token` (what `trackflow login` stores). Takes effect at the
    /// next request.
    pub async fn sign_in(&self, user: UserId, server: &str, token: &str) -> Result<(), RepositoryError> {
        let session: &dyn SessionStorage = self.module.resolve_ref();
        session
            .save(Session {
                user_id: user,
                server_url: Some(server.to_owned()),
                access_token: Some(AccessToken::new(token)),
            })
            .await
    }

    /// Syncs now (push, then pull every scope that changed, whatever its interval) and
    /// returns the state after it.
    pub async fn sync_now(&self) -> SyncState {
        self.coordinator.sync_now().await
    }

    /// The coordinator, to trigger syncs.
    pub fn coordinator(&self) -> &BackgroundSyncCoordinator {
        &self.coordinator
    }

    /// The change feed: which entities each committed transaction changed (a local write, a
    /// pulled page, a resolved conflict, a refused change undone), in commit order. For a
    /// query's result as it changes, see [`Repository::subscribe`].
    pub fn changes(&self) -> Box<dyn ChangeSubscription> {
        HasComponent::<dyn ChangeFeed>::resolve_ref(self.module.as_ref()).subscribe()
    }

    /// The status stream.
    pub fn status(&self) -> watch::Receiver<SyncState> {
        self.status.watch()
    }

    /// The status provider (to refresh its counts outside a run).
    pub fn status_provider(&self) -> &SyncStatusProvider {
        &self.status
    }

    /// The repository of the synced type `E` over this engine's store: every write is stored
    /// and queued in one transaction, and wakes the upstream processor.
    pub fn repository<E: SyncEntity>(&self) -> Arc<dyn Repository<E>> {
        self.repositories().of::<E>()
    }

    /// The repositories of every registered type (also to read a type known only by name).
    pub fn repositories(&self) -> &Repositories {
        self.module.resolve_ref()
    }

    /// The conflicts recorded on this device: writes of its own that lost to later ones, and
    /// what a manual policy keeps for the user to resolve.
    pub fn conflicts(&self) -> &dyn trackflow_domain::ports::ConflictRepository {
        self.module.resolve_ref()
    }

    /// The upstream processor (health, retries).
    pub fn upstream(&self) -> &PendingOperationsManager {
        &self.upstream
    }

    /// Stops: the coordinator's run in flight finishes, the loops end, and the upstream
    /// processor ends after its current pass. Whatever was in flight is acknowledged or stays
    /// queued for the next start; nothing is lost.
    pub async fn shutdown(mut self) {
        self.coordinator.shutdown().await;
        self.stop.send_replace(true);
        for follower in std::mem::take(&mut self.followers) {
            follower.abort();
        }
        for task in std::mem::take(&mut self.tasks) {
            // Each ends at the stop signal, after the pass it is in.
            let _ = task.await;
        }
    }
}

impl Drop for SyncEngine {
    /// Dropped without [`shutdown`](Self::shutdown): the background tasks are aborted.
    /// Operations of a request cut short stay in flight and go back to pending at the next
    /// pass of any processor.
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(&self.followers) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wiring::repository;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use trackflow_domain::{
        ports::{PendingOperationsRepository, RemoteDataSource, RemoteError, Repository},
        protocol::{PullRequest, PullResponse, PushRequest, PushResponse, ScopesResponse, SignUpRequest},
        SyncPhase, Timestamp, UserId,
    };
    use trackflow_music::Project;
    use trackflow_remote::AuthClient;
    use trackflow_usecases::ProbeOptions;

    /// An in-process server on a memory database, keeping audio in a fresh directory.
    async fn server() -> trackflow_server::RunningServer {
        server_on("sqlite::memory:", &tempfile::tempdir().expect("blobs").keep(), "127.0.0.1:0").await
    }

    /// An in-process server on `db`, keeping audio in `blobs`, listening on `addr`.
    async fn server_on(db: &str, blobs: &Path, addr: &str) -> trackflow_server::RunningServer {
        let store = trackflow_server_store::DieselServerStore::open(db, 1).expect("server store");
        let blobs = trackflow_server_store::FsBlobStorage::open(blobs).expect("blob storage");
        let state =
            trackflow_server::AppState::new(Arc::new(store), Default::default()).with_blobs(Arc::new(blobs));
        trackflow_server::RunningServer::start(addr.parse().expect("addr"), state).await.expect("start")
    }

    /// An engine in `dir`, signed in to `server` as `user` with `token`.
    async fn engine(
        dir: &Path,
        server: &str,
        user: UserId,
        token: &str,
        options: EngineOptions,
    ) -> SyncEngine {
        let engine = SyncEngine::open(dir, options).await.expect("engine");
        engine.sign_in(user, server, token).await.expect("session");
        engine
    }

    async fn sign_up(server: &str, user: UserId) -> String {
        let request = SignUpRequest {
            email: "ana@example.com".into(),
            password: "correct horse".into(),
            user_id: Some(user),
        };
        AuthClient::new(&RemoteOptions::default())
            .expect("client")
            .sign_up(server, &request)
            .await
            .expect("sign up")
            .token
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_write_wakes_the_background_processor_which_drains_it() {
        trackflow_music::install().expect("the music registry installs");
        let server = server().await;
        let user = UserId::new();
        let token = sign_up(&server.url(), user).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let hour = Duration::from_secs(3_600);
        let options = EngineOptions {
            upstream: UpstreamOptions { idle_poll: hour, ..Default::default() },
            periodic: None,
            ..EngineOptions::default()
        };
        let mut engine = engine(dir.path(), &server.url(), user, &token, options).await;
        engine.start().await;
        let mut passes = engine.upstream().passes();
        let projects = repository::<Project>(&engine.module);
        let outbox: Arc<dyn PendingOperationsRepository> = engine.module.resolve();
        projects
            .create(Project::new(user, "Synced", None, Timestamp(1)).expect("valid"))
            .await
            .expect("create");
        // Only the write can wake the processor before its hour-long idle poll.
        tokio::time::timeout(Duration::from_secs(30), async {
            while outbox.counts().await.expect("counts").pending > 0 {
                passes.changed().await.expect("running");
            }
        })
        .await
        .expect("drained after the write");
        engine.shutdown().await;
        server.shutdown().await.expect("shutdown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_devices_of_one_user_converge_through_sync_now() {
        trackflow_music::install().expect("the music registry installs");
        let server = server().await;
        let user = UserId::new();
        let token = sign_up(&server.url(), user).await;
        let (a_dir, b_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let options = || EngineOptions { periodic: None, ..EngineOptions::default() };
        let a = engine(a_dir.path(), &server.url(), user, &token, options()).await;
        let b = engine(b_dir.path(), &server.url(), user, &token, options()).await;
        let project = Project::new(user, "Both devices", None, Timestamp(1)).expect("valid");
        let a_projects = repository::<Project>(&a.module);
        a_projects.create(project.clone()).await.expect("create");

        let after_a = a.sync_now().await;
        assert_eq!(
            (after_a.phase, after_a.pending, after_a.last_error.as_deref()),
            (SyncPhase::Idle, 0, None)
        );
        assert!(after_a.last_successful_sync.is_some());
        let after_b = b.sync_now().await;
        assert_eq!(after_b.phase, SyncPhase::Idle);
        let b_projects = repository::<Project>(&b.module);
        let pulled = b_projects.get(project.id()).await.expect("get").expect("pulled");
        assert_eq!(pulled.name(), "Both devices");
        a.shutdown().await;
        b.shutdown().await;

        // An engine opened later starts from the history its database keeps, before it runs
        // at all: when it last synced, and what is queued.
        let offline = SyncEngine::open(a_dir.path(), options()).await.expect("engine");
        let project = Project::new(user, "Offline", None, Timestamp(2)).expect("valid");
        repository::<Project>(&offline.module).create(project).await.expect("create");
        offline.shutdown().await;
        let a = SyncEngine::open(a_dir.path(), options()).await.expect("engine");
        let state = a.status().borrow().clone();
        assert!(state.last_successful_sync.is_some(), "the stored history: {state:?}");
        assert_eq!(state.pending, 1, "{state:?}");
        a.shutdown().await;
        server.shutdown().await.expect("shutdown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sync_with_the_server_gone_reports_offline_and_keeps_the_write() {
        trackflow_music::install().expect("the music registry installs");
        let server = server().await;
        let url = server.url();
        let user = UserId::new();
        let token = sign_up(&url, user).await;
        server.shutdown().await.expect("shutdown");
        let dir = tempfile::tempdir().expect("dir");
        let options = EngineOptions { periodic: None, ..EngineOptions::default() };
        let engine = engine(dir.path(), &url, user, &token, options).await;
        let projects = repository::<Project>(&engine.module);
        projects
            .create(Project::new(user, "Offline", None, Timestamp(1)).expect("valid"))
            .await
            .expect("create");
        let state = engine.sync_now().await;
        assert_eq!(state.phase, SyncPhase::Offline);
        assert!(
            state.last_error.as_deref().is_some_and(|e| e.contains("unreachable")),
            "{:?}",
            state.last_error
        );
        assert_eq!(state.pending, 1, "the write waits in the outbox");
        engine.shutdown().await;
    }

    /// A remote of the program's own: it counts the pushes it is given and answers "busy".
    struct CountingRemote(Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl RemoteDataSource for CountingRemote {
        async fn push(&self, _: &PushRequest) -> Result<PushResponse, RemoteError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(RemoteError::Busy { message: "the program's remote".into(), retry_after_ms: None })
        }

        async fn pull(&self, _: PullRequest) -> Result<PullResponse, RemoteError> {
            Err(RemoteError::Unreachable { message: "pushes only".into() })
        }

        async fn scopes(&self) -> Result<ScopesResponse, RemoteError> {
            Err(RemoteError::Unreachable { message: "pushes only".into() })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_program_puts_a_component_of_its_own_in_place_through_the_module_builder() {
        trackflow_music::install().expect("the music registry installs");
        let dir = tempfile::tempdir().expect("dir");
        let store = open_store(dir.path()).await.expect("store");
        let pushes = Arc::new(AtomicUsize::new(0));
        let module = crate::wiring::client_module_builder(&store, &quiet())
            .expect("builder")
            .with_component_override::<dyn RemoteDataSource>(Box::new(CountingRemote(pushes.clone())))
            .build();
        let engine = SyncEngine::with_module(store, module, quiet());
        let user = UserId::new();
        engine.sign_in(user, "http://127.0.0.1:9", "token").await.expect("session");
        let projects = repository::<Project>(&engine.module);
        let outbox: Arc<dyn PendingOperationsRepository> = engine.module.resolve();
        projects
            .create(Project::new(user, "Mine", None, Timestamp(1)).expect("valid"))
            .await
            .expect("create");

        let report = engine.upstream().process().await.expect("a pass");
        assert_eq!(
            pushes.load(Ordering::SeqCst),
            1,
            "the upstream processor pushed through the program's remote"
        );
        assert_eq!((report.acknowledged, report.failed), (0, 0), "{report:?}");
        assert_eq!(outbox.counts().await.expect("counts").pending, 1, "busy: the write stays queued");
        engine.shutdown().await;
    }

    /// Options for engines that sync only when told to or poked: no periodic loop, no idle
    /// polling within a test's time.
    fn quiet() -> EngineOptions {
        let hour = Duration::from_secs(3_600);
        EngineOptions {
            upstream: UpstreamOptions { idle_poll: hour, ..Default::default() },
            periodic: None,
            probe: ProbeOptions { first: Duration::from_millis(20), cap: Duration::from_millis(200) },
            ..EngineOptions::default()
        }
    }

    /// Waits (at most 20 s) until `done` holds, re-checking after every coordinated run of
    /// `engine`.
    async fn until<F, R>(engine: &SyncEngine, what: &str, mut done: F)
    where
        F: FnMut() -> R,
        R: std::future::Future<Output = bool>,
    {
        let mut runs = engine.coordinator().runs();
        tokio::time::timeout(Duration::from_secs(20), async {
            while !done().await {
                runs.changed().await.expect("coordinator alive");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    async fn wait_connected(engine: &SyncEngine, connected: bool) {
        let mut state = engine.realtime().expect("realtime on").connected();
        tokio::time::timeout(Duration::from_secs(20), state.wait_for(|c| *c == connected))
            .await
            .expect("the stream's state in time")
            .expect("listener alive");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audio_goes_up_before_its_track_and_another_device_fetches_it_on_demand() {
        trackflow_music::install().expect("the music registry installs");
        use trackflow_music::AudioTrack;
        use trackflow_usecases::AudioFiles;
        let server = server().await;
        let user = UserId::new();
        let token = sign_up(&server.url(), user).await;
        let (dir_a, dir_b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let a = engine(dir_a.path(), &server.url(), user, &token, quiet()).await;
        let b = engine(dir_b.path(), &server.url(), user, &token, quiet()).await;

        let file = dir_a.path().join("intro.wav");
        let bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).expect("audio file");
        let projects = repository::<Project>(&a.module);
        let project = projects
            .create(Project::new(user, "EP", None, Timestamp(1)).expect("valid"))
            .await
            .expect("create");
        let audio: &AudioFiles = a.module.resolve_ref();
        let blob = audio.import(file).await.expect("import");
        let tracks = repository::<AudioTrack>(&a.module);
        let track =
            AudioTrack::new(project.id(), user, "Intro", 90_000, Some(blob.hash.as_str()), Timestamp(2))
                .expect("valid");
        let track = tracks.create(track).await.expect("create");
        // The server refuses a track naming audio it lacks: this sync succeeds only if the
        // upload went first.
        let state = a.sync_now().await;
        assert_eq!((state.phase, state.pending, state.failed), (SyncPhase::Idle, 0, 0), "{state:?}");

        b.sync_now().await;
        let audio_b: &AudioFiles = b.module.resolve_ref();
        let fetched = audio_b.fetch(track.entity_ref()).await.expect("fetch");
        assert_eq!(std::fs::read(&fetched).expect("read"), bytes, "the same bytes arrive");
        // A second fetch is served from the cache.
        assert_eq!(audio_b.fetch(track.entity_ref()).await.expect("fetch again"), fetched);
        a.shutdown().await;
        b.shutdown().await;
        server.shutdown().await.expect("shutdown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poke_brings_another_devices_write_and_the_stream_survives_a_server_restart() {
        trackflow_music::install().expect("the music registry installs");
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("server.db").to_string_lossy().into_owned();
        let blobs = dir.path().join("server.blobs");
        let server = server_on(&db, &blobs, "127.0.0.1:0").await;
        let (addr, url) = (server.addr().to_string(), server.url());
        let user = UserId::new();
        let token = sign_up(&url, user).await;
        let (dir_a, dir_b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let mut a = engine(dir_a.path(), &url, user, &token, quiet()).await;
        let mut b = engine(dir_b.path(), &url, user, &token, quiet()).await;
        a.start().await;
        b.start().await;
        wait_connected(&b, true).await;

        let (projects_a, projects_b): (Arc<dyn Repository<Project>>, Arc<dyn Repository<Project>>) =
            (repository(&a.module), repository(&b.module));
        let first = projects_a
            .create(Project::new(user, "Poked", None, Timestamp(1)).expect("valid"))
            .await
            .expect("create");
        // B neither polls nor was asked: only the poke can bring it.
        until(&b, "B holds A's project", || async {
            projects_b.get(first.id()).await.expect("get").is_some()
        })
        .await;

        server.shutdown().await.expect("shutdown");
        wait_connected(&b, false).await;
        let server = server_on(&db, &blobs, &addr).await;
        wait_connected(&b, true).await;
        wait_connected(&a, true).await;
        let second = projects_a
            .create(Project::new(user, "After restart", None, Timestamp(2)).expect("valid"))
            .await
            .expect("create");
        until(&b, "B holds the write made after the restart", || async {
            projects_b.get(second.id()).await.expect("get").is_some()
        })
        .await;
        a.shutdown().await;
        b.shutdown().await;
        server.shutdown().await.expect("shutdown");
    }
}
