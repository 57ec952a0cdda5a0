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
    CollaboratorRole, EntityType, Project, ProjectCollaborator, ProjectPatch, Timestamp, UserId,
};
use trackflow_executors::UpstreamOptions;
use trackflow_usecases::{PullError, SyncDataManager, SyncDataOptions, ALL_SCOPE};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

impl Client {
    /// The downstream manager of this client, pulling pages of `page_size`.
    fn puller(&self, page_size: u32) -> SyncDataManager {
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
    async fn sync(&self) {
        let manager = self.manager(&RemoteOptions::default(), UpstreamOptions::default());
        let report = manager.process().await.expect("push");
        assert_eq!((report.failed, report.retrying), (0, 0), "{report:?}");
        self.assert_queue_empty(0).await;
        self.puller(500).pull(true).await.expect("pull");
    }

    async fn project(&self, project: &Project) -> Option<Project> {
        self.projects.get(project.id()).await.expect("get")
    }

    /// The HLC of the newest queued operation.
    async fn newest_write(&self) -> trackflow_domain::Hlc {
        self.outbox.list(None).await.expect("list").iter().map(|op| op.hlc).max().expect("a queued write")
    }
}

/// A server with one user on two devices, both holding `project` after a sync.
async fn two_devices() -> (Server, Client, Client, Project) {
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let a = Client::new(user, &server.running.url(), &token).await;
    let b = Client::new(user, &server.running.url(), &token).await;
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
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let a = Client::new(user, &server.running.url(), &token).await;
    let b = Client::new(user, &server.running.url(), &token).await;
    let mut created = Vec::new();
    for name in ["One", "Two", "Three"] {
        let project = Project::new(user, name, None, NOW).expect("valid");
        created.push(a.projects.create(project).await.expect("create").id());
    }
    a.sync().await;
    let mut ids: Vec<String> = created.iter().map(ToString::to_string).collect();
    ids.sort();

    // Storing the second project pulled (pages come in push order) fails inside B's database.
    let downstream = SqliteDownstreamRepository::new(b.store.clone());
    let second = created[1];
    execute(
        &b.store,
        &format!(
            "CREATE TRIGGER fail_pull BEFORE INSERT ON projects WHEN NEW.id = '{second}'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        ),
    )
    .await;
    let puller = b.puller(1);
    let failed = puller.pull(true).await;
    assert!(matches!(failed, Err(PullError::Local(_))), "{failed:?}");
    let after_failure = downstream.scope(ALL_SCOPE).await.expect("scope");
    assert!(after_failure.cursor.is_some(), "the first page and its cursor were kept");
    assert_eq!(after_failure.last_sync_at, None, "the pull did not complete");
    let held = b.projects.list_by_user(user).await.expect("list");
    assert_eq!(held.len(), 1, "exactly the first page: {held:?}");

    execute(&b.store, "DROP TRIGGER fail_pull").await;
    let report = puller.pull(false).await.expect("the next pull completes");
    assert_eq!(report.counts[&EntityType::Project].applied, 2, "resumed after the first page");
    let mut held: Vec<String> =
        b.projects.list_by_user(user).await.expect("list").iter().map(|p| p.id().to_string()).collect();
    held.sort();
    assert_eq!(held, ids);
    let stats = downstream.statistics().await.expect("statistics");
    let projects_stats = stats.iter().find(|s| s.entity_type == EntityType::Project).expect("project stats");
    assert_eq!((projects_stats.counts.applied, projects_stats.errors), (2, 0));
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
