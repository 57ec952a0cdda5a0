//! Upstream sync end to end: a client's outbox drained to a real server over HTTP, through a
//! fault-injecting TCP proxy.

use diesel::{prelude::*, sql_query, sql_types::BigInt};
use std::{path::PathBuf, sync::Arc, time::Duration};
use tempfile::TempDir;
use trackflow_data::{
    local::SqliteConflictRepository, DieselServerStore, HttpRemote, LocalStore, LocalStoreOptions,
    RemoteOptions, SessionReload, SqliteAudioTrackRepository, SqlitePendingOperationsRepository,
    SqliteProjectRepository, SqliteSessionStorage, SqliteUserProfileRepository, SystemClock,
};
use trackflow_domain::{
    ports::{
        AccessToken, AudioTrackRepository, PendingOperationsRepository, ProjectRepository, Session,
        SessionStorage, UserProfileRepository,
    },
    AudioTrack, Project, Timestamp, UserId, UserProfile,
};
use trackflow_executors::{ExecutorRegistry, PendingOperationsManager, UpstreamOptions, UpstreamPorts};
use trackflow_server::{AppState, RunningServer, ServerConfig};

/// A sync server on a free port over a SQLite file the test can inspect.
pub struct Server {
    pub running: RunningServer,
    pub db: PathBuf,
    _dir: TempDir,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("server.db");
        let store = DieselServerStore::open(db.to_str().expect("utf-8 path"), 2).expect("server store");
        let state = AppState::new(Arc::new(store), ServerConfig::default());
        let running = RunningServer::start("127.0.0.1:0".parse().expect("addr"), state).await.expect("start");
        Self { running, db, _dir: dir }
    }

    /// Signs up a fresh account for `user`; returns its token.
    pub async fn sign_up(&self, user: UserId) -> String {
        let email = format!("user-{}@example.com", uuid::Uuid::now_v7().simple());
        let body = serde_json::json!({"email": email, "password": "correct horse", "user_id": user});
        let response = reqwest::Client::new()
            .post(format!("{}/v1/auth/signup", self.running.url()))
            .json(&body)
            .send()
            .await
            .expect("sign up");
        assert!(response.status().is_success(), "{}", response.status());
        let body: serde_json::Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// (mutations recorded, distinct mutation ids, versions issued). A mutation applied twice
    /// would issue a version without a record of its own.
    pub fn applied(&self) -> (i64, i64, i64) {
        #[derive(QueryableByName)]
        struct Counts {
            #[diesel(sql_type = BigInt)]
            records: i64,
            #[diesel(sql_type = BigInt)]
            distinct_ids: i64,
            #[diesel(sql_type = BigInt)]
            versions: i64,
        }
        let mut conn = SqliteConnection::establish(self.db.to_str().expect("utf-8")).expect("open server db");
        let counts: Counts = sql_query(
            "SELECT (SELECT count(*) FROM applied_mutations) AS records, \
                    (SELECT count(DISTINCT mutation_id) FROM applied_mutations) AS distinct_ids, \
                    (SELECT last_version FROM server_meta) AS versions",
        )
        .get_result(&mut conn)
        .expect("counts");
        (counts.records, counts.distinct_ids, counts.versions)
    }
}

/// A client: its local store, repositories and upstream manager.
pub struct Client {
    pub store: LocalStore,
    pub user: UserId,
    pub outbox: Arc<SqlitePendingOperationsRepository>,
    pub session: Arc<SqliteSessionStorage>,
    pub projects: SqliteProjectRepository,
    pub tracks: SqliteAudioTrackRepository,
    pub profiles: SqliteUserProfileRepository,
    _dir: TempDir,
}

impl Client {
    /// A client of `server_url` signed in as `user` with `token`.
    pub async fn new(user: UserId, server_url: &str, token: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            LocalStore::open(LocalStoreOptions::new(dir.path().join("client.db")), Arc::new(SystemClock))
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
            projects: SqliteProjectRepository::new(store.clone()),
            tracks: SqliteAudioTrackRepository::new(store.clone()),
            profiles: SqliteUserProfileRepository::new(store.clone()),
            session,
            store,
            user,
            _dir: dir,
        }
    }

    /// The upstream manager of this client, with `remote` timeouts and `options`.
    pub fn manager(&self, remote: &RemoteOptions, options: UpstreamOptions) -> PendingOperationsManager {
        let session: Arc<dyn SessionStorage> = self.session.clone();
        let ports = UpstreamPorts {
            outbox: self.outbox.clone(),
            conflicts: Arc::new(SqliteConflictRepository::new(self.store.clone())),
            remote: Arc::new(HttpRemote::new(session.clone(), remote).expect("http client")),
            session: session.clone(),
            reauthenticator: Arc::new(SessionReload::new(session)),
            clock: Arc::new(SystemClock),
        };
        PendingOperationsManager::new(ports, ExecutorRegistry::default(), self.store.replica_id(), options)
    }

    /// Queues a profile, `projects` projects and `tracks` tracks in each; returns the number of
    /// operations queued.
    pub async fn write(&self, projects: usize, tracks: usize) -> usize {
        let now = Timestamp(1_800_000_000_000);
        let profile = UserProfile::new(self.user, "Tester", "tester@example.com", now).expect("profile");
        self.profiles.create(profile).await.expect("profile");
        for p in 0..projects {
            let project = Project::new(self.user, &format!("Project {p}"), None, now).expect("project");
            let project = self.projects.create(project).await.expect("project");
            for t in 0..tracks {
                let track = AudioTrack::new(project.id(), self.user, &format!("Track {t}"), 1_000, None, now)
                    .expect("track");
                self.tracks.create(track).await.expect("track");
            }
        }
        1 + projects * (1 + tracks)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_drains_to_the_server_once() {
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let client = Client::new(user, &server.running.url(), &token).await;
    let queued = client.write(3, 4).await as i64;
    let manager =
        client.manager(&RemoteOptions::default(), UpstreamOptions { batch_size: 5, ..Default::default() });

    let report = manager.process().await.expect("pass");
    assert_eq!(report.acknowledged as i64, queued, "{report:?}");
    let counts = client.outbox.counts().await.expect("counts");
    assert_eq!((counts.pending, counts.in_flight, counts.failed), (0, 0, 0));
    assert_eq!(server.applied(), (queued, queued, queued));
    let _ = Duration::ZERO;
}
