//! Pulled pages applied to the local store: skipping, deferral of rows that arrive before their
//! parent, tombstones, manual conflicts and resets.

use super::{pulled, Fixture};
use serde_json::json;
use std::collections::BTreeMap;
use trackflow_domain::{
    ports::{
        ApplyPlan, Clock, ConflictPolicies, ConflictRepository, DownstreamRepository,
        PendingOperationsRepository, Repository,
    },
    protocol::EntityState,
    sync::{ConflictPolicy, ConflictResolution},
    EntityType, RepositoryError, SyncEntity, Timestamp, UserId,
};
use trackflow_music::{AudioComment, AudioTrack, Project, ProjectPatch};
use trackflow_store::{SqliteConflictRepository, SqliteDownstreamRepository, SqliteRepository};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

struct Local {
    fx: Fixture,
    downstream: SqliteDownstreamRepository,
    projects: SqliteRepository<Project>,
}

impl Local {
    async fn new() -> Self {
        let fx = Fixture::new().await;
        Self {
            downstream: SqliteDownstreamRepository::new(fx.store.clone()),
            projects: SqliteRepository::<Project>::new(fx.store.clone()),
            fx,
        }
    }

    async fn apply(
        &self,
        page: Vec<EntityState>,
        cursor: &str,
        policies: &ConflictPolicies,
    ) -> BTreeMap<EntityType, (u64, u64, u64, u64)> {
        // Parents before children, as the sync use cases order them.
        let plan = ApplyPlan::new(EntityType::all().to_vec(), policies.clone()).expect("every type once");
        self.downstream
            .apply_page("all", page, Vec::new(), cursor.into(), &plan)
            .await
            .expect("apply")
            .into_iter()
            .map(|(t, c)| (t, (c.applied, c.skipped, c.conflicts, c.deferred)))
            .collect()
    }

    /// Applies `pulled`, the state of `project`, renames the project here to "Mine", and returns
    /// the outbox that holds the rename.
    async fn renamed_after_pull(
        &self,
        project: &Project,
        pulled: EntityState,
    ) -> trackflow_store::SqlitePendingOperationsRepository {
        self.apply(vec![pulled], "c", &ConflictPolicies::default()).await;
        self.projects
            .update(project.id(), ProjectPatch { name: Some("Mine".into()), ..Default::default() })
            .await
            .expect("rename");
        trackflow_store::SqlitePendingOperationsRepository::new(self.fx.store.clone())
    }

    async fn count(&self, table: &str) -> i64 {
        self.fx.count(&format!("SELECT COUNT(*) AS n FROM {table}")).await
    }
}

/// A project with a track and a comment on it.
fn project_track_comment() -> (Project, AudioTrack, AudioComment) {
    let owner = UserId::new();
    let project = Project::new(owner, "Demo", None, NOW).expect("valid");
    let track = AudioTrack::new(project.id(), owner, "Take", 1_000, None, NOW).expect("valid");
    let comment = AudioComment::new(&track, owner, "Nice", 10, NOW).expect("valid");
    (project, track, comment)
}

#[tokio::test]
async fn a_comment_pulled_before_its_track_waits_for_it() {
    let local = Local::new().await;
    let (project, track, comment) = project_track_comment();
    let policies = ConflictPolicies::default();

    // The track changed after the comment was made, so the comment comes first.
    let first = local.apply(vec![pulled(&project, 1, 1), pulled(&comment, 3, 3)], "c1", &policies).await;
    assert_eq!(first[&AudioComment::ENTITY_TYPE], (0, 0, 0, 1), "deferred");
    assert_eq!(local.count("audio_comments").await, 0, "nothing lands before its track");
    assert_eq!(local.downstream.scope("all").await.expect("scope").cursor.as_deref(), Some("c1"));

    let second = local.apply(vec![pulled(&track, 4, 4)], "c2", &policies).await;
    assert_eq!(second[&AudioTrack::ENTITY_TYPE], (1, 0, 0, 0));
    assert_eq!(second[&AudioComment::ENTITY_TYPE], (1, 0, 0, 0), "applied with its track");
    assert_eq!((local.count("audio_comments").await, local.count("sync_deferred").await), (1, 0));
}

#[tokio::test]
async fn a_comment_waiting_for_its_track_and_also_on_the_page_is_stored_once_merged() {
    let local = Local::new().await;
    let (project, track, comment) = project_track_comment();
    let policies = ConflictPolicies::default();
    local.apply(vec![pulled(&project, 1, 1), pulled(&comment, 3, 3)], "c1", &policies).await;

    // Two pulls of the scope overlapped: this page brings the track, which releases the waiting
    // comment, and a later state of that comment.
    let edited = comment
        .patched(&trackflow_music::AudioCommentPatch { content: Some("Edited".into()) })
        .expect("valid");
    let counts = local.apply(vec![pulled(&edited, 5, 5), pulled(&track, 4, 4)], "c2", &policies).await;
    assert_eq!(counts[&AudioComment::ENTITY_TYPE], (2, 0, 0, 0), "released, then merged");
    assert_eq!(local.count("audio_comments").await, 1);
    let edited_rows =
        "SELECT COUNT(*) AS n FROM audio_comments WHERE content = 'Edited' AND pulled_version = 5";
    assert_eq!(local.fx.count(edited_rows).await, 1, "the later state won");
    assert_eq!(local.count("sync_deferred").await, 0);
}

#[tokio::test]
async fn big_pages_land_whole_whatever_order_their_rows_come_in() {
    let local = Local::new().await;
    let owner = UserId::new();
    let project = Project::new(owner, "Demo", None, NOW).expect("valid");
    // Counts that are not multiples of the insert statements' batch sizes.
    let tracks: Vec<AudioTrack> = (0..101)
        .map(|t| AudioTrack::new(project.id(), owner, &format!("Take {t}"), 1_000, None, NOW).expect("valid"))
        .collect();
    let comment = |c: usize| {
        AudioComment::new(&tracks[c % tracks.len()], owner, &format!("Comment {c}"), 10, NOW).expect("valid")
    };
    let policies = ConflictPolicies::default();

    // Children before parents on the page: the rows still go in parents first.
    let mut first: Vec<EntityState> = (0..75).map(|c| pulled(&comment(c), 10, 10)).collect();
    first.extend(tracks.iter().map(|t| pulled(t, 5, 5)));
    first.push(pulled(&project, 1, 1));
    let counts = local.apply(first, "c1", &policies).await;
    assert_eq!(counts[&Project::ENTITY_TYPE], (1, 0, 0, 0));
    assert_eq!(counts[&AudioTrack::ENTITY_TYPE], (101, 0, 0, 0));
    assert_eq!(counts[&AudioComment::ENTITY_TYPE], (75, 0, 0, 0), "none deferred");

    // Comments whose tracks came on the earlier page.
    let second: Vec<EntityState> = (75..150).map(|c| pulled(&comment(c), 11, 11)).collect();
    let counts = local.apply(second, "c2", &policies).await;
    assert_eq!(counts[&AudioComment::ENTITY_TYPE], (75, 0, 0, 0), "none deferred");
    assert_eq!((local.count("audio_tracks").await, local.count("audio_comments").await), (101, 150));
    assert_eq!(local.count("sync_deferred").await, 0);
}

#[tokio::test]
async fn rows_not_newer_than_the_last_pull_are_skipped_and_tombstones_hide_rows() {
    let local = Local::new().await;
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let policies = ConflictPolicies::default();
    local.apply(vec![pulled(&project, 5, 5)], "c1", &policies).await;
    let again = local.apply(vec![pulled(&project, 5, 5)], "c2", &policies).await;
    assert_eq!(again[&Project::ENTITY_TYPE], (0, 1, 0, 0), "skipped");

    let mut gone = pulled(&project, 6, 6);
    gone.deleted = true;
    local.apply(vec![gone], "c3", &policies).await;
    assert_eq!(local.projects.get(project.id()).await.expect("get"), None);
}

/// A tombstone of a row never held here is kept: an older state of the row, from a pull that
/// overlapped (fetched earlier, applied later), finds it and stays deleted, whether the parent
/// was there or the older state had to wait for it.
#[tokio::test]
async fn a_row_first_seen_deleted_stays_deleted_when_an_older_state_comes_later() {
    let local = Local::new().await;
    let (project, track, comment) = project_track_comment();
    let policies = ConflictPolicies::default();
    let tombstone = |mut state: EntityState| {
        state.deleted = true;
        state
    };
    // The comment's tombstone waits for its track; so does its older state, arriving later.
    local.apply(vec![pulled(&project, 1, 1), tombstone(pulled(&comment, 7, 7))], "c1", &policies).await;
    local.apply(vec![pulled(&comment, 4, 4)], "c2", &policies).await;
    // The track's tombstone first, then its older state.
    local.apply(vec![tombstone(pulled(&track, 8, 8))], "c3", &policies).await;
    let older = local.apply(vec![pulled(&track, 3, 3)], "c4", &policies).await;
    assert_eq!(older[&AudioTrack::ENTITY_TYPE], (0, 1, 0, 0), "skipped: the tombstone is newer");
    let live = |table: &str| format!("SELECT COUNT(*) AS n FROM {table} WHERE deleted = 0");
    assert_eq!((local.count("audio_tracks").await, local.fx.count(&live("audio_tracks")).await), (1, 0));
    assert_eq!((local.count("audio_comments").await, local.fx.count(&live("audio_comments")).await), (1, 0));
    assert_eq!(local.count("sync_deferred").await, 0);
}

/// A project under the manual policy, pulled at version 1, renamed "Mine" here and not yet
/// acknowledged. Returns the project, the policies, and the project as renamed "Theirs"
/// elsewhere.
async fn renamed_on_both_sides(local: &Local) -> (Project, ConflictPolicies, Project) {
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let manual = ConflictPolicies(BTreeMap::from([(Project::ENTITY_TYPE, ConflictPolicy::Manual)]));
    local.apply(vec![pulled(&project, 1, 1)], "c1", &manual).await;
    local
        .projects
        .update(project.id(), ProjectPatch { name: Some("Mine".into()), ..Default::default() })
        .await
        .expect("rename");
    let theirs =
        project.patched(&ProjectPatch { name: Some("Theirs".into()), ..Default::default() }).expect("valid");
    (project, manual, theirs)
}

#[tokio::test]
async fn a_manual_policy_keeps_the_local_edit_and_stores_both_sides() {
    let local = Local::new().await;
    // Their rename is later by the clock.
    let (project, manual, theirs) = renamed_on_both_sides(&local).await;
    let counts = local.apply(vec![pulled(&theirs, 2, 4_000_000_000_000)], "c2", &manual).await;
    assert_eq!(counts[&Project::ENTITY_TYPE], (1, 0, 1, 0));
    assert_eq!(local.projects.get(project.id()).await.expect("get").expect("there").name(), "Mine");
    let conflicts = SqliteConflictRepository::new(local.fx.store.clone()).list(true).await.expect("list");
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        (conflicts[0].local["name"].as_str(), conflicts[0].remote["name"].as_str()),
        (Some("Mine"), Some("Theirs"))
    );
}

#[tokio::test]
async fn a_reset_keeps_local_rows_and_pulls_everything_again() {
    let local = Local::new().await;
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let policies = ConflictPolicies::default();
    local.apply(vec![pulled(&project, 9, 9)], "c1", &policies).await;
    local.downstream.reset("all").await.expect("reset");
    assert_eq!(local.downstream.scope("all").await.expect("scope").cursor, None);
    assert_eq!(local.count("projects").await, 1, "nothing dropped");
    // Another database numbers versions from 1: the row is merged again, not skipped.
    let counts = local.apply(vec![pulled(&project, 1, 9)], "d1", &policies).await;
    assert_eq!(counts[&Project::ENTITY_TYPE], (1, 0, 0, 0));
}

#[tokio::test]
async fn resolving_a_conflict_writes_the_choice_as_a_new_update_once() {
    let local = Local::new().await;
    let (project, manual, theirs) = renamed_on_both_sides(&local).await;
    // Their write is a second later than ours.
    let later = u64::try_from(trackflow_store::SystemClock.now().as_millis()).expect("positive") + 1_000;
    let mut pulled_theirs = pulled(&theirs, 2, later);
    let their_reading = pulled_theirs.field_hlc["name"];
    // Their other fields were written long ago: only the pulled name's reading is new.
    for (field, reading) in &mut pulled_theirs.field_hlc {
        if field != "name" {
            reading.wall_ms = 1;
        }
    }
    local.apply(vec![pulled_theirs], "c2", &manual).await;
    let conflicts = SqliteConflictRepository::new(local.fx.store.clone());
    let id = conflicts.list(true).await.expect("list")[0].id;
    let outbox = trackflow_store::SqlitePendingOperationsRepository::new(local.fx.store.clone());
    let queued = outbox.list(None).await.expect("list").len();

    // A merged value may only name fields in conflict; refused, nothing changes.
    let stray = ConflictResolution::Merged(BTreeMap::from([("description".to_owned(), json!("x"))]));
    assert!(matches!(conflicts.resolve(id, stray).await, Err(RepositoryError::Validation(_))));
    assert_eq!(outbox.list(None).await.expect("list").len(), queued);

    // Keeping one's own value must still win at the server: the new write is later than theirs.
    let resolved = conflicts.resolve(id, ConflictResolution::Mine).await.expect("resolve");
    assert_eq!(resolved.resolution, Some(ConflictResolution::Mine));
    assert_eq!(local.projects.get(project.id()).await.expect("get").expect("there").name(), "Mine");
    let ops = outbox.list(None).await.expect("list");
    assert_eq!(ops.len(), queued + 1, "the choice is queued as a normal update, although unchanged");
    let update = ops.last().expect("queued");
    assert_eq!(update.changed_fields["name"].value, json!("Mine"));
    assert!(update.hlc > their_reading, "{} after {}", update.hlc, their_reading);
    assert!(conflicts.list(true).await.expect("list").is_empty());
    assert!(matches!(
        conflicts.resolve(id, ConflictResolution::Theirs).await,
        Err(RepositoryError::Conflict(_))
    ));
}

#[tokio::test]
async fn resolving_a_push_conflict_writes_only_the_fields_in_conflict() {
    let local = Local::new().await;
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    local.apply(vec![pulled(&project, 1, 1)], "c1", &ConflictPolicies::default()).await;
    // What upstream records for a push whose name lost: the whole server row as the remote
    // side, the name as the field in conflict.
    let server_row = project
        .patched(&ProjectPatch { name: Some("Server".into()), description: Some(Some("Server text".into())) })
        .expect("valid");
    let conflicts = SqliteConflictRepository::new(local.fx.store.clone());
    let id = trackflow_domain::ConflictId::new();
    conflicts
        .record(trackflow_domain::SyncConflict {
            id,
            entity: project.entity_ref(),
            local: BTreeMap::from([("name".to_owned(), json!("Mine"))]),
            remote: server_row.fields(),
            fields: vec!["name".to_owned()],
            detected_at: NOW,
            resolution: None,
            kind: Default::default(),
        })
        .await
        .expect("record");
    local
        .projects
        .update(
            project.id(),
            ProjectPatch { description: Some(Some("Edited here".into())), ..Default::default() },
        )
        .await
        .expect("describe");

    conflicts.resolve(id, ConflictResolution::Theirs).await.expect("resolve");
    let held = local.projects.get(project.id()).await.expect("get").expect("there");
    assert_eq!((held.name(), held.description()), ("Server", Some("Edited here")), "only the name was taken");
    let outbox = trackflow_store::SqlitePendingOperationsRepository::new(local.fx.store.clone());
    let update = outbox.list(None).await.expect("list").pop().expect("queued");
    assert_eq!(update.changed_fields.keys().collect::<Vec<_>>(), vec!["name"]);
}

/// A pulled value written after a local edit still waiting to be pushed replaces it (the
/// server will keep the later write), and the push's answer, a conflict the edit lost, leaves
/// the pulled value in place.
#[tokio::test]
async fn a_later_pulled_value_replaces_a_waiting_edit_that_then_loses_on_the_server() {
    let local = Local::new().await;
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let outbox = local.renamed_after_pull(&project, pulled(&project, 1, 1_000)).await;
    let [op] = &outbox.list(None).await.expect("list")[..] else { panic!("one operation") };
    let theirs = Project::restore(project.id(), project.owner_id(), "Theirs", None, NOW).expect("valid");
    let mut later = pulled(&theirs, 5, op.hlc.wall_ms + 1_000);
    later.field_hlc.insert("name".into(), trackflow_domain::Hlc { counter: 0, ..later.field_hlc["name"] });
    local.apply(vec![later.clone()], "c5", &ConflictPolicies::default()).await;
    let shown = |p: Option<Project>| p.expect("there").name().to_owned();
    assert_eq!(shown(local.projects.get(project.id()).await.expect("get")), "Theirs");
    outbox.mark_sent(vec![op.id]).await.expect("mark");
    outbox
        .settle(vec![(op.id, trackflow_domain::sync::Settlement::Conflict { server: later })])
        .await
        .expect("settle");
    assert_eq!(shown(local.projects.get(project.id()).await.expect("get")), "Theirs");
}

/// A peer whose clock runs 30 s fast wrote a name; this device pulled it and renamed after it,
/// so its rename is stamped after the peer's reading, ahead of this device's own clock. When
/// the device learns the server's clock, that rename must not be stamped again below the
/// reading it followed: on the server it would lose to the peer's older name (what the seeded
/// simulation found).
#[tokio::test]
async fn a_write_that_followed_a_pulled_reading_ahead_stays_later_than_it() {
    use trackflow_store::SystemClock;
    let local = Local::new().await;
    let ahead = u64::try_from(SystemClock.now().as_millis()).expect("after 1970") + 30_000;
    let project = Project::new(UserId::new(), "Theirs", None, NOW).expect("valid");
    let theirs = pulled(&project, 3, ahead);
    let outbox = local.renamed_after_pull(&project, theirs.clone()).await;
    local.fx.store.server_clock().observe(SystemClock.now(), std::time::Duration::ZERO);
    outbox.restamp().await.expect("restamp");
    let [rename] = &outbox.list(None).await.expect("list")[..] else { panic!("one operation") };
    assert!(
        rename.changed_fields["name"].hlc > theirs.field_hlc["name"],
        "the rename went below what it followed"
    );
}

#[tokio::test]
async fn a_pulled_row_whose_writes_are_still_queued_counts_them() {
    let local = Local::new().await;
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let project = local.projects.create(project).await.expect("create");
    let rename = ProjectPatch { name: Some("Mine".into()), ..Default::default() };
    local.projects.update(project.id(), rename).await.expect("rename");
    // The row is gone while its writes wait (a rebuilt database keeps the outbox, not the rows
    // the server holds), and a pull brings it back.
    super::execute(&local.fx.store, &format!("DELETE FROM projects WHERE id = '{}'", project.id())).await;
    local.apply(vec![pulled(&project, 3, 10)], "c", &ConflictPolicies::default()).await;
    let dirty = format!("SELECT dirty AS n FROM projects WHERE id = '{}'", project.id());
    assert_eq!(local.fx.count(&dirty).await, 2, "the create and the rename still wait");
}
