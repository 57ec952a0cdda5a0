//! The change feed and live queries: one event per committed transaction, in commit order,
//! never for a rolled-back one; lagging subscribers told what they missed; live queries read
//! again only when a change can affect them; each change says why it happened.

use super::{execute, music, pulled, Fixture};
use futures_util::FutureExt;
use std::{collections::BTreeMap, sync::Arc};
use trackflow_domain::{
    ports::{
        ApplyPlan, ConflictPolicies, ConflictRepository, DownstreamRepository, LiveResults, Missed,
        PendingOperationsRepository, Repository,
    },
    protocol::EntityState,
    sync::{ChangeEvent, ChangeKind, ChangeOrigin, ConflictResolution, LiveQuery, Settlement},
    CollaboratorRole, ConflictId, EntityRef, EntityType, ScopeId, SyncConflict, SyncEntity, Timestamp,
    UserId,
};
use trackflow_music::{AudioComment, AudioTrack, Project, ProjectCollaborator, ProjectPatch};
use trackflow_store::{
    LocalStore, LocalStoreOptions, SqliteConflictRepository, SqliteDownstreamRepository,
    SqlitePendingOperationsRepository, SqliteRepository, SystemClock,
};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn project(owner: UserId, name: &str) -> Project {
    Project::new(owner, name, None, NOW).expect("valid project")
}

fn track(project: &Project, owner: UserId, name: &str) -> AudioTrack {
    AudioTrack::new(project.id(), owner, name, 1_000, None, NOW).expect("valid track")
}

/// Each change of an event as (entity, kind, origin).
fn summary(event: &ChangeEvent) -> Vec<(EntityRef, ChangeKind, ChangeOrigin)> {
    event.changes.iter().map(|c| (c.entity, c.kind, c.origin)).collect()
}

/// Pages applied to the fixture's store as a pull of every type applies them.
struct Pulls {
    downstream: SqliteDownstreamRepository,
    plan: ApplyPlan,
}

impl Pulls {
    fn new(fx: &Fixture) -> Self {
        let plan = ApplyPlan::new(EntityType::all().to_vec(), ConflictPolicies::default()).expect("plan");
        Self { downstream: SqliteDownstreamRepository::new(fx.store.clone()), plan }
    }

    async fn apply(&self, page: Vec<EntityState>, cursor: &str) {
        self.downstream.apply_page("all", page, Vec::new(), cursor.into(), &self.plan).await.expect("apply");
    }
}

/// The repositories of projects and of tracks over the fixture's store.
fn projects_and_tracks(fx: &Fixture) -> (SqliteRepository<Project>, SqliteRepository<AudioTrack>) {
    (SqliteRepository::new(fx.store.clone()), SqliteRepository::new(fx.store.clone()))
}

fn reference<E: SyncEntity>(entity: &E) -> EntityRef {
    EntityRef::new(E::ENTITY_TYPE, entity.entity_id())
}

/// The next event, which must have been published already.
async fn published(feed: &mut Box<dyn trackflow_domain::ports::ChangeSubscription>) -> Arc<ChangeEvent> {
    feed.next().now_or_never().expect("an event is waiting").expect("the feed is open").expect("not lagging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes_are_published_after_their_commit_in_commit_order() {
    let fx = Fixture::new().await;
    let (projects, tracks) = projects_and_tracks(&fx);
    let owner = UserId::new();
    let mut feed = fx.store.changes();
    assert!(feed.next().now_or_never().is_none(), "nothing was written yet");

    let demo = projects.create(project(owner, "Demo")).await.expect("create");
    let take = tracks.create(track(&demo, owner, "Take")).await.expect("track");
    projects
        .update(demo.id(), ProjectPatch { name: Some("Renamed".into()), ..Default::default() })
        .await
        .expect("rename");
    // A change that changes nothing commits nothing, and publishes nothing.
    projects
        .update(demo.id(), ProjectPatch { name: Some("Renamed".into()), ..Default::default() })
        .await
        .expect("same");
    projects.delete(demo.id()).await.expect("delete");

    let events = [
        published(&mut feed).await,
        published(&mut feed).await,
        published(&mut feed).await,
        published(&mut feed).await,
    ];
    assert!(feed.next().now_or_never().is_none(), "four transactions changed something");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let (p, t) = (reference(&demo), reference(&take));
    assert_eq!(summary(&events[0]), [(p, ChangeKind::Created, ChangeOrigin::Local)]);
    assert_eq!(summary(&events[1]), [(t, ChangeKind::Created, ChangeOrigin::Local)]);
    assert_eq!(events[1].changes[0].parent, Some(p), "a track names the project it lives inside");
    assert_eq!(summary(&events[2]), [(p, ChangeKind::Updated, ChangeOrigin::Local)]);
    // The track's row is unchanged, but its readers no longer see it.
    assert_eq!(
        summary(&events[3]),
        [
            (p, ChangeKind::Deleted, ChangeOrigin::Local),
            (t, ChangeKind::HiddenWithParent, ChangeOrigin::Local)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_write_publishes_nothing() {
    let fx = Fixture::new().await;
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let mut feed = fx.store.changes();
    execute(
        &fx.store,
        "CREATE TRIGGER fail_outbox BEFORE INSERT ON pending_operations
         BEGIN SELECT RAISE(ABORT, 'injected outbox failure'); END;",
    )
    .await;
    projects.create(project(UserId::new(), "Doomed")).await.expect_err("the transaction rolls back");
    assert!(feed.next().now_or_never().is_none(), "a rolled-back write publishes nothing");

    execute(&fx.store, "DROP TRIGGER fail_outbox").await;
    let kept = projects.create(project(UserId::new(), "Kept")).await.expect("create");
    let event = published(&mut feed).await;
    assert_eq!(
        (event.seq, summary(&event)),
        (1, vec![(reference(&kept), ChangeKind::Created, ChangeOrigin::Local)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_is_told_what_it_missed_and_holds_up_no_write() {
    music();
    let dir = tempfile::tempdir().expect("temp dir");
    let options =
        LocalStoreOptions { feed_capacity: 4, ..LocalStoreOptions::new(dir.path().join("local.db")) };
    let store = LocalStore::open(options, Arc::new(SystemClock)).await.expect("open");
    let projects = SqliteRepository::<Project>::new(store.clone());
    let mut slow = store.changes();
    let owner = UserId::new();
    // Ten writes while the subscriber reads nothing: none of them waits for it.
    for i in 0..10 {
        projects.create(project(owner, &format!("P{i}"))).await.expect("create");
    }
    let missed = slow.next().now_or_never().expect("told at once").expect("open");
    assert_eq!(missed.expect_err("it fell behind"), Missed(6));
    // It goes on with the newest events it still holds.
    let seqs: Vec<u64> = (0..4)
        .map(|_| slow.next().now_or_never().expect("waiting").expect("open").expect("event").seq)
        .collect();
    assert_eq!(seqs, [7, 8, 9, 10]);
}

/// A live query that reads again when `project` is renamed: once it has its new result, every
/// event before the rename was handed out, so any other live query has a new result waiting
/// if one of them affected it.
struct Sentinel {
    projects: SqliteRepository<Project>,
    project: Project,
    live: Box<dyn LiveResults<Project>>,
    renames: u32,
}

impl Sentinel {
    async fn new(store: &LocalStore) -> Self {
        let projects = SqliteRepository::<Project>::new(store.clone());
        let project = projects.create(project(UserId::new(), "Sentinel")).await.expect("create");
        let mut live = projects.subscribe(LiveQuery::Get(project.id().as_uuid())).await.expect("subscribe");
        live.next().await.expect("open").expect("first result");
        Self { projects, project, live, renames: 0 }
    }

    /// Returns once every event committed so far was handed out.
    async fn pass(&mut self) {
        self.renames += 1;
        let name = format!("Sentinel {}", self.renames);
        let patch = ProjectPatch { name: Some(name.clone()), ..Default::default() };
        self.projects.update(self.project.id(), patch).await.expect("rename");
        let result = self.live.next().await.expect("open").expect("result");
        assert_eq!(result[0].name(), name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_list_reads_again_only_for_changes_inside_its_parent() {
    let fx = Fixture::new().await;
    let (projects, tracks) = projects_and_tracks(&fx);
    let owner = UserId::new();
    let (mine, other) = (
        projects.create(project(owner, "Mine")).await.expect("create"),
        projects.create(project(owner, "Other")).await.expect("create"),
    );
    let mut sentinel = Sentinel::new(&fx.store).await;
    let mut live = tracks.subscribe(LiveQuery::ByParent(mine.id().as_uuid())).await.expect("subscribe");
    assert_eq!(live.next().await.expect("open").expect("first result"), Vec::new());

    // Another parent's track, another type, and a project that is not the parent: no new result.
    tracks.create(track(&other, owner, "Elsewhere")).await.expect("track");
    projects
        .update(other.id(), ProjectPatch { name: Some("Still other".into()), ..Default::default() })
        .await
        .expect("rename");
    sentinel.pass().await;
    assert!(live.next().now_or_never().is_none(), "nothing it shows changed: it was not read again");

    let take = tracks.create(track(&mine, owner, "Take")).await.expect("track");
    let second = tracks.create(track(&mine, owner, "Second take")).await.expect("track");
    // Two writes before it reads: one new result holds both.
    assert_eq!(live.next().await.expect("open").expect("result"), vec![take, second]);
    sentinel.pass().await;
    assert!(live.next().now_or_never().is_none(), "no result is left over");

    // Deleting the parent hides the tracks: a new, empty result.
    projects.delete(mine.id()).await.expect("delete");
    assert_eq!(live.next().await.expect("open").expect("result"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_gets_and_index_queries_follow_their_own_entities_and_grants() {
    let fx = Fixture::new().await;
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let members = SqliteRepository::<ProjectCollaborator>::new(fx.store.clone());
    let (owner, guest) = (UserId::new(), UserId::new());
    let shared = projects.create(project(owner, "Shared")).await.expect("create");
    let mut sentinel = Sentinel::new(&fx.store).await;
    let mut one = projects.subscribe(LiveQuery::Get(shared.id().as_uuid())).await.expect("get");
    let mut of_guest =
        projects.subscribe(LiveQuery::By(Project::BY_MEMBER, guest.as_uuid())).await.expect("by member");
    assert_eq!(one.next().await.expect("open").expect("first"), vec![shared.clone()]);
    assert_eq!(of_guest.next().await.expect("open").expect("first"), Vec::new());

    // Another owner's project concerns neither query.
    projects.create(project(UserId::new(), "Unrelated")).await.expect("create");
    sentinel.pass().await;
    assert!(one.next().now_or_never().is_none());
    assert!(of_guest.next().now_or_never().is_none());

    // A grant to the guest adds the project to what the guest is a member of.
    members
        .create(ProjectCollaborator::new(shared.id(), guest, CollaboratorRole::Editor, NOW).expect("valid"))
        .await
        .expect("grant");
    assert_eq!(of_guest.next().await.expect("open").expect("result"), vec![shared.clone()]);
    assert!(one.next().now_or_never().is_none(), "the project's own row did not change");

    let renamed = projects
        .update(shared.id(), ProjectPatch { name: Some("Renamed".into()), ..Default::default() })
        .await
        .expect("rename");
    assert_eq!(one.next().await.expect("open").expect("result"), vec![renamed.clone()]);
    // The guest's list shows the shared project through the grant; the rename carries only the
    // owner, and still gives the guest's list its new result.
    let within = std::time::Duration::from_secs(10);
    let listed = tokio::time::timeout(within, of_guest.next()).await.expect("a new result for the rename");
    assert_eq!(listed.expect("open").expect("result"), vec![renamed]);
    // Once the guest is no longer a member, the project's changes are nothing to the guest.
    let grant = members.list_by_parent(shared.id().as_uuid()).await.expect("grants");
    members.delete(grant[0].id()).await.expect("revoke");
    let listed = tokio::time::timeout(within, of_guest.next()).await.expect("a new result for the revoke");
    assert_eq!(listed.expect("open").expect("result"), Vec::new());
    projects
        .update(shared.id(), ProjectPatch { name: Some("Private".into()), ..Default::default() })
        .await
        .expect("rename");
    sentinel.pass().await;
    assert!(of_guest.next().now_or_never().is_none(), "not a row of its result any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_page_is_one_event_and_one_new_result() {
    let fx = Fixture::new().await;
    let pulls = Pulls::new(&fx);
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let owner = UserId::new();
    let demo = project(owner, "Demo");
    let takes: Vec<AudioTrack> = (0..500).map(|i| track(&demo, owner, &format!("Take {i}"))).collect();
    let mut sentinel = Sentinel::new(&fx.store).await;
    let mut live = tracks.subscribe(LiveQuery::ByParent(demo.id().as_uuid())).await.expect("subscribe");
    assert_eq!(live.next().await.expect("open").expect("first"), Vec::new());
    let mut feed = fx.store.changes();

    let page: Vec<EntityState> =
        std::iter::once(pulled(&demo, 1, 5)).chain(takes.iter().map(|t| pulled(t, 1, 5))).collect();
    pulls.apply(page, "c1").await;
    let event = published(&mut feed).await;
    assert_eq!(event.changes.len(), 501);
    assert!(event.changes.iter().all(|c| c.kind == ChangeKind::Created && c.origin == ChangeOrigin::Pull));
    assert!(feed.next().now_or_never().is_none(), "one page, one event");
    assert_eq!(live.next().await.expect("open").expect("result").len(), 500);
    sentinel.pass().await;
    assert!(live.next().now_or_never().is_none(), "one page, one new result");
    published(&mut feed).await; // the sentinel's rename

    // A pulled tombstone of the project hides its tracks with it; a row pulled again at the
    // same state changes nothing anyone sees.
    let comment = AudioComment::new(&takes[0], owner, "Nice", 10, NOW).expect("valid");
    pulls.apply(vec![pulled(&comment, 1, 6)], "c2").await;
    published(&mut feed).await;
    let gone = EntityState { deleted: true, version: 2, ..pulled(&demo, 2, 7) };
    pulls.apply(vec![gone, pulled(&takes[1], 1, 5)], "c3").await;
    let event = published(&mut feed).await;
    let kinds: BTreeMap<EntityType, Vec<ChangeKind>> =
        event.changes.iter().fold(BTreeMap::new(), |mut by, c| {
            by.entry(c.entity.entity_type).or_default().push(c.kind);
            by
        });
    assert_eq!(kinds[&Project::ENTITY_TYPE], [ChangeKind::Deleted]);
    assert_eq!(kinds[&AudioTrack::ENTITY_TYPE], vec![ChangeKind::HiddenWithParent; 500]);
    assert_eq!(kinds[&AudioComment::ENTITY_TYPE], [ChangeKind::HiddenWithParent], "however deep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_and_a_resolved_conflict_say_why_they_changed() {
    let fx = Fixture::new().await;
    let (projects, tracks) = projects_and_tracks(&fx);
    let outbox = SqlitePendingOperationsRepository::new(fx.store.clone());
    let owner = UserId::new();
    let refused = projects.create(project(owner, "Refused")).await.expect("create");
    let take = tracks.create(track(&refused, owner, "Take")).await.expect("track");
    let kept = projects.create(project(owner, "Kept")).await.expect("create");
    let mut feed = fx.store.changes();

    // The server refuses the project's create: it and what lives inside it go from view.
    let create =
        outbox.list(None).await.expect("list").into_iter().find(|op| op.entity == reference(&refused));
    let create = create.expect("the project's create is queued").id;
    outbox.settle(vec![(create, Settlement::Failed { reason: "refused".into() })]).await.expect("settle");
    let event = published(&mut feed).await;
    assert_eq!(
        summary(&event),
        [
            (reference(&refused), ChangeKind::Deleted, ChangeOrigin::Rollback),
            (reference(&take), ChangeKind::HiddenWithParent, ChangeOrigin::Rollback)
        ]
    );

    // A conflict resolved with the server's name is a write of its own.
    let conflicts = SqliteConflictRepository::new(fx.store.clone());
    let id = ConflictId::new();
    let server = kept
        .patched(&ProjectPatch { name: Some("Server".into()), ..Default::default() })
        .expect("valid")
        .fields();
    let local = BTreeMap::from([("name".to_owned(), serde_json::json!("Kept"))]);
    let conflict = SyncConflict {
        id,
        entity: reference(&kept),
        local,
        remote: server,
        fields: vec!["name".to_owned()],
        detected_at: NOW,
        resolution: None,
        kind: Default::default(),
    };
    conflicts.record(conflict).await.expect("record");
    assert!(feed.next().now_or_never().is_none(), "recording a conflict changes no entity");
    conflicts.resolve(id, ConflictResolution::Theirs).await.expect("resolve");
    let event = published(&mut feed).await;
    assert_eq!(summary(&event), [(reference(&kept), ChangeKind::Updated, ChangeOrigin::Resolution)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_forgotten_after_losing_access_is_reported_gone() {
    let fx = Fixture::new().await;
    let pulls = Pulls::new(&fx);
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let owner = UserId::new();
    let shared = project(owner, "Shared with me");
    let take = track(&shared, owner, "Take");
    let page = vec![pulled(&shared, 1, 5), pulled(&take, 1, 5)];
    pulls.apply(page, "c1").await;
    let mut live = tracks.subscribe(LiveQuery::ByParent(shared.id().as_uuid())).await.expect("subscribe");
    assert_eq!(live.next().await.expect("open").expect("first"), vec![take.clone()]);
    let mut feed = fx.store.changes();

    // The owner took this user's access away: the project goes from the device.
    pulls.downstream.forget_scope(ScopeId::from_uuid(shared.id().as_uuid())).await.expect("forget");
    let event = published(&mut feed).await;
    assert_eq!(
        summary(&event),
        [
            (reference(&shared), ChangeKind::Deleted, ChangeOrigin::Pull),
            (reference(&take), ChangeKind::HiddenWithParent, ChangeOrigin::Pull)
        ]
    );
    assert_eq!(live.next().await.expect("open").expect("result"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_a_refused_create_reports_the_rows_it_removes_from_view() {
    let fx = Fixture::new().await;
    let (projects, tracks) = projects_and_tracks(&fx);
    let outbox = SqlitePendingOperationsRepository::new(fx.store.clone());
    let pulls = Pulls::new(&fx);
    let owner = UserId::new();
    let demo = projects.create(project(owner, "Demo")).await.expect("create");
    let take = tracks.create(track(&demo, owner, "Take")).await.expect("track");
    let create = outbox.list(None).await.expect("list")[0].id;
    outbox.settle(vec![(create, Settlement::Failed { reason: "refused".into() })]).await.expect("settle");
    // The server held the project after all (its answer was lost): a pull brings it back, and
    // the track queued inside it shows again.
    pulls.apply(vec![pulled(&demo, 1, 5)], "c1").await;
    assert_eq!(tracks.list_by_parent(demo.id().as_uuid()).await.expect("list"), vec![take.clone()]);
    let mut feed = fx.store.changes();

    // Discarding the refused create drops the track's create with it, and its row.
    outbox.discard_failed(vec![create]).await.expect("discard");
    let event = published(&mut feed).await;
    assert_eq!(summary(&event), [(reference(&take), ChangeKind::Deleted, ChangeOrigin::Rollback)]);
    assert_eq!(tracks.list_by_parent(demo.id().as_uuid()).await.expect("list"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_moved_to_another_parent_changes_both_lists() {
    let fx = Fixture::new().await;
    let pulls = Pulls::new(&fx);
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let owner = UserId::new();
    let (from, to) = (project(owner, "From"), project(owner, "To"));
    let take = track(&from, owner, "Take");
    let page = vec![pulled(&from, 1, 5), pulled(&to, 1, 5), pulled(&take, 1, 5)];
    pulls.apply(page, "c1").await;
    let mut out_of = tracks.subscribe(LiveQuery::ByParent(from.id().as_uuid())).await.expect("subscribe");
    let mut into = tracks.subscribe(LiveQuery::ByParent(to.id().as_uuid())).await.expect("subscribe");
    assert_eq!(out_of.next().await.expect("open").expect("first"), vec![take.clone()]);
    assert_eq!(into.next().await.expect("open").expect("first"), Vec::new());

    // The server's row of the track names the other project (no app type declares that, but a
    // pulled row is taken as the server holds it).
    let mut moved = pulled(&take, 2, 9);
    moved.fields.insert("project_id".into(), serde_json::json!(to.id().as_uuid()));
    pulls.apply(vec![moved], "c2").await;
    let within = std::time::Duration::from_secs(10);
    let left = tokio::time::timeout(within, out_of.next()).await.expect("the list it left reads again");
    assert_eq!(left.expect("open").expect("result"), Vec::new());
    let joined = tokio::time::timeout(within, into.next()).await.expect("the list it joined reads again");
    assert_eq!(joined.expect("open").expect("result").len(), 1);
}
