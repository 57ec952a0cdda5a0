//! Upstream sync end to end: a client's outbox drained to a real server over HTTP, through a
//! fault-injecting TCP proxy.

use crate::proxy::{Fault, Proxy};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tempfile::TempDir;
use trackflow_domain::{
    ports::{
        AccessToken, BlobCache, Clock, PendingOperationsRepository, Repository, Session, SessionStorage,
    },
    OperationStatus, Timestamp, UserId,
};
use trackflow_executors::{
    queue::Backoff, ExecutorRegistry, PassReport, PendingOperationsManager, UpstreamOptions, UpstreamPorts,
};
use trackflow_music::{AudioTrack, Project, UserProfile};
use trackflow_remote::{HttpRemote, RemoteOptions};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};
use trackflow_store::{
    BlobCacheOptions, LocalStore, LocalStoreOptions, SessionReload, SqliteBlobCache,
    SqliteConflictRepository, SqlitePendingOperationsRepository, SqliteRepository, SqliteSessionStorage,
    SystemClock,
};

/// A sync server on a free port over a SQLite file the test can inspect.
pub struct Server {
    pub running: RunningServer,
    /// The store behind it, to count what it applied.
    pub store: Arc<DieselServerStore>,
    /// Its database and audio.
    dir: TempDir,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("server.db");
        let store =
            Arc::new(DieselServerStore::open(db.to_str().expect("utf-8 path"), 2).expect("server store"));
        let blobs = FsBlobStorage::open(dir.path().join("blobs")).expect("blob storage");
        let state = AppState::new(store.clone(), ServerConfig::default()).with_blobs(Arc::new(blobs));
        let running = RunningServer::start("127.0.0.1:0".parse().expect("addr"), state).await.expect("start");
        Self { running, store, dir }
    }

    /// Signs up a fresh account for `user`; returns its token.
    pub async fn sign_up(&self, user: UserId) -> String {
        self.sign_up_as(user, &format!("user-{}@example.com", uuid::Uuid::now_v7().simple())).await
    }

    /// Signs up `email` (password "correct horse") for `user`; returns its token.
    pub async fn sign_up_as(&self, user: UserId, email: &str) -> String {
        let body = serde_json::json!({"email": email, "password": "correct horse", "user_id": user});
        self.auth("signup", None, &body).await
    }

    /// Logs `email` in again; returns the new token.
    pub async fn log_in(&self, email: &str) -> String {
        self.auth("login", None, &serde_json::json!({"email": email, "password": "correct horse"})).await
    }

    /// Revokes `token`.
    pub async fn log_out(&self, token: &str) {
        self.auth("logout", Some(token), &serde_json::json!({})).await;
    }

    /// Posts to `/v1/auth/<action>`; returns the token in the answer, if any.
    async fn auth(&self, action: &str, bearer: Option<&str>, body: &serde_json::Value) -> String {
        let mut request = reqwest::Client::new().post(format!("{}/v1/auth/{action}", self.running.url()));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.json(body).send().await.expect(action);
        assert!(response.status().is_success(), "{action}: {}", response.status());
        let text = response.text().await.expect("body");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        body["token"].as_str().unwrap_or_default().to_owned()
    }

    /// (mutations recorded, distinct mutation ids, versions issued). A mutation applied twice
    /// would issue a version without a record of its own.
    pub async fn applied(&self) -> (i64, i64, i64) {
        let counts = self.store.applied_counts().await.expect("counts");
        (counts.records, counts.distinct_ids, counts.versions)
    }
}

/// A client: its local store, repositories and upstream manager.
pub struct Client {
    pub store: LocalStore,
    pub user: UserId,
    pub outbox: Arc<SqlitePendingOperationsRepository>,
    pub session: Arc<SqliteSessionStorage>,
    pub projects: SqliteRepository<Project>,
    pub tracks: SqliteRepository<AudioTrack>,
    pub profiles: SqliteRepository<UserProfile>,
    /// Its database (and the test's files).
    dir: TempDir,
}

impl Client {
    /// A client of `server_url` signed in as `user` with `token`.
    pub async fn new(user: UserId, server_url: &str, token: &str) -> Self {
        Self::with_device_clock(user, server_url, token, Arc::new(SystemClock)).await
    }

    /// [`new`](Self::new) on a device whose clock is `device`.
    pub async fn with_device_clock(
        user: UserId,
        server_url: &str,
        token: &str,
        device: Arc<dyn Clock>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(LocalStoreOptions::new(dir.path().join("client.db")), device)
            .await
            .expect("local store");
        let session = Arc::new(SqliteSessionStorage::new(store.clone()));
        session
            .save(Session {
                user_id: user,
                server_url: Some(server_url.to_owned()),
                access_token: Some(AccessToken::new(token)),
            })
            .await
            .expect("session");
        Self {
            outbox: Arc::new(SqlitePendingOperationsRepository::new(store.clone())),
            projects: SqliteRepository::<Project>::new(store.clone()),
            tracks: SqliteRepository::<AudioTrack>::new(store.clone()),
            profiles: SqliteRepository::<UserProfile>::new(store.clone()),
            session,
            store,
            user,
            dir,
        }
    }

    /// The upstream manager of this client, with `remote` timeouts and `options`.
    pub fn manager(&self, remote: &RemoteOptions, options: UpstreamOptions) -> PendingOperationsManager {
        self.manager_with_clock(remote, options, Arc::new(SystemClock))
    }

    /// [`manager`](Self::manager) reading the time from `clock`.
    pub fn manager_with_clock(
        &self,
        remote: &RemoteOptions,
        options: UpstreamOptions,
        clock: Arc<dyn Clock>,
    ) -> PendingOperationsManager {
        let session: Arc<dyn SessionStorage> = self.session.clone();
        let http = Arc::new(
            HttpRemote::new(session.clone(), remote)
                .expect("http client")
                .with_server_clock(self.store.server_clock()),
        );
        let ports = UpstreamPorts {
            outbox: self.outbox.clone(),
            conflicts: Arc::new(SqliteConflictRepository::new(self.store.clone())),
            remote: http.clone(),
            blobs: Arc::new(SqliteBlobCache::new(self.store.clone(), BlobCacheOptions::beside(&self.store))),
            blob_remote: http,
            session: session.clone(),
            reauthenticator: Arc::new(SessionReload::new(session)),
            clock,
        };
        PendingOperationsManager::new(ports, ExecutorRegistry::default(), self.store.replica_id(), options)
    }

    /// Queues a profile, `projects` projects and `tracks` tracks in each; returns the number of
    /// operations queued.
    pub async fn write(&self, projects: usize, tracks: usize) -> usize {
        let profile =
            UserProfile::new(self.user, "Tester", "tester@example.com", WRITTEN_AT).expect("profile");
        self.profiles.create(profile).await.expect("profile");
        1 + self.write_projects(projects, tracks).await
    }

    /// Queues `projects` projects and `tracks` tracks in each; returns the number of operations
    /// queued.
    pub async fn write_projects(&self, projects: usize, tracks: usize) -> usize {
        for p in 0..projects {
            let project =
                Project::new(self.user, &format!("Project {p}"), None, WRITTEN_AT).expect("project");
            let project = self.projects.create(project).await.expect("project");
            for t in 0..tracks {
                let track =
                    AudioTrack::new(project.id(), self.user, &format!("Track {t}"), 1_000, None, WRITTEN_AT)
                        .expect("track");
                self.tracks.create(track).await.expect("track");
            }
        }
        projects * (1 + tracks)
    }

    /// Asserts the end every test must reach: the outbox holds nothing but `failed` parked
    /// operations.
    pub async fn assert_queue_empty(&self, failed: u64) {
        let counts = self.outbox.counts().await.expect("counts");
        assert_eq!((counts.pending, counts.in_flight, counts.failed), (0, 0, failed), "{counts:?}");
    }
}

/// When the test workloads were made.
const WRITTEN_AT: Timestamp = Timestamp(1_800_000_000_000);

/// A clock that moves only when the test moves it.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock showing the current time.
    pub fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(SystemClock.now())))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        *self.0.lock().expect("clock") = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_drains_to_the_server_once() {
    trackflow_music::install().expect("the music registry installs");
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let client = Client::new(user, &server.running.url(), &token).await;
    let queued = client.write(3, 4).await as i64;
    let manager =
        client.manager(&RemoteOptions::default(), UpstreamOptions { batch_size: 5, ..Default::default() });

    let report = manager.process().await.expect("pass");
    assert_eq!(report.acknowledged as i64, queued, "{report:?}");
    client.assert_queue_empty(0).await;
    assert_eq!(server.applied().await, (queued, queued, queued));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_pauses_upstream_until_the_user_signs_in_again() {
    trackflow_music::install().expect("the music registry installs");
    let server = Server::start().await;
    let user = UserId::new();
    let email = format!("ana-{}@example.com", uuid::Uuid::now_v7().simple());
    let token = server.sign_up_as(user, &email).await;
    let client = Client::new(user, &server.running.url(), &token).await;
    let queued = client.write(2, 2).await as i64;
    let manager = client.manager(&RemoteOptions::default(), UpstreamOptions::default());
    server.log_out(&token).await;

    // 401, and the stored session holds no other token: paused, nothing used up, nothing lost.
    let report = manager.process().await.expect("pass");
    assert_eq!((report.requests, report.acknowledged), (1, 0));
    let health = manager.health().await.expect("health");
    assert_eq!(health.status, trackflow_executors::HealthStatus::Unhealthy);
    assert!(health.last_error.as_deref().is_some_and(|e| e.starts_with("sign-in required")), "{health:?}");
    let ops = client.outbox.list(None).await.expect("list");
    assert_eq!(ops.len() as i64, queued);
    assert!(ops.iter().all(|op| op.attempts == 0 && op.status == OperationStatus::Pending));
    assert_eq!(manager.process().await.expect("pass").requests, 0, "waits for sign-in");

    // The user signs in again (here or in another process): the stored session changes, and
    // resume() sends the same operations.
    let fresh = server.log_in(&email).await;
    let mut session = client.session.load().await.expect("load").expect("session");
    session.access_token = Some(AccessToken::new(fresh));
    client.session.save(session).await.expect("save");
    manager.resume();
    let report = manager.process().await.expect("pass");
    assert_eq!(report.acknowledged as i64, queued);
    client.assert_queue_empty(0).await;
    assert_eq!(server.applied().await, (queued, queued, queued));
}

/// The fault tests' workload: a profile, 3 projects, 4 tracks in each.
const PROJECTS: usize = 3;
const TRACKS: usize = 4;
/// The first request carries the profile and the projects; the tracks wait for their
/// project's acknowledgement and go in the second.
const FIRST_BATCH: u64 = 1 + PROJECTS as u64;
/// Jitter pinned to one half: every wait is exactly half its ceiling, and the default backoff
/// and offline probe ceilings are 1 s on the first failure.
const FIRST_WAIT_MS: i64 = 500;

/// A client that reaches the server through a [`Proxy`], with a manager on a [`ManualClock`]
/// and pinned jitter, and the fault tests' workload queued.
struct Faulty {
    manager: PendingOperationsManager,
    client: Client,
    clock: Arc<ManualClock>,
    proxy: Proxy,
    server: Server,
    queued: i64,
}

impl Faulty {
    async fn new(remote: RemoteOptions, options: UpstreamOptions) -> Self {
        let server = Server::start().await;
        let proxy = Proxy::start(server.running.addr());
        let user = UserId::new();
        let token = server.sign_up(user).await;
        let client = Client::new(user, &proxy.url(), &token).await;
        let queued = client.write(PROJECTS, TRACKS).await as i64;
        let clock = ManualClock::new();
        let manager = client.manager_with_clock(&remote, options, clock.clone()).with_jitter(|| 0.5);
        Self { manager, client, clock, proxy, server, queued }
    }

    async fn pass(&self) -> PassReport {
        self.manager.process().await.expect("pass")
    }

    /// When a retry of what failed at `failed_at` is due.
    fn first_retry(failed_at: Timestamp) -> Timestamp {
        failed_at.plus_millis(FIRST_WAIT_MS)
    }

    /// Steps the manager (moving the clock to each due time) until the queue is empty.
    async fn drain(&self) {
        for _ in 0..10 {
            let report = self.pass().await;
            let counts = self.client.outbox.counts().await.expect("counts");
            if counts.pending + counts.in_flight == 0 {
                return;
            }
            self.clock.set(report.next_due.unwrap_or_else(|| panic!("stuck: {report:?} {counts:?}")));
        }
        panic!("the queue did not drain in 10 passes");
    }

    /// The end of every fault test: each operation applied exactly once, nothing queued.
    async fn assert_applied_once(&self) {
        let n = self.queued;
        assert_eq!(self.server.applied().await, (n, n, n), "(records, distinct ids, versions)");
        self.client.assert_queue_empty(0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acknowledgement_is_resent_and_comes_back_as_duplicates() {
    trackflow_music::install().expect("the music registry installs");
    let t = Faulty::new(RemoteOptions::default(), UpstreamOptions::default()).await;
    let start = t.clock.now();
    t.proxy.inject(Fault::CutAfterRequest);

    let first = t.pass().await;
    // The server applied the first batch; the client never heard and will send it again.
    assert_eq!((first.requests, first.acknowledged, first.retrying), (1, 0, FIRST_BATCH), "{first:?}");
    assert_eq!(first.next_due, Some(Faulty::first_retry(start)));
    let b = FIRST_BATCH as i64;
    assert_eq!(t.server.applied().await, (b, b, b));
    let cut = t.client.outbox.list(None).await.expect("list");
    assert!(cut
        .iter()
        .filter(|op| op.attempts == 1)
        .all(|op| op.last_error.as_deref().is_some_and(|e| e.starts_with("connection failed"))));

    t.clock.set(Faulty::first_retry(start));
    let second = t.pass().await;
    // The resent batch and the tracks: the resent operations came back as duplicates (the
    // server recorded no second application of them) and left the queue.
    assert_eq!((second.requests, second.acknowledged), (2, t.queued as u64), "{second:?}");
    // One connection per request, all three answered by the server.
    assert_eq!((t.proxy.tally().accepted, t.proxy.tally().answered), (3, 3));
    t.assert_applied_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_delayed_past_the_timeout_is_resent_and_comes_back_as_duplicates() {
    trackflow_music::install().expect("the music registry installs");
    let remote = RemoteOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_millis(300),
    };
    // Room for a retry that a slow machine makes time out as well: the queue must still drain.
    let patient = Backoff { max_attempts: 10, ..Backoff::default() };
    let t = Faulty::new(remote, UpstreamOptions { backoff: patient, ..Default::default() }).await;
    t.proxy.inject(Fault::Withhold);

    let first = t.pass().await;
    assert_eq!((first.requests, first.acknowledged, first.retrying), (1, 0, FIRST_BATCH), "{first:?}");
    let sent = t.client.outbox.list(None).await.expect("list");
    let timed_out = sent.iter().filter(|op| op.attempts == 1).collect::<Vec<_>>();
    assert_eq!(timed_out.len() as u64, FIRST_BATCH);
    assert!(timed_out.iter().all(|op| op.last_error.as_deref().is_some_and(|e| e.contains("timed out"))));
    // The server applied what the client gave up on.
    t.proxy.server_answered(1).await;
    let b = FIRST_BATCH as i64;
    assert_eq!(t.server.applied().await, (b, b, b));

    t.drain().await;
    t.assert_applied_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_counts_an_attempt_and_the_batch_is_sent_again_after_the_backoff() {
    trackflow_music::install().expect("the music registry installs");
    let t = Faulty::new(RemoteOptions::default(), UpstreamOptions::default()).await;
    let start = t.clock.now();
    t.proxy.inject(Fault::Answer500);

    let first = t.pass().await;
    assert_eq!((first.requests, first.acknowledged, first.retrying), (1, 0, FIRST_BATCH), "{first:?}");
    assert_eq!(first.next_due, Some(Faulty::first_retry(start)));
    let sent: Vec<_> =
        t.client.outbox.list(None).await.expect("list").into_iter().filter(|op| op.sent).collect();
    assert_eq!(sent.len() as u64, FIRST_BATCH);
    for op in &sent {
        assert_eq!((op.status, op.attempts), (OperationStatus::Pending, 1));
        assert_eq!(op.next_attempt_at, Some(Faulty::first_retry(start)));
        assert_eq!(op.last_error.as_deref(), Some("injected by the test proxy"));
    }
    assert_eq!(t.server.applied().await, (0, 0, 0));

    // Nothing goes out before the backoff ends.
    assert_eq!(t.pass().await.requests, 0);
    t.clock.set(Faulty::first_retry(start));
    let second = t.pass().await;
    assert_eq!((second.requests, second.acknowledged), (2, t.queued as u64), "{second:?}");
    assert_eq!((t.proxy.tally().accepted, t.proxy.tally().answered), (3, 2));
    t.assert_applied_once().await;
}

/// An audio upload cut at 90 % resumes from what the server kept: the next attempt sends only
/// the rest, and the server stores the whole file, checked against its hash. The file is
/// `TRACKFLOW_RESUME_MIB` MiB (8 unless set; the figures in docs/PERFORMANCE.md are at 50).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_upload_cut_at_ninety_percent_sends_only_the_rest() {
    trackflow_music::install().expect("the music registry installs");
    let mib: u64 = std::env::var("TRACKFLOW_RESUME_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let size = mib * 1024 * 1024;
    let server = Server::start().await;
    let proxy = Proxy::start(server.running.addr());
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let client = Client::new(user, &proxy.url(), &token).await;
    let clock = ManualClock::new();
    let manager = client
        .manager_with_clock(&RemoteOptions::default(), UpstreamOptions::default(), clock.clone())
        .with_jitter(|| 0.5);
    let project = client
        .projects
        .create(Project::new(user, "Album", None, WRITTEN_AT).expect("project"))
        .await
        .expect("project");
    manager.process().await.expect("the project goes up");

    let file = client.dir.path().join("take.wav");
    let bytes: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &bytes).expect("audio file");
    let cache = SqliteBlobCache::new(client.store.clone(), BlobCacheOptions::beside(&client.store));
    let cached = cache.import(file).await.expect("import");
    let track = AudioTrack::new(project.id(), user, "Take", 1_000, Some(cached.hash.as_str()), WRITTEN_AT)
        .expect("track");
    client.tracks.create(track).await.expect("track");

    // The upload's HEAD passes; its PUT is cut after 90 % of the file.
    let cut_at = size * 9 / 10;
    proxy.inject(Fault::Pass);
    proxy.inject(Fault::CutBody { after: cut_at });
    let before = proxy.tally().body_bytes;
    let report = manager.process().await.expect("pass");
    assert_eq!(report.retrying, 1, "the cut upload waits for a retry: {report:?}");
    let first = proxy.tally().body_bytes - before;
    assert_eq!(first, cut_at);

    clock.set(report.next_due.expect("a retry is due"));
    let before = proxy.tally().body_bytes;
    let report = manager.process().await.expect("pass");
    assert_eq!(report.acknowledged, 2, "the upload, then its track: {report:?}");
    let resumed = proxy.tally().body_bytes - before;
    client.assert_queue_empty(0).await;
    let stored = server.dir.path().join("blobs").join(&cached.hash.as_str()[..2]).join(cached.hash.as_str());
    assert_eq!(std::fs::read(stored).expect("stored audio"), bytes, "the whole file, once");
    // The resume's request bodies: the rest of the file, and the track's push.
    let rest = size - cut_at;
    assert!(resumed >= rest && resumed < rest + 64 * 1024, "resumed {resumed} bytes for a rest of {rest}");
    eprintln!(
        "{mib} MiB upload cut at 90 %: {first} bytes before the cut, {resumed} to finish \
         (a full resend: {size}); {} in all against {} resending",
        first + resumed,
        first + size
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_pauses_without_counting_attempts() {
    trackflow_music::install().expect("the music registry installs");
    let mut t = Faulty::new(RemoteOptions::default(), UpstreamOptions::default()).await;
    let start = t.clock.now();
    t.proxy.refuse().await;

    let first = t.pass().await;
    assert_eq!((first.requests, first.acknowledged), (1, 0), "{first:?}");
    let probe = start.plus_millis(FIRST_WAIT_MS);
    assert_eq!(first.next_due, Some(probe), "the offline probe");
    let waiting = t.client.outbox.list(None).await.expect("list");
    for op in &waiting {
        assert_eq!((op.status, op.attempts, op.next_attempt_at), (OperationStatus::Pending, 0, None));
    }
    let refused = waiting.iter().filter(|op| op.sent);
    assert!(refused
        .map(|op| op.last_error.as_deref())
        .all(|e| e.is_some_and(|e| e.contains("cannot connect"))));
    // Paused: no request until the probe, even once the server can be reached again.
    assert_eq!(t.pass().await.requests, 0);
    t.proxy.heal();
    assert_eq!(t.pass().await.requests, 0);
    assert_eq!(t.proxy.tally().accepted, 0);

    t.clock.set(probe);
    let second = t.pass().await;
    assert_eq!((second.requests, second.acknowledged), (2, t.queued as u64), "{second:?}");
    assert_eq!((t.proxy.tally().accepted, t.proxy.tally().answered), (2, 2));
    t.assert_applied_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_operation_is_parked_and_the_other_999_drain() {
    trackflow_music::install().expect("the music registry installs");
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let client = Client::new(user, &server.running.url(), &token).await;
    // 999 good operations (a profile, 499 projects with a track each) and, among them, a
    // project created in another account's name, which the server always refuses.
    let mut good = client.write(250, 1).await;
    let stranger = UserId::new();
    let poison = Project::new(stranger, "Someone else's", None, WRITTEN_AT).expect("project");
    client.projects.create(poison.clone()).await.expect("poison");
    good += client.write_projects(249, 1).await;
    assert_eq!(good, 999);
    let manager = client.manager(&RemoteOptions::default(), UpstreamOptions::default());

    let report = manager.process().await.expect("pass");
    assert_eq!((report.acknowledged, report.failed, report.retrying), (999, 1, 0), "{report:?}");
    let failed = client.outbox.list(Some(OperationStatus::Failed)).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].entity.id, poison.id().as_uuid());
    assert_eq!(failed[0].last_error.as_deref(), Some("forbidden: a project is created by its owner"));
    assert_eq!(server.applied().await, (999, 999, 999));
    client.assert_queue_empty(1).await;

    // Parked: not sent again.
    let again = manager.process().await.expect("pass");
    assert_eq!(again.requests, 0, "{again:?}");
}
