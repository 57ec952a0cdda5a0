//! The outbox's upstream bookkeeping: acknowledgements, coalescing, retries, failures and
//! discards, each one transaction that keeps rows and queue in step.

use super::Fixture;
use std::collections::BTreeMap;
use trackflow_domain::SyncEntity;
use trackflow_domain::{
    ports::{ConflictRepository, PendingOperationsRepository, Repository},
    sync::{CoalescePlan, Settlement},
    ConflictId, EntityRef, OperationId, OperationStatus, QueuedOperation, RepositoryError, SyncConflict,
    Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Playlist, Project, ProjectPatch};
use trackflow_store::{SqliteConflictRepository, SqlitePendingOperationsRepository, SqliteRepository};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

struct Client {
    fx: Fixture,
    outbox: SqlitePendingOperationsRepository,
    projects: SqliteRepository<Project>,
    tracks: SqliteRepository<AudioTrack>,
    owner: UserId,
}

impl Client {
    async fn new() -> Self {
        let fx = Fixture::new().await;
        Self {
            outbox: SqlitePendingOperationsRepository::new(fx.store.clone()),
            projects: SqliteRepository::<Project>::new(fx.store.clone()),
            tracks: SqliteRepository::<AudioTrack>::new(fx.store.clone()),
            owner: UserId::new(),
            fx,
        }
    }

    async fn project(&self) -> Project {
        let project = Project::new(self.owner, "Demo", None, NOW).expect("valid");
        self.projects.create(project).await.expect("create")
    }

    async fn track(&self, project: &Project) -> AudioTrack {
        let track = AudioTrack::new(project.id(), self.owner, "Take", 1_000, None, NOW).expect("valid");
        self.tracks.create(track).await.expect("create")
    }

    async fn ids(&self) -> Vec<OperationId> {
        self.outbox.list(None).await.expect("list").into_iter().map(|op| op.id).collect()
    }

    /// (version, dirty, pending_create) of a project row.
    async fn row(&self, project: &Project) -> (i64, i64, i64) {
        let id = project.id();
        let version = self.fx.count(&format!("SELECT version AS n FROM projects WHERE id = '{id}'")).await;
        let dirty = self.fx.count(&format!("SELECT dirty AS n FROM projects WHERE id = '{id}'")).await;
        let pending = self
            .fx
            .count(&format!(
                "SELECT COUNT(*) AS n FROM projects WHERE id = '{id}' AND pending_create IS NOT NULL"
            ))
            .await;
        (version, dirty, pending)
    }
}

#[tokio::test]
async fn an_acknowledgement_updates_the_row_and_removes_the_operation_together() {
    let c = Client::new().await;
    let project = c.project().await;
    c.projects
        .update(project.id(), ProjectPatch { name: Some("Renamed".into()), ..Default::default() })
        .await
        .expect("rename");
    let [create, rename] = c.ids().await[..] else { panic!("two operations") };
    c.outbox.mark_sent(vec![create]).await.expect("mark");
    assert_eq!(
        c.outbox.get(create).await.expect("get").map(|op| (op.status, op.sent)),
        Some((OperationStatus::InFlight, true))
    );

    c.outbox.settle(vec![(create, Settlement::Applied { version: 7 })]).await.expect("settle");
    // The create is acknowledged: the row has its version and no queued create, but it is still
    // dirty because the rename waits.
    assert_eq!(c.ids().await, vec![rename]);
    assert_eq!(c.row(&project).await, (7, 1, 0));

    c.outbox.settle(vec![(rename, Settlement::Applied { version: 9 })]).await.expect("settle");
    assert_eq!(c.ids().await, Vec::<OperationId>::new());
    assert_eq!(c.row(&project).await, (9, 0, 0));
    // An older acknowledgement replayed late never lowers the version.
    c.outbox
        .settle(vec![(rename, Settlement::Applied { version: 3 })])
        .await
        .expect("unknown ids are ignored");
    assert_eq!(c.row(&project).await, (9, 0, 0));
    // The clock floor survived the emptied queue.
    assert_eq!(c.fx.count("SELECT COUNT(*) AS n FROM local_settings WHERE key = 'hlc_high_water'").await, 1);
}

#[tokio::test]
async fn a_settlement_batch_is_one_transaction() {
    let c = Client::new().await;
    let a = c.project().await;
    let b = c.project().await;
    let [op_a, op_b] = c.ids().await[..] else { panic!("two operations") };
    // The row update of the second acknowledgement fails inside the database.
    super::execute(
        &c.fx.store,
        &format!(
            "CREATE TRIGGER fail_ack BEFORE UPDATE OF version ON projects WHEN NEW.id = '{}'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            b.id()
        ),
    )
    .await;
    let settled = c
        .outbox
        .settle(vec![(op_a, Settlement::Applied { version: 1 }), (op_b, Settlement::Applied { version: 2 })])
        .await;
    assert!(settled.is_err());
    assert_eq!(c.ids().await, vec![op_a, op_b], "nothing left the outbox");
    assert_eq!(c.row(&a).await, (0, 1, 1), "and no row changed");
}

#[tokio::test]
async fn retries_and_failures_are_recorded_on_the_operation() {
    let c = Client::new().await;
    c.project().await;
    let [op] = c.ids().await[..] else { panic!("one operation") };
    c.outbox.mark_sent(vec![op]).await.expect("mark");
    let later = NOW.plus_millis(1_500);
    c.outbox
        .settle(vec![(op, Settlement::Retry { attempts: 2, not_before: Some(later), error: "503".into() })])
        .await
        .expect("retry");
    let stored = c.outbox.get(op).await.expect("get").expect("queued");
    assert_eq!(
        (stored.status, stored.attempts, stored.next_attempt_at, stored.last_error.as_deref()),
        (OperationStatus::Pending, 2, Some(later), Some("503"))
    );
    assert_eq!(c.outbox.counts().await.expect("counts").last_error.as_deref(), Some("503"));

    c.outbox.settle(vec![(op, Settlement::Failed { reason: "forbidden: no".into() })]).await.expect("fail");
    let counts = c.outbox.counts().await.expect("counts");
    assert_eq!((counts.pending, counts.failed, counts.last_error.as_deref()), (0, 1, Some("forbidden: no")));
    assert_eq!(counts.oldest_pending_at, None, "failed operations are not waiting");

    // A retrying operation's error is newer news than a parked one's.
    c.project().await;
    let second = c.ids().await[1];
    c.outbox.mark_sent(vec![second]).await.expect("mark");
    let retry = Settlement::Retry { attempts: 1, not_before: None, error: "timed out".into() };
    c.outbox.settle(vec![(second, retry)]).await.expect("retry");
    let counts = c.outbox.counts().await.expect("counts");
    assert_eq!((counts.pending, counts.failed, counts.last_error.as_deref()), (1, 1, Some("timed out")));
    let waiting = c.outbox.get(second).await.expect("get").expect("queued");
    assert_eq!(counts.oldest_pending_at, Some(waiting.created_at));

    assert_eq!(c.outbox.retry_failed(None).await.expect("retry"), 1);
    let stored = c.outbox.get(op).await.expect("get").expect("queued");
    assert_eq!((stored.status, stored.attempts, stored.next_attempt_at), (OperationStatus::Pending, 0, None));
    assert!(stored.sent, "a retried operation stays frozen: the server may hold it");
}

#[tokio::test]
async fn discarding_a_failed_create_drops_what_depends_on_it() {
    let c = Client::new().await;
    let project = c.project().await;
    c.track(&project).await;
    let other = c.project().await;
    let [create, track, other_op] = c.ids().await[..] else { panic!("three operations") };
    c.outbox.settle(vec![(create, Settlement::Failed { reason: "rejected".into() })]).await.expect("fail");

    let refused = c.outbox.discard_failed(vec![other_op]).await;
    assert!(
        matches!(refused, Err(RepositoryError::Conflict(ref m)) if m.contains("not failed")),
        "{refused:?}"
    );
    assert_eq!(c.ids().await.len(), 3, "a refused discard changes nothing");

    let mut dropped = c.outbox.discard_failed(vec![create]).await.expect("discard");
    dropped.sort();
    let mut expected = vec![create, track];
    expected.sort();
    assert_eq!(dropped, expected);
    assert_eq!(c.ids().await, vec![other_op]);
    // The server never acknowledged the project or its track: discarding their creates leaves
    // no row of either behind.
    let id = project.id();
    assert_eq!(c.fx.count(&format!("SELECT COUNT(*) AS n FROM projects WHERE id = '{id}'")).await, 0);
    assert_eq!(
        c.fx.count(&format!("SELECT COUNT(*) AS n FROM audio_tracks WHERE project_id = '{id}'")).await,
        0
    );
    assert_eq!(c.row(&other).await, (0, 1, 1));
}

#[tokio::test]
async fn discarding_a_failed_create_drops_later_operations_on_its_entity_but_not_mere_references() {
    let c = Client::new().await;
    let project = c.project().await;
    let track = c.track(&project).await;
    let ids = c.ids().await;
    c.outbox.settle(vec![(ids[0], Settlement::Applied { version: 1 })]).await.expect("project acknowledged");
    // A rename of the track and a playlist listing it wait behind the track's create.
    c.tracks
        .update(
            track.id(),
            trackflow_music::AudioTrackPatch { name: Some("Take 2".into()), ..Default::default() },
        )
        .await
        .expect("rename");
    let playlists = SqliteRepository::<Playlist>::new(c.fx.store.clone());
    let playlist = Playlist::new(project.id(), "Mix", vec![track.id()], NOW).expect("valid");
    use trackflow_domain::ports::Repository;
    playlists.create(playlist).await.expect("playlist");
    let [track_create, rename, playlist_create] = c.ids().await[..] else { panic!("three operations") };
    c.outbox
        .settle(vec![(track_create, Settlement::Failed { reason: "rejected".into() })])
        .await
        .expect("fail");

    let mut dropped = c.outbox.discard_failed(vec![track_create]).await.expect("discard");
    dropped.sort();
    let mut expected = vec![track_create, rename];
    expected.sort();
    assert_eq!(
        dropped, expected,
        "the rename goes with the create; the playlist stays and will fail visibly"
    );
    assert_eq!(c.ids().await, vec![playlist_create]);
}

#[tokio::test]
async fn long_id_lists_stay_under_sqlites_variable_limit() {
    let c = Client::new().await;
    c.project().await;
    let many: Vec<OperationId> = (0..40_000).map(|_| OperationId::new()).collect();
    c.outbox.mark_sent(many.clone()).await.expect("mark 40,000 ids");
    let settlements = many.iter().map(|id| (*id, Settlement::Applied { version: 1 })).collect();
    c.outbox.settle(settlements).await.expect("settle 40,000 ids");
    let plan = CoalescePlan { rewrite: vec![], remove: many.clone() };
    assert!(!c.outbox.apply_coalescing(plan).await.expect("plan of 40,000 ids"), "unknown ids: refused");
    assert_eq!(c.ids().await.len(), 1, "the one real operation is untouched");
}

#[tokio::test]
async fn coalescing_applies_unless_an_operation_was_sent_meanwhile() {
    let c = Client::new().await;
    let project = c.project().await;
    c.projects.delete(project.id()).await.expect("delete");
    let [create, delete] = c.ids().await[..] else { panic!("two operations") };
    let plan = CoalescePlan { rewrite: vec![], remove: vec![create, delete] };

    c.outbox.mark_sent(vec![create]).await.expect("mark");
    assert!(
        !c.outbox.apply_coalescing(plan.clone()).await.expect("plan"),
        "refused: the create may be on the server"
    );
    assert_eq!(c.ids().await, vec![create, delete]);

    c.outbox.release_in_flight().await.expect("release");
    let released = c.outbox.get(create).await.expect("get").expect("queued");
    assert_eq!((released.status, released.sent), (OperationStatus::Pending, true));

    // On a fresh pair, the same plan cancels both: the server never hears of the project.
    let second = c.project().await;
    c.projects.delete(second.id()).await.expect("delete");
    let ids = c.ids().await;
    let plan = CoalescePlan { rewrite: vec![], remove: ids[2..].to_vec() };
    assert!(c.outbox.apply_coalescing(plan).await.expect("plan"));
    assert_eq!(c.ids().await, vec![create, delete]);
    assert_eq!(c.row(&second).await, (0, 0, 0));
}

#[tokio::test]
async fn conflicts_are_recorded_once_per_id() {
    let c = Client::new().await;
    let repo = SqliteConflictRepository::new(c.fx.store.clone());
    let conflict = SyncConflict {
        id: ConflictId::new(),
        entity: EntityRef::new(Project::ENTITY_TYPE, uuid::Uuid::now_v7()),
        local: BTreeMap::from([("name".to_owned(), "Mine".into())]),
        remote: BTreeMap::from([("name".to_owned(), "Theirs".into())]),
        fields: vec!["name".into()],
        detected_at: NOW,
        resolution: None,
        kind: Default::default(),
    };
    repo.record(conflict.clone()).await.expect("record");
    repo.record(SyncConflict { detected_at: NOW.plus_millis(5), ..conflict.clone() }).await.expect("again");
    assert_eq!(repo.list(true).await.expect("list"), vec![conflict]);
}

#[tokio::test]
async fn writes_are_announced_to_watchers() {
    let c = Client::new().await;
    let mut writes = c.fx.store.watch_writes();
    c.project().await;
    assert!(writes.has_changed().expect("store alive"), "a committed write wakes the processor");
    writes.mark_unchanged();
    let missing = c.projects.update(trackflow_music::ProjectId::new(), ProjectPatch::default()).await;
    assert!(missing.is_err());
    assert!(!writes.has_changed().expect("store alive"), "a refused write does not");
}

#[tokio::test]
async fn a_stale_key_never_reaches_the_operation_that_reused_it() {
    let c = Client::new().await;
    c.project().await;
    // Listing remembers the create's key; acknowledging it empties the outbox, so SQLite gives
    // the next operation the same key.
    let [first] = c.ids().await[..] else { panic!("one operation") };
    c.outbox.settle(vec![(first, Settlement::Applied { version: 1 })]).await.expect("settle");
    let second_project = c.project().await;
    let key = |id: OperationId| {
        format!("SELECT COALESCE(MAX(seq), 0) AS n FROM pending_operations WHERE id = '{id}'")
    };
    // A listing by status adds to the remembered keys: the first operation's stays, stale.
    let second = c.outbox.list(Some(OperationStatus::Pending)).await.expect("list")[0].id;
    assert_eq!(c.fx.count(&key(first)).await, 0);
    assert_eq!(c.fx.count(&key(second)).await, 1, "the key was reused");

    c.outbox.mark_sent(vec![first]).await.expect("mark");
    c.outbox.settle(vec![(first, Settlement::Applied { version: 7 })]).await.expect("settle");
    let op = c.outbox.get(second).await.expect("get").expect("still queued");
    assert_eq!((op.status, op.sent), (OperationStatus::Pending, false), "not marked by the stale key");
    assert_eq!(c.row(&second_project).await, (0, 1, 1), "not settled by it either");
}

#[tokio::test]
async fn the_queue_is_read_without_content_and_operations_whole_by_id() {
    let c = Client::new().await;
    let project = c.project().await;
    let track = c.track(&project).await;
    let whole = c.outbox.list(None).await.expect("list");
    let queue = c.outbox.queue().await.expect("queue");
    let heads: Vec<QueuedOperation> = whole.iter().map(QueuedOperation::from).collect();
    assert_eq!(queue, heads, "the same operations, in the same order");
    assert_eq!(queue[1].depends_on, vec![queue[0].id], "the track waits for its project");

    // Loaded by id, in queue order whatever the order asked, with their content; ids no longer
    // queued (acknowledged, or never there) are left out.
    let (create, track_create) = (whole[0].id, whole[1].id);
    let loaded = c.outbox.load(vec![track_create, OperationId::new(), create]).await.expect("load");
    assert_eq!(loaded, whole);
    assert_eq!(loaded[1].changed_fields["name"].value, serde_json::json!(track.name()));
    // The newest operation acknowledged, SQLite gives its key to the next write: the key the
    // queue remembered for it finds nothing.
    c.outbox.settle(vec![(track_create, Settlement::Applied { version: 1 })]).await.expect("settle");
    c.project().await;
    let reused = c.fx.count("SELECT MAX(seq) AS n FROM pending_operations").await;
    assert_eq!(reused, 2, "the key was reused");
    let loaded = c.outbox.load(vec![create, track_create]).await.expect("load");
    assert_eq!(loaded.iter().map(|op| op.id).collect::<Vec<_>>(), vec![create]);
}

/// A store on a device whose clock runs `ahead_ms` ahead of the machine's, with its outbox and
/// project repository (the directory must outlive them).
async fn fast_device(
    ahead_ms: i64,
) -> (
    tempfile::TempDir,
    trackflow_store::LocalStore,
    SqlitePendingOperationsRepository,
    SqliteRepository<Project>,
) {
    use std::sync::Arc;
    use trackflow_domain::ports::Clock;
    use trackflow_store::{LocalStore, LocalStoreOptions, SystemClock};
    struct Fast(i64);
    impl Clock for Fast {
        fn now(&self) -> Timestamp {
            SystemClock.now().plus_millis(self.0)
        }
    }
    super::music();
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        LocalStore::open(LocalStoreOptions::new(dir.path().join("local.db")), Arc::new(Fast(ahead_ms)))
            .await
            .expect("open");
    let (outbox, projects) = (
        SqlitePendingOperationsRepository::new(store.clone()),
        SqliteRepository::<Project>::new(store.clone()),
    );
    (dir, store, outbox, projects)
}

/// A device whose clock runs ten minutes fast, and whose first writes went out before it
/// learned so: the project's create and (with `renamed_first`) a first rename, stamped ten
/// minutes ahead, are in flight, or (without) the create is acknowledged. A rename written
/// after them waits. Then the device learns the server's clock, and the waiting rename is
/// stamped again. It must stay later than what went out, which the server may hold: stamped
/// below it, it would lose on the server although written after it (what the seeded
/// simulation found, on a profile).
async fn restamped_after_writes_sent_ahead(renamed_first: bool) {
    use trackflow_domain::ports::Clock as _;
    use trackflow_store::SystemClock;
    let (_dir, store, outbox, projects) = fast_device(10 * 60 * 1000).await;
    let rename = |name: &str| ProjectPatch { name: Some(name.into()), ..Default::default() };
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let project = projects.create(project).await.expect("create");
    if renamed_first {
        projects.update(project.id(), rename("First")).await.expect("rename");
    }
    let sent: Vec<_> = outbox.list(None).await.expect("list");
    outbox.mark_sent(sent.iter().map(|op| op.id).collect()).await.expect("mark");
    let latest_sent = sent.iter().map(|op| op.hlc).max().expect("sent");
    if !renamed_first {
        outbox.settle(vec![(sent[0].id, Settlement::Applied { version: 1 })]).await.expect("settle");
    }
    projects.update(project.id(), rename("Second")).await.expect("rename");
    store.server_clock().observe(SystemClock.now(), std::time::Duration::ZERO);
    assert_eq!(outbox.restamp().await.expect("restamp"), 1, "the rename is ahead of the corrected clock");
    let waiting = outbox.list(Some(OperationStatus::Pending)).await.expect("list");
    let [second] = &waiting[..] else { panic!("one operation waits") };
    assert!(
        second.hlc > latest_sent,
        "the rename ({}) is stamped below what went out ({latest_sent})",
        second.hlc
    );
    assert!(second.changed_fields["name"].hlc > latest_sent);
}

#[tokio::test]
async fn an_operation_stamped_again_stays_later_than_a_rename_in_flight() {
    restamped_after_writes_sent_ahead(true).await;
}

#[tokio::test]
async fn an_operation_stamped_again_stays_later_than_an_acknowledged_create() {
    restamped_after_writes_sent_ahead(false).await;
}

/// An operation that went out ahead of the corrected clock and may have been applied (its
/// answer was lost) keeps its reading: sent again changed, the server would refuse it as
/// `id_reused`. One whose push was refused whole for its clock is stamped again.
#[tokio::test]
async fn only_an_operation_no_server_holds_is_stamped_again() {
    use trackflow_domain::ports::Clock as _;
    use trackflow_domain::protocol::CLOCK_SKEW;
    use trackflow_store::SystemClock;
    let (_dir, store, outbox, projects) = fast_device(30_000).await;
    projects.create(Project::new(UserId::new(), "Demo", None, NOW).expect("valid")).await.expect("create");
    let [op] = &outbox.list(None).await.expect("list")[..] else { panic!("one operation") };
    let (id, stamped) = (op.id, op.hlc);
    outbox.mark_sent(vec![id]).await.expect("mark");
    let retry = |error: String| Settlement::Retry { attempts: 1, not_before: None, error };
    outbox.settle(vec![(id, retry("timeout: no answer".into()))]).await.expect("settle");
    store.server_clock().observe(SystemClock.now(), std::time::Duration::ZERO);
    assert_eq!(outbox.restamp().await.expect("restamp"), 0, "it may be held by the server");
    assert_eq!(outbox.get(id).await.expect("get").expect("queued").hlc, stamped);

    outbox.mark_sent(vec![id]).await.expect("mark");
    outbox.settle(vec![(id, retry(format!("{CLOCK_SKEW}: ahead")))]).await.expect("settle");
    assert_eq!(outbox.restamp().await.expect("restamp"), 1, "a push refused for its clock stored nothing");
    assert!(outbox.get(id).await.expect("get").expect("queued").hlc < stamped);
}

#[tokio::test]
async fn a_row_counts_its_queued_writes_through_every_way_they_leave() {
    let c = Client::new().await;
    let project = c.project().await;
    for name in ["One", "Two"] {
        let patch = ProjectPatch { name: Some(name.into()), ..Default::default() };
        c.projects.update(project.id(), patch).await.expect("rename");
    }
    c.projects.delete(project.id()).await.expect("delete");
    let [create, one, two, delete] = c.ids().await[..] else { panic!("four operations") };
    assert_eq!(c.row(&project).await, (0, 4, 1));

    // Coalescing folds the first rename away.
    let plan = CoalescePlan { rewrite: vec![], remove: vec![one] };
    assert!(c.outbox.apply_coalescing(plan).await.expect("plan"));
    assert_eq!(c.row(&project).await, (0, 3, 1));
    // The create is acknowledged, the second rename parked: it still waits, so it still counts.
    c.outbox.settle(vec![(create, Settlement::Applied { version: 5 })]).await.expect("settle");
    c.outbox.settle(vec![(two, Settlement::Failed { reason: "rejected".into() })]).await.expect("fail");
    assert_eq!(c.row(&project).await, (5, 2, 0));
    // A retry answer leaves it queued.
    let retry = Settlement::Retry { attempts: 1, not_before: None, error: "busy".into() };
    c.outbox.settle(vec![(delete, retry)]).await.expect("retry");
    assert_eq!(c.row(&project).await, (5, 2, 0));
    c.outbox.discard_failed(vec![two]).await.expect("discard");
    assert_eq!(c.row(&project).await, (5, 1, 0));
    c.outbox.settle(vec![(delete, Settlement::Applied { version: 6 })]).await.expect("settle");
    assert_eq!(c.row(&project).await, (6, 0, 0));
    assert_eq!(c.ids().await, Vec::<OperationId>::new());
}

#[tokio::test]
async fn a_file_from_before_the_counts_is_recounted_once_when_it_opens() {
    let c = Client::new().await;
    let waiting = c.project().await;
    let patch = ProjectPatch { name: Some("Renamed".into()), ..Default::default() };
    c.projects.update(waiting.id(), patch).await.expect("rename");
    let settled = c.project().await;
    let [_, _, settled_create] = c.ids().await[..] else { panic!("three operations") };
    c.outbox.settle(vec![(settled_create, Settlement::Applied { version: 2 })]).await.expect("settle");
    let track = c.track(&waiting).await;
    // The file as the build before the counts left it: `dirty` a flag (set on the row with two
    // writes waiting, and left set on one whose writes are all acknowledged, as a crash between
    // two of that build's statements could not, but a recount must mend), the migration not
    // applied.
    super::execute(
        &c.fx.store,
        "UPDATE projects SET dirty = 1; UPDATE audio_tracks SET dirty = 1; \
         DELETE FROM local_settings WHERE key = 'recount_queued'; \
         DELETE FROM __diesel_schema_migrations WHERE version = '20261208000000';",
    )
    .await;
    let path = c.fx.db_path();
    let Client { fx, outbox, projects, tracks, .. } = c;
    drop((outbox, projects, tracks, fx.store));

    let store = super::open(&path).await;
    let row = |id: String| format!("SELECT dirty AS n FROM projects WHERE id = '{id}'");
    assert_eq!(super::count(&store, &row(waiting.id().to_string())).await, 2);
    assert_eq!(super::count(&store, &row(settled.id().to_string())).await, 0);
    let track_row = format!("SELECT dirty AS n FROM audio_tracks WHERE id = '{}'", track.id());
    assert_eq!(super::count(&store, &track_row).await, 1);
    let asked = "SELECT COUNT(*) AS n FROM local_settings WHERE key = 'recount_queued'";
    assert_eq!(super::count(&store, asked).await, 0, "recounted once");
    drop(fx.dir);
}
