//! Downstream sync end to end: clients of one real server push what they wrote offline, pull
//! what the others wrote, and converge.

use crate::upstream::{Client, Server};
use std::sync::Arc;
use trackflow_domain::SyncEntity;
use trackflow_domain::{
    ports::{
        DownstreamRepository, PendingOperationsRepository, RemoteDataSource, Repository, Retention,
        ServerStore, SessionStorage,
    },
    protocol::{EntityState, PullRequest, PullResponse},
    CollaboratorRole, Timestamp, UserId,
};
use trackflow_executors::UpstreamOptions;
use trackflow_music::{
    AudioComment, AudioCommentPatch, AudioTrack, AudioTrackPatch, Project, ProjectCollaborator, ProjectPatch,
    UserProfile,
};
use trackflow_remote::{HttpRemote, RemoteOptions};
use trackflow_store::{SqliteDownstreamRepository, SqliteRepository, SystemClock};
use trackflow_usecases::{PullError, SyncDataManager, SyncDataOptions, SyncUseCases};
use uuid::Uuid;

const NOW: Timestamp = Timestamp(1_800_000_000_000);

impl Client {
    /// The downstream manager of this client, pulling pages of `page_size`.
    pub(crate) fn puller(&self, page_size: u32) -> SyncDataManager {
        let session: Arc<dyn SessionStorage> = self.session.clone();
        let remote = Arc::new(
            HttpRemote::new(session, &RemoteOptions::default())
                .expect("http client")
                .with_server_clock(self.store.server_clock()),
        );
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

    /// Pushes everything queued, and nothing else: the server acknowledges `n` operations.
    async fn push(&self, n: u64) {
        let manager = self.manager(&RemoteOptions::default(), UpstreamOptions::default());
        let report = manager.process().await.expect("push");
        assert_eq!(report.acknowledged, n, "{report:?}");
        self.assert_queue_empty(0).await;
    }

    /// The page of `limit` rows a pull of `scope` after `cursor` (from the start if `None`)
    /// gets now, not applied.
    async fn fetch(&self, scope: &str, cursor: Option<&str>, limit: u32) -> Page {
        let session: Arc<dyn SessionStorage> = self.session.clone();
        let remote = HttpRemote::new(session, &RemoteOptions::default()).expect("http client");
        let request = PullRequest { cursor: cursor.map(str::to_owned), limit, scope: Some(scope.to_owned()) };
        match remote.pull(request).await.expect("pull") {
            PullResponse::Changes { changes, next_cursor, .. } => Page { changes, cursor: next_cursor },
            PullResponse::Reset => panic!("reset"),
        }
    }

    /// Applies `page` of `scope` as the pull that fetched it would.
    async fn apply(&self, scope: &str, page: &Page) {
        SqliteDownstreamRepository::new(self.store.clone())
            .apply_page(
                scope,
                page.changes.clone(),
                Vec::new(),
                page.cursor.clone(),
                SyncUseCases::default().plan(),
            )
            .await
            .expect("apply");
    }

    /// The name this client holds for `project`.
    async fn name(&self, project: &Project) -> String {
        self.project(project).await.expect("still there").name().to_owned()
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

/// A pulled page, kept to be applied later.
struct Page {
    changes: Vec<EntityState>,
    cursor: String,
}

impl Page {
    /// The text `field` of entity `id` has in this page.
    fn text(&self, id: Uuid, field: &str) -> Option<&str> {
        let state = self.changes.iter().find(|c| c.entity_id == id)?;
        state.fields.get(field)?.as_str()
    }
}

fn scope_of(project: &Project) -> String {
    format!("project:{}", project.id())
}

/// Two users, each with one device: (server, owner, guest, owner's device, guest's device).
async fn owner_and_guest() -> (Server, UserId, UserId, Client, Client) {
    let server = Server::start().await;
    let (owner, guest) = (UserId::new(), UserId::new());
    let owner_token = server.sign_up(owner).await;
    let guest_token = server.sign_up(guest).await;
    let a = Client::new(owner, &server.running.url(), &owner_token).await;
    let b = Client::new(guest, &server.running.url(), &guest_token).await;
    (server, owner, guest, a, b)
}

fn rename(name: &str) -> ProjectPatch {
    ProjectPatch { name: Some(name.into()), ..Default::default() }
}

fn describe(text: &str) -> ProjectPatch {
    ProjectPatch { description: Some(Some(text.into())), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_of_different_fields_both_survive_on_both_devices() {
    trackflow_music::install().expect("the music registry installs");
    let (_server, a, b, project) = two_devices().await;
    a.projects.update(project.id(), rename("Named on A")).await.expect("rename");
    b.projects.update(project.id(), describe("Described on B")).await.expect("describe");
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
    trackflow_music::install().expect("the music registry installs");
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
    trackflow_music::install().expect("the music registry installs");
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
    trackflow_music::install().expect("the music registry installs");
    let (_server, owner, guest, a, b) = owner_and_guest().await;
    a.write_projects(1, 3).await;
    a.sync().await;
    let project = a.projects.list_by(Project::BY_MEMBER, owner.into()).await.expect("list").remove(0);
    b.sync().await;
    assert_eq!(b.project(&project).await, None, "not shared yet");

    let collaborators = SqliteRepository::<ProjectCollaborator>::new(a.store.clone());
    collaborators
        .create(ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, NOW).expect("valid"))
        .await
        .expect("invite");
    a.sync().await;
    b.sync().await;
    assert_eq!(b.project(&project).await, Some(project.clone()));
    assert_eq!(b.tracks.list_by_parent(project.id().into()).await.expect("tracks").len(), 3);
}

/// A collaborator removed from a project stops holding it: the next pull removes the project
/// and everything in it from that device, and leaves the device's other data alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collaborator_removed_from_a_project_no_longer_holds_it() {
    trackflow_music::install().expect("the music registry installs");
    let (_server, owner, guest, a, b) = owner_and_guest().await;
    a.write_projects(1, 3).await;
    let project = a.projects.list_by(Project::BY_MEMBER, owner.into()).await.expect("list").remove(0);
    let invited = SqliteRepository::<ProjectCollaborator>::new(a.store.clone())
        .create(ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, NOW).expect("valid"))
        .await
        .expect("invite");
    a.sync().await;
    b.write_projects(1, 2).await;
    b.sync().await;
    assert_eq!(b.tracks.list_by_parent(project.id().into()).await.expect("tracks").len(), 3);
    let own = b
        .projects
        .list_by(Project::BY_MEMBER, guest.into())
        .await
        .expect("list")
        .into_iter()
        .find(|p| p.id() != project.id());
    let own = own.expect("B's own project");

    SqliteRepository::<ProjectCollaborator>::new(a.store.clone()).delete(invited.id()).await.expect("remove");
    a.sync().await;
    let outcomes = b.puller(500).pull(true).await.expect("scopes");
    let scope = format!("project:{}", project.id());
    let removed =
        outcomes.iter().find(|(s, _)| *s == scope).map(|(_, o)| o.as_ref().expect("forgotten").removed);
    // The project, its 3 tracks and B's collaborator record.
    assert_eq!(removed, Some(5), "{outcomes:?}");
    assert_eq!(b.project(&project).await, None);
    assert!(b.tracks.list_by_parent(project.id().into()).await.expect("tracks").is_empty());
    assert_eq!(b.project(&own).await, Some(own.clone()), "B's own project stays");
    assert_eq!(b.tracks.list_by_parent(own.id().into()).await.expect("tracks").len(), 2);
    // Forgotten once: the next pull has nothing to remove.
    let again = b.puller(500).pull(true).await.expect("scopes");
    assert!(again.iter().all(|(s, _)| *s != scope), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_failing_midway_keeps_cache_and_cursor_and_the_next_pull_completes() {
    trackflow_music::install().expect("the music registry installs");
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
        b.tracks.list_by_parent(project.id().into()).await.expect("tracks").iter().map(|t| t.id()).collect();
    assert_eq!(held, tracks[..1], "exactly the pages before the failure");

    execute(&b.store, "DROP TRIGGER fail_pull").await;
    let outcomes = puller.pull(false).await.expect("scopes listed");
    let report =
        outcomes.into_iter().find(|(s, _)| *s == scope).expect("the project scope").1.expect("completes");
    assert_eq!(report.counts[&AudioTrack::ENTITY_TYPE].applied, 2, "resumed after the failure: {report:?}");
    let mut held: Vec<_> =
        b.tracks.list_by_parent(project.id().into()).await.expect("tracks").iter().map(|t| t.id()).collect();
    held.sort();
    tracks.sort();
    assert_eq!(held, tracks);
    let stats = downstream.statistics().await.expect("statistics");
    let track_stats = stats
        .iter()
        .find(|s| s.scope == scope && s.entity_type == AudioTrack::ENTITY_TYPE)
        .expect("track stats");
    assert_eq!((track_stats.counts.applied, track_stats.errors), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_project_is_its_own_scope_and_a_periodic_pull_respects_the_interval() {
    trackflow_music::install().expect("the music registry installs");
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
    assert_eq!(b.projects.list_by(Project::BY_MEMBER, user.into()).await.expect("projects").len(), 5);
    // Nothing changed: no scope is asked for, forced or not.
    let again = puller.pull(true).await.expect("scopes listed");
    assert!(again.iter().all(|(_, o)| o.as_ref().expect("ok").up_to_date), "{again:?}");
    // One project changes: only its scope moves. Within the minimum interval a periodic pull
    // leaves it; a forced one pulls it.
    let changed = a.projects.list_by(Project::BY_MEMBER, user.into()).await.expect("projects").remove(0);
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

/// Read-your-writes: pages fetched before an acknowledged write and applied after it (pulls in
/// flight) do not bring back an older state, nor does the next pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_fetched_before_an_acknowledged_write_does_not_undo_it() {
    trackflow_music::install().expect("the music registry installs");
    let (_server, a, _b, project) = two_devices().await;
    let scope = scope_of(&project);
    let oldest = a.fetch(&scope, None, 500).await;
    a.projects.update(project.id(), rename("First")).await.expect("rename");
    a.push(1).await;
    // Newer than what A last pulled: merged, not skipped for its version.
    let newer = a.fetch(&scope, None, 500).await;
    let name_in = |page: &Page| page.text(project.id().as_uuid(), "name").map(str::to_owned);
    assert_eq!((name_in(&oldest), name_in(&newer)), (Some("Demo".into()), Some("First".into())));
    a.projects.update(project.id(), rename("Second")).await.expect("rename");
    a.push(1).await;

    for stale in [&newer, &oldest] {
        a.apply(&scope, stale).await;
        assert_eq!(a.name(&project).await, "Second");
    }
    a.sync().await;
    assert_eq!(a.name(&project).await, "Second");
}

/// Read-your-writes: B, which never pulled A's acknowledged write, edits another field; pulls
/// bring B's edit and keep A's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_from_another_device_after_an_acknowledged_write_keeps_the_write() {
    trackflow_music::install().expect("the music registry installs");
    let (_server, a, b, project) = two_devices().await;
    a.projects.update(project.id(), rename("Named on A")).await.expect("rename");
    a.push(1).await;
    b.projects.update(project.id(), describe("Described on B")).await.expect("describe");
    b.push(1).await;
    for device in [&a, &b] {
        device.sync().await;
        let held = device.project(&project).await.expect("still there");
        assert_eq!((held.name(), held.description()), ("Named on A", Some("Described on B")));
    }
}

/// Read-your-writes from scratch: a pull the server answers with reset, then a reset followed by
/// a stale page (nothing is skipped for its version then), still show the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_from_scratch_after_an_acknowledged_write_keeps_it() {
    trackflow_music::install().expect("the music registry installs");
    let (server, a, _b, project) = two_devices().await;
    let scope = scope_of(&project);
    let stale = a.fetch(&scope, None, 500).await;
    assert_eq!(stale.text(project.id().as_uuid(), "name"), Some("Demo"));
    a.projects.update(project.id(), rename("Renamed")).await.expect("rename");
    a.push(1).await;
    // Every cursor from before the write is now answered with reset.
    server.store.purge(NOW, Retention::Versions(0)).await.expect("purge");
    let puller = a.puller(500);
    let report = puller.pull_scope(&scope, true).await.expect("pull");
    assert!(report.reset, "{report:?}");
    assert_eq!(a.name(&project).await, "Renamed");

    SqliteDownstreamRepository::new(a.store.clone()).reset(&scope).await.expect("reset");
    a.apply(&scope, &stale).await;
    assert_eq!(a.name(&project).await, "Renamed");
    let report = puller.pull_scope(&scope, true).await.expect("pull");
    assert!(report.reset, "the stale page's cursor is from before the purge: {report:?}");
    assert_eq!(a.name(&project).await, "Renamed");
}

/// Read-your-writes for a row kept back until its parent arrives: a stale page landing midway
/// through a pull does not replace the newer state waiting there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_page_landing_while_a_row_waits_for_its_parent_does_not_undo_a_write() {
    trackflow_music::install().expect("the music registry installs");
    let (_server, user, a, b) = one_user_two_devices().await;
    let project =
        a.projects.create(Project::new(user, "Demo", None, NOW).expect("valid")).await.expect("create");
    let track = AudioTrack::new(project.id(), user, "Take", 1_000, None, NOW).expect("valid");
    let track = a.tracks.create(track).await.expect("create");
    let comments = SqliteRepository::<AudioComment>::new(a.store.clone());
    let comment = AudioComment::new(&track, user, "Original", 0, NOW).expect("valid");
    let comment = comments.create(comment).await.expect("create");
    a.push(3).await;
    let retitle = |name: &str| AudioTrackPatch { name: Some(name.into()), ..Default::default() };
    a.tracks.update(track.id(), retitle("Take 2")).await.expect("rename");
    a.push(1).await;
    let scope = scope_of(&project);
    let content_in = |page: &Page| page.text(comment.id().as_uuid(), "content").map(str::to_owned);
    let has_track = |page: &Page| page.changes.iter().any(|c| c.entity_id == track.id().as_uuid());
    // Two rows a page: the project and the comment; the track, renamed since, comes after.
    let stale = b.fetch(&scope, None, 2).await;
    assert_eq!((content_in(&stale), has_track(&stale)), (Some("Original".into()), false));
    comments.update(comment.id(), AudioCommentPatch { content: Some("Edited".into()) }).await.expect("edit");
    a.push(1).await;
    a.tracks.update(track.id(), retitle("Take 3")).await.expect("rename");
    a.push(1).await;

    // B pulls two rows a page. The edited comment waits for its track; the stale page (of a pull
    // of the scope started before the edit) lands; then the track arrives.
    let first = b.fetch(&scope, None, 2).await;
    assert_eq!((content_in(&first), has_track(&first)), (Some("Edited".into()), false));
    b.apply(&scope, &first).await;
    b.apply(&scope, &stale).await;
    let second = b.fetch(&scope, Some(&first.cursor), 2).await;
    assert!(has_track(&second));
    b.apply(&scope, &second).await;
    b.sync().await;
    let held = SqliteRepository::<AudioComment>::new(b.store.clone()).get(comment.id()).await.expect("get");
    assert_eq!(held.expect("pulled").content(), "Edited");
}

/// Runs `sql` on `store`'s database.
async fn execute(store: &trackflow_store::LocalStore, sql: &str) {
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

/// Every visible row of every type `client` holds, type by type.
async fn everything(
    client: &Client,
) -> Vec<(trackflow_domain::EntityType, Vec<trackflow_domain::entities::AnyEntity>)> {
    let repositories = trackflow_store::Repositories::new(client.store.clone());
    let mut rows = Vec::new();
    for &entity_type in trackflow_domain::EntityType::all() {
        rows.push((entity_type, repositories.visible(entity_type).await.expect("visible rows")));
    }
    rows
}

/// Writes the server refuses for good leave no trace on the device: an editor's offline edits,
/// sent after the owner made them a viewer, are refused; the next pull brings every row they
/// touched back to the server's state (a refused create disappears), the device says how many,
/// and once the refused operations are discarded the device equals a fresh device of the same
/// user, row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_for_good_are_undone_and_the_device_equals_the_server() {
    trackflow_music::install().expect("the music registry installs");
    let (server, owner, guest, a, b) = owner_and_guest().await;
    let project =
        a.projects.create(Project::new(owner, "Band", None, NOW).expect("valid")).await.expect("create");
    let track = a
        .tracks
        .create(AudioTrack::new(project.id(), owner, "Intro", 10_000, None, NOW).expect("valid"))
        .await
        .expect("track");
    let members = SqliteRepository::<ProjectCollaborator>::new(a.store.clone());
    let membership = members
        .create(ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, NOW).expect("valid"))
        .await
        .expect("invite");
    a.sync().await;
    b.sync().await;

    // Offline, the editor renames the project and the track and comments on the track.
    b.projects.update(project.id(), rename("The guest's band")).await.expect("an editor renames");
    let retitle = AudioTrackPatch { name: Some("Outro".into()), ..Default::default() };
    b.tracks.update(track.id(), retitle).await.expect("an editor retitles");
    let comments = SqliteRepository::<AudioComment>::new(b.store.clone());
    let comment = AudioComment::new(&track, guest, "louder", 1_000, NOW).expect("valid");
    let comment = comments.create(comment).await.expect("an editor comments");
    // Meanwhile the owner makes them a viewer.
    let demote = trackflow_music::ProjectCollaboratorPatch { role: Some(CollaboratorRole::Viewer) };
    members.update(membership.id(), demote).await.expect("demote");
    a.sync().await;

    let report =
        b.manager(&RemoteOptions::default(), UpstreamOptions::default()).process().await.expect("push");
    assert_eq!((report.acknowledged, report.failed), (0, 3), "{report:?}");
    let outcomes = b.puller(500).pull(true).await.expect("scopes");
    let scope = scope_of(&project);
    let pulled =
        outcomes.into_iter().find(|(s, _)| *s == scope).expect("the project's scope").1.expect("pull");
    let reverted: u64 = pulled.counts.values().map(|c| c.reverted).sum();
    assert_eq!(reverted, 2, "the project and the track went back; the comment was never on the server");
    assert_eq!(b.name(&project).await, "Band");
    assert_eq!(b.tracks.get(track.id()).await.expect("get").expect("visible").name(), "Intro");
    assert_eq!(comments.get(comment.id()).await.expect("get"), None, "the refused comment is gone");
    // Nothing waits any longer: the next pull is incremental again and reverts nothing.
    let again = b.puller(500).pull(true).await.expect("scopes");
    let again = again.into_iter().find(|(s, _)| *s == scope).expect("scope").1.expect("pull");
    assert_eq!(again.counts.values().map(|c| c.reverted).sum::<u64>(), 0);

    // The refused operations stay listed until the user drops them; then the device equals the
    // server as a fresh device of the same user sees it.
    let failed: Vec<_> = b.outbox.list(Some(trackflow_domain::OperationStatus::Failed)).await.expect("list");
    assert!(failed.iter().all(|op| op.last_error.as_deref().is_some_and(|e| e.starts_with("forbidden"))));
    b.outbox.discard_failed(failed.iter().map(|op| op.id).collect()).await.expect("discard");
    b.assert_queue_empty(0).await;
    let left = b
        .store
        .with_connection(move |conn| {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let count: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM audio_comments WHERE id = ?")
                .bind::<diesel::sql_types::Text, _>(comment.id().to_string())
                .get_result(conn)?;
            Ok(count.n)
        })
        .await
        .expect("count");
    assert_eq!(left, 0, "the refused comment's hidden row went with its discarded create");
    let session = b.session.load().await.expect("session").expect("signed in");
    let token = session.access_token.expect("a token");
    let fresh = Client::new(guest, &server.running.url(), token.expose()).await;
    fresh.sync().await;
    assert_eq!(everything(&b).await, everything(&fresh).await, "the device equals the server, row by row");
}

/// A comment on a track someone else deletes meanwhile, both ways round: written and pushed
/// before the deletion reached the server, or written offline after it. Either way the comment
/// is deleted with the track on the server and on every device, and its author alone is told by
/// a conflict of kind "parent deleted" that keeps the text; only taking the deletion resolves
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_on_a_track_deleted_meanwhile_is_deleted_with_it_and_its_author_told() {
    use trackflow_domain::{
        ports::ConflictRepository,
        sync::{ConflictKind, ConflictResolution},
    };
    use trackflow_store::SqliteConflictRepository;
    trackflow_music::install().expect("the music registry installs");
    let (server, owner, guest, a, b) = owner_and_guest().await;
    let project =
        a.projects.create(Project::new(owner, "Band", None, NOW).expect("valid")).await.expect("create");
    let mut tracks = Vec::new();
    for name in ["Intro", "Outro"] {
        let track = AudioTrack::new(project.id(), owner, name, 10_000, None, NOW).expect("valid");
        tracks.push(a.tracks.create(track).await.expect("track"));
    }
    SqliteRepository::<ProjectCollaborator>::new(a.store.clone())
        .create(ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, NOW).expect("valid"))
        .await
        .expect("invite");
    a.sync().await;
    b.sync().await;
    let comments = SqliteRepository::<AudioComment>::new(b.store.clone());

    // The guest's comment reaches the server first; the owner, who has not pulled it, deletes
    // the track.
    let first = comments
        .create(AudioComment::new(&tracks[0], guest, "louder", 1_000, NOW).expect("valid"))
        .await
        .expect("comment");
    b.sync().await;
    a.tracks.delete(tracks[0].id()).await.expect("delete");
    // The owner deletes the other track too, and the guest comments on it offline, unaware.
    a.tracks.delete(tracks[1].id()).await.expect("delete");
    a.sync().await;
    let second = comments
        .create(AudioComment::new(&tracks[1], guest, "softer", 2_000, NOW).expect("valid"))
        .await
        .expect("comment offline");
    b.sync().await;
    a.sync().await;

    let conflicts = SqliteConflictRepository::new(b.store.clone());
    let open = conflicts.list(true).await.expect("conflicts");
    let told: Vec<(Uuid, ConflictKind, serde_json::Value)> =
        open.iter().map(|c| (c.entity.id, c.kind, c.local["content"].clone())).collect();
    assert_eq!(told.len(), 2, "{open:?}");
    assert!(told.contains(&(first.entity_id(), ConflictKind::ParentDeleted, "louder".into())), "{told:?}");
    assert!(told.contains(&(second.entity_id(), ConflictKind::ParentDeleted, "softer".into())), "{told:?}");
    let owner_conflicts = SqliteConflictRepository::new(a.store.clone()).list(true).await.expect("conflicts");
    assert!(owner_conflicts.is_empty(), "the one who deleted is not asked: {owner_conflicts:?}");
    for comment in [&first, &second] {
        assert_eq!(comments.get(comment.id()).await.expect("get"), None, "deleted with its track");
    }

    // Keeping "mine" is impossible; taking the deletion closes it.
    let refused =
        conflicts.resolve(open[0].id, ConflictResolution::Mine).await.expect_err("nothing to keep it in");
    assert!(refused.to_string().contains("deleted with what it was in"), "{refused}");
    for conflict in &open {
        conflicts.resolve(conflict.id, ConflictResolution::Theirs).await.expect("take the deletion");
    }
    assert!(conflicts.list(true).await.expect("conflicts").is_empty());
    b.assert_queue_empty(0).await;

    // Every device equals the server, row by row; the server holds both comments deleted.
    let session = b.session.load().await.expect("session").expect("signed in");
    let fresh =
        Client::new(guest, &server.running.url(), session.access_token.expect("token").expose()).await;
    fresh.sync().await;
    assert_eq!(everything(&b).await, everything(&fresh).await, "the author's device equals the server");
    let session = a.session.load().await.expect("session").expect("signed in");
    let owner_fresh =
        Client::new(owner, &server.running.url(), session.access_token.expect("token").expose()).await;
    owner_fresh.sync().await;
    assert_eq!(everything(&a).await, everything(&owner_fresh).await, "the owner's device equals the server");
    let page = b.fetch(&scope_of(&project), None, 500).await;
    for comment in [&first, &second] {
        let stored =
            page.changes.iter().rev().find(|c| c.entity_id == comment.entity_id()).expect("on the server");
        assert!(stored.deleted && stored.deleted_with.is_some(), "{stored:?}");
    }
}

/// A device that has not pulled since before the server purged its history starts its pulls
/// over: it learns of a delete it missed (the tombstone's row outlives the purge, without its
/// fields), keeps and sends the edit it queued offline, and ends equal to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_past_the_retention_starts_over_and_keeps_what_it_queued() {
    trackflow_music::install().expect("the music registry installs");
    let (server, a, b, project) = two_devices().await;
    let track = AudioTrack::new(project.id(), a.user, "Take", 1_000, None, NOW).expect("valid");
    let track = a.tracks.create(track).await.expect("create");
    a.push(1).await;
    b.sync().await;
    assert!(b.tracks.get(track.id()).await.expect("get").is_some(), "both devices hold the track");

    // B is offline: it renames the project; meanwhile A deletes the track and history is purged.
    b.projects.update(project.id(), rename("Renamed on B")).await.expect("rename");
    a.tracks.delete(track.id()).await.expect("delete");
    a.push(1).await;
    let purged = server.store.purge(NOW, Retention::Versions(0)).await.expect("purge");
    assert_eq!(purged.tombstones, 1, "{purged:?}");

    b.push(1).await;
    let report = b.puller(500).pull_scope(&scope_of(&project), true).await.expect("pull");
    assert!(report.reset, "B's cursor is from before the purge: {report:?}");
    assert_eq!(b.tracks.get(track.id()).await.expect("get"), None, "the delete B missed");
    assert_eq!(b.name(&project).await, "Renamed on B", "what B queued offline");
    a.sync().await;
    b.sync().await;
    for device in [&a, &b] {
        assert_eq!(device.name(&project).await, "Renamed on B");
        assert_eq!(device.tracks.get(track.id()).await.expect("get"), None);
    }
}

/// The profiles a user reads are those of the people they share a project with. When someone
/// leaves (removed from the project, or the project removed from the user), the server still
/// holds their profile and never sends it as deleted; each device then pulls the profiles from
/// the start and forgets those that no longer come (found by the seeded simulation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_of_people_no_longer_shared_with_are_forgotten() {
    trackflow_music::install().expect("the music registry installs");
    let server = Server::start().await;
    let users: Vec<UserId> = (0..3).map(|_| UserId::new()).collect();
    let mut devices = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let token = server.sign_up(*user).await;
        let device = Client::new(*user, &server.running.url(), &token).await;
        let profile = UserProfile::new(*user, &format!("User {i}"), &format!("user{i}@example.com"), NOW);
        device.profiles.create(profile.expect("valid")).await.expect("profile");
        device.sync().await;
        devices.push(device);
    }
    let (a, b, c) = (&devices[0], &devices[1], &devices[2]);
    let project =
        a.projects.create(Project::new(users[0], "Shared", None, NOW).expect("valid")).await.expect("create");
    let members = SqliteRepository::<ProjectCollaborator>::new(a.store.clone());
    let mut records = Vec::new();
    for guest in &users[1..] {
        let record =
            ProjectCollaborator::new(project.id(), *guest, CollaboratorRole::Editor, NOW).expect("valid");
        records.push(members.create(record).await.expect("invite"));
    }
    a.sync().await;
    let mut everyone = users.clone();
    everyone.sort();
    for device in [b, c] {
        device.sync().await;
        assert_eq!(users_held(device).await, everyone, "everyone shares the project");
    }

    members.delete(records[1].id()).await.expect("remove C");
    a.sync().await;
    b.sync().await;
    let mut a_and_b = vec![users[0], users[1]];
    a_and_b.sort();
    assert_eq!(users_held(b).await, a_and_b, "B no longer shares a project with C");
    c.sync().await;
    assert_eq!(users_held(c).await, vec![users[2]], "C shares a project with no one");
    // Settled: the next sync has nothing to forget and pulls no profile again.
    let again = b.puller(500).pull(true).await.expect("scopes");
    assert!(again.iter().all(|(_, outcome)| outcome.as_ref().map_or(true, |r| r.removed == 0)), "{again:?}");
}

/// The ids of the profiles `device` shows, in order.
async fn users_held(device: &Client) -> Vec<UserId> {
    let held = trackflow_store::Repositories::new(device.store.clone())
        .visible(UserProfile::ENTITY_TYPE)
        .await
        .expect("profiles");
    let mut ids: Vec<UserId> =
        held.into_iter().filter_map(|p| p.downcast::<UserProfile>().ok()).map(|p| p.id()).collect();
    ids.sort();
    ids
}

/// A device that pulled `people` while it was a member of a project whose own pull did not
/// complete (the request failed) still forgets that project's members once it is removed from
/// it: the project was listed, so its disappearance from the list counts as losing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_listed_but_never_pulled_still_counts_as_lost() {
    use crate::proxy::{Fault, Proxy};
    trackflow_music::install().expect("the music registry installs");
    let server = Server::start().await;
    let (owner, guest) = (UserId::new(), UserId::new());
    let (owner_token, guest_token) = (server.sign_up(owner).await, server.sign_up(guest).await);
    let proxy = Proxy::start(server.running.addr());
    let a = Client::new(owner, &server.running.url(), &owner_token).await;
    let b = Client::new(guest, &proxy.url(), &guest_token).await;
    for (device, user, name) in [(&a, owner, "Owner"), (&b, guest, "Guest")] {
        let profile = UserProfile::new(user, name, &format!("{}@example.com", name.to_lowercase()), NOW);
        device.profiles.create(profile.expect("valid")).await.expect("profile");
    }
    let project =
        a.projects.create(Project::new(owner, "Shared", None, NOW).expect("valid")).await.expect("create");
    let members = SqliteRepository::<ProjectCollaborator>::new(a.store.clone());
    let record = ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Viewer, NOW).expect("valid");
    let record = members.create(record).await.expect("invite");
    a.sync().await;
    b.push(1).await;
    // The scopes listing and `people` pass; the project's pull is answered 500.
    for fault in [Fault::Pass, Fault::Pass, Fault::Answer500] {
        proxy.inject(fault);
    }
    let outcomes = b.puller(500).pull(true).await.expect("scopes");
    let project_scope = scope_of(&project);
    assert!(outcomes.iter().any(|(s, o)| *s == project_scope && o.is_err()), "{outcomes:?}");
    let mut both = vec![owner, guest];
    both.sort();
    assert_eq!(users_held(&b).await, both, "the owner's profile came with people");

    members.delete(record.id()).await.expect("remove the guest");
    a.sync().await;
    b.sync().await;
    assert_eq!(users_held(&b).await, vec![guest], "the guest no longer shares a project with the owner");
}
