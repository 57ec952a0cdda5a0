//! Downstream sync end to end: clients of one real server push what they wrote offline, pull
//! what the others wrote, and converge.

use crate::upstream::{Client, Server};
use std::sync::Arc;
use trackflow_data::{
    HttpRemote, RemoteOptions, SqliteCollaboratorRepository, SqliteDownstreamRepository, SystemClock,
};
use trackflow_domain::{
    ports::{
        AudioTrackRepository, CollaboratorRepository, DownstreamRepository, PendingOperationsRepository,
        ProjectRepository, SessionStorage,
    },
    AudioTrack, CollaboratorRole, EntityType, Project, ProjectCollaborator, ProjectPatch, Timestamp, UserId,
};
use trackflow_executors::UpstreamOptions;
use trackflow_usecases::{PullError, SyncDataManager, SyncDataOptions};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

impl Client {
    /// The downstream manager of this client, pulling pages of `page_size`.
    pub(crate) fn puller(&self, page_size: u32) -> SyncDataManager {
        let session: Arc<dyn SessionStorage> = self.session.clone();
        let remote = Arc::new(HttpRemote::new(session, &RemoteOptions::default()).expect("http client"));
        let store = Arc::new(SqliteDownstreamRepository::new(self.store.clone()));
        SyncDataManager::new(
            remote,
            store,
            Arc::new(SystemClock),
            SyncDataOptions { page_size, ..Default::default() },
        )
    }

    /// Pushes everything queued, then pulls everything (forced).
    pub(crate) async fn sync(&self) {
        let manager = self.manager(&RemoteOptions::default(), UpstreamOptions::default());
        let report = manager.process().await.expect("push");
        assert_eq!((report.failed, report.retrying), (0, 0), "{report:?}");
        self.assert_queue_empty(0).await;
        for (scope, outcome) in self.puller(500).pull(true).await.expect("scopes listed") {
            outcome.unwrap_or_else(|e| panic!("pull of {scope}: {e}"));
        }
    }

    async fn project(&self, project: &Project) -> Option<Project> {
        self.projects.get(project.id()).await.expect("get")
    }

    /// The HLC of the newest queued operation.
    async fn newest_write(&self) -> trackflow_domain::Hlc {
        self.outbox.list(None).await.expect("list").iter().map(|op| op.hlc).max().expect("a queued write")
    }
}

/// A server with one user signed in on two devices.
async fn one_user_two_devices() -> (Server, UserId, Client, Client) {
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let a = Client::new(user, &server.running.url(), &token).await;
    let b = Client::new(user, &server.running.url(), &token).await;
    (server, user, a, b)
}

/// [`one_user_two_devices`], both holding `project` after a sync.
async fn two_devices() -> (Server, Client, Client, Project) {
    let (server, user, a, b) = one_user_two_devices().await;
    let project =
        a.projects.create(Project::new(user, "Demo", None, NOW).expect("valid")).await.expect("create");
    a.sync().await;
    b.sync().await;
    assert_eq!(b.project(&project).await, Some(project.clone()), "the second device pulled it");
    (server, a, b, project)
}

fn rename(name: &str) -> ProjectPatch {
    ProjectPatch { name: Some(name.into()), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_of_different_fields_both_survive_on_both_devices() {
    let (_server, a, b, project) = two_devices().await;
    a.projects.update(project.id(), rename("Named on A")).await.expect("rename");
    b.projects
        .update(
            project.id(),
            ProjectPatch { description: Some(Some("Described on B".into())), ..Default::default() },
        )
        .await
        .expect("describe");
    a.sync().await;
    b.sync().await;
    a.sync().await;
    for device in [&a, &b] {
        let held = device.project(&project).await.expect("still there");
        assert_eq!((held.name(), held.description()), ("Named on A", Some("Described on B")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_of_one_field_end_with_the_later_clock_readings_value() {
    let (_server, a, b, project) = two_devices().await;
    a.projects.update(project.id(), rename("A's name")).await.expect("rename");
    b.projects.update(project.id(), rename("B's name")).await.expect("rename");
    let expected = if b.newest_write().await > a.newest_write().await { "B's name" } else { "A's name" };
    // B pushes first, so the later push is not simply the winner.
    b.sync().await;
    a.sync().await;
    b.sync().await;
    for device in [&a, &b] {
        assert_eq!(device.project(&project).await.expect("still there").name(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_wins_over_a_concurrent_update() {
    let (_server, a, b, project) = two_devices().await;
    a.projects.delete(project.id()).await.expect("delete");
    b.projects.update(project.id(), rename("Still editing")).await.expect("rename");
    a.sync().await;
    b.sync().await;
    a.sync().await;
    for device in [&a, &b] {
        assert_eq!(device.project(&project).await, None, "deleted everywhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collaborator_added_later_receives_the_project_and_its_tracks() {
    let server = Server::start().await;
    let (owner, guest) = (UserId::new(), UserId::new());
    let owner_token = server.sign_up(owner).await;
    let guest_token = server.sign_up(guest).await;
    let a = Client::new(owner, &server.running.url(), &owner_token).await;
    let b = Client::new(guest, &server.running.url(), &guest_token).await;
    a.write_projects(1, 3).await;
    a.sync().await;
    let project = a.projects.list_by_user(owner).await.expect("list").remove(0);
    b.sync().await;
    assert_eq!(b.project(&project).await, None, "not shared yet");

    let collaborators = SqliteCollaboratorRepository::new(a.store.clone());
    collaborators
        .create(ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, NOW).expect("valid"))
        .await
        .expect("invite");
    a.sync().await;
    b.sync().await;
    assert_eq!(b.project(&project).await, Some(project.clone()));
    assert_eq!(b.tracks.list_by_project(project.id()).await.expect("tracks").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_failing_midway_keeps_cache_and_cursor_and_the_next_pull_completes() {
    let (_server, user, a, b) = one_user_two_devices().await;
    let project =
        a.projects.create(Project::new(user, "Demo", None, NOW).expect("valid")).await.expect("create");
    let mut tracks = Vec::new();
    for name in ["One", "Two", "Three"] {
        let track = AudioTrack::new(project.id(), user, name, 1_000, None, NOW).expect("valid");
        tracks.push(a.tracks.create(track).await.expect("create").id());
    }
    a.sync().await;
    let scope = format!("project:{}", project.id());

    // Pages of one row come in push order: the project, then the tracks. Storing the second
    // track fails inside B's database.
    execute(
        &b.store,
        &format!(
            "CREATE TRIGGER fail_pull BEFORE INSERT ON audio_tracks WHEN NEW.id = '{}'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            tracks[1]
        ),
    )
    .await;
    let downstream = SqliteDownstreamRepository::new(b.store.clone());
    let puller = b.puller(1);
    let outcomes = puller.pull(true).await.expect("scopes listed");
    let failed = outcomes.iter().find(|(s, _)| *s == scope).map(|(_, outcome)| outcome);
    assert!(matches!(failed, Some(Err(PullError::Local(_)))), "{outcomes:?}");
    let after_failure = downstream.scope(&scope).await.expect("scope");
    assert!(after_failure.cursor.is_some(), "the first pages and their cursor were kept");
    assert_eq!(after_failure.last_sync_at, None, "the pull did not complete");
    let held: Vec<_> =
        b.tracks.list_by_project(project.id()).await.expect("tracks").iter().map(|t| t.id()).collect();
    assert_eq!(held, tracks[..1], "exactly the pages before the failure");

    execute(&b.store, "DROP TRIGGER fail_pull").await;
    let outcomes = puller.pull(false).await.expect("scopes listed");
    let report =
        outcomes.into_iter().find(|(s, _)| *s == scope).expect("the project scope").1.expect("completes");
    assert_eq!(report.counts[&EntityType::AudioTrack].applied, 2, "resumed after the failure: {report:?}");
    let mut held: Vec<_> =
        b.tracks.list_by_project(project.id()).await.expect("tracks").iter().map(|t| t.id()).collect();
    held.sort();
    tracks.sort();
    assert_eq!(held, tracks);
    let stats = downstream.statistics().await.expect("statistics");
    let track_stats = stats
        .iter()
        .find(|s| s.scope == scope && s.entity_type == EntityType::AudioTrack)
        .expect("track stats");
    assert_eq!((track_stats.counts.applied, track_stats.errors), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_project_is_its_own_scope_and_a_periodic_pull_respects_the_interval() {
    let (_server, user, a, b) = one_user_two_devices().await;
    a.write(5, 2).await;
    a.sync().await;
    let puller = b.puller(500);
    let outcomes = puller.pull(false).await.expect("scopes listed");
    assert_eq!(outcomes.len(), 6, "people and five projects: {outcomes:?}");
    assert_eq!(outcomes[0].0, "people");
    for (scope, outcome) in &outcomes {
        let report = outcome.as_ref().expect("pulled");
        assert!(report.ran, "{scope}");
        let expected = if scope == "people" { 1 } else { 3 };
        assert_eq!(report.counts.values().map(|c| c.applied).sum::<u64>(), expected, "{scope}: {report:?}");
    }
    assert_eq!(b.projects.list_by_user(user).await.expect("projects").len(), 5);
    // Nothing changed: no scope is asked for, forced or not.
    let again = puller.pull(true).await.expect("scopes listed");
    assert!(again.iter().all(|(_, o)| o.as_ref().expect("ok").up_to_date), "{again:?}");
    // One project changes: only its scope moves. Within the minimum interval a periodic pull
    // leaves it; a forced one pulls it.
    let changed = a.projects.list_by_user(user).await.expect("projects").remove(0);
    a.projects
        .update(changed.id(), ProjectPatch { name: Some("Moved".into()), ..Default::default() })
        .await
        .expect("rename");
    a.sync().await;
    let scope = format!("project:{}", changed.id());
    let periodic = puller.pull(false).await.expect("scopes listed");
    for (name, outcome) in &periodic {
        let report = outcome.as_ref().expect("ok");
        assert_eq!((report.ran, report.up_to_date), (false, *name != scope), "{name}");
    }
    let forced = puller.pull(true).await.expect("scopes listed");
    for (name, outcome) in &forced {
        let report = outcome.as_ref().expect("ok");
        assert_eq!((report.ran, report.up_to_date), (*name == scope, *name != scope), "{name}");
    }
    assert_eq!(b.project(&changed).await.expect("there").name(), "Moved");
}

/// Runs `sql` on `store`'s database.
async fn execute(store: &trackflow_data::LocalStore, sql: &str) {
    let sql = sql.to_owned();
    store
        .with_connection(move |conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query(sql).execute(conn)?;
            Ok(())
        })
        .await
        .expect("execute");
}
