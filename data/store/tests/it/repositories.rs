//! The offline-first repositories: one transaction per write, outbox operations, tombstones.

use super::{count, execute, open, Fixture};
use trackflow_domain::SyncEntity;
use trackflow_domain::{
    ports::{PendingOperationsRepository, Repository},
    CollaboratorRole, OperationKind, RepositoryError, Timestamp, UserId,
};
use trackflow_music::{
    AudioComment, AudioTrack, AudioTrackPatch, Playlist, PlaylistPatch, Project, ProjectCollaborator,
    ProjectPatch, UserProfile, UserProfilePatch,
};
use trackflow_store::{SqlitePendingOperationsRepository, SqliteRepository};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn project(owner: UserId, name: &str) -> Project {
    Project::new(owner, name, None, NOW).expect("valid project")
}

async fn outbox_total(fx: &Fixture) -> i64 {
    fx.count("SELECT COUNT(*) AS n FROM pending_operations").await
}

#[tokio::test]
async fn a_create_leaves_exactly_one_row_and_one_operation() {
    let fx = Fixture::new().await;
    let repo = SqliteRepository::<Project>::new(fx.store.clone());
    let created = repo.create(project(UserId::new(), "Demo")).await.expect("create");

    let id = created.id();
    assert_eq!(fx.count(&format!("SELECT COUNT(*) AS n FROM projects WHERE id = '{id}'")).await, 1);
    let ops = SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list");
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].entity.entity_type, ops[0].entity.id), (Project::ENTITY_TYPE, id.as_uuid()));
    assert_eq!(ops[0].kind, OperationKind::Create);
    assert_eq!(ops[0].changed_fields.get("name").map(|c| c.value.clone()), Some("Demo".into()));
    assert_eq!(repo.get(id).await.expect("get"), Some(created));
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM projects WHERE dirty = 1 AND version = 0").await, 1);
}

#[tokio::test]
async fn a_failing_outbox_insert_leaves_neither_row_nor_operation() {
    let fx = Fixture::new().await;
    // Inject the failure in the database itself: the outbox insert aborts.
    execute(
        &fx.store,
        "CREATE TRIGGER fail_outbox BEFORE INSERT ON pending_operations
         BEGIN SELECT RAISE(ABORT, 'injected outbox failure'); END;",
    )
    .await;
    let repo = SqliteRepository::<Project>::new(fx.store.clone());
    let err = repo.create(project(UserId::new(), "Doomed")).await.expect_err("must fail");
    assert!(err.to_string().contains("injected outbox failure"), "{err}");
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM projects").await, 0);
    assert_eq!(outbox_total(&fx).await, 0);

    // The same holds for updates and deletes of an existing row.
    execute(&fx.store, "DROP TRIGGER fail_outbox").await;
    let kept = repo.create(project(UserId::new(), "Kept")).await.expect("create");
    execute(
        &fx.store,
        "CREATE TRIGGER fail_outbox BEFORE INSERT ON pending_operations
         BEGIN SELECT RAISE(ABORT, 'injected outbox failure'); END;",
    )
    .await;
    let rename = ProjectPatch { name: Some("Renamed".into()), ..Default::default() };
    assert!(repo.update(kept.id(), rename).await.is_err());
    assert!(repo.delete(kept.id()).await.is_err());
    assert_eq!(repo.get(kept.id()).await.expect("get"), Some(kept));
    assert_eq!(outbox_total(&fx).await, 1, "only the create");
}

#[tokio::test]
async fn an_update_records_only_the_changed_fields_and_a_no_op_records_nothing() {
    let fx = Fixture::new().await;
    let repo = SqliteRepository::<UserProfile>::new(fx.store.clone());
    let me = repo
        .create(UserProfile::new(UserId::new(), "Ana", "ana@example.com", NOW).expect("valid"))
        .await
        .expect("create");
    let patch = UserProfilePatch {
        name: Some("Ana B".into()),
        email: Some("ana@example.com".into()),
        ..Default::default()
    };
    let updated = repo.update(me.id(), patch.clone()).await.expect("update");
    assert_eq!(updated.name(), "Ana B");
    repo.update(me.id(), patch).await.expect("repeat is a no-op");

    let ops = SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list");
    assert_eq!(ops.len(), 2, "create + one update; the repeated patch changed nothing");
    assert_eq!(ops[1].kind, OperationKind::Update);
    assert_eq!(ops[1].changed_fields.keys().collect::<Vec<_>>(), ["name"]);
    assert!(ops[1].hlc > ops[0].hlc, "later writes carry later clock readings");
}

#[tokio::test]
async fn invalid_patches_are_rejected_and_change_nothing() {
    let fx = Fixture::new().await;
    let repo = SqliteRepository::<Project>::new(fx.store.clone());
    let p = repo.create(project(UserId::new(), "Demo")).await.expect("create");
    let err = repo
        .update(p.id(), ProjectPatch { name: Some("  ".into()), ..Default::default() })
        .await
        .expect_err("blank name");
    assert!(matches!(err, RepositoryError::Validation(ref v) if v.field == "name"), "{err:?}");
    assert_eq!(repo.get(p.id()).await.expect("get").map(|p| p.name().to_owned()), Some("Demo".into()));
    assert_eq!(outbox_total(&fx).await, 1);
}

#[tokio::test]
async fn a_delete_leaves_a_tombstone_that_reads_never_show() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let p = projects.create(project(owner, "Demo")).await.expect("create");
    let t = tracks
        .create(AudioTrack::new(p.id(), owner, "Take 1", 60_000, None, NOW).expect("valid"))
        .await
        .expect("create track");

    projects.delete(p.id()).await.expect("delete");
    assert_eq!(projects.get(p.id()).await.expect("get"), None);
    assert!(projects.list_by(Project::BY_MEMBER, owner.into()).await.expect("list").is_empty());
    assert_eq!(tracks.get(t.id()).await.expect("get"), None, "children are hidden too");
    assert!(tracks.list_by_parent(p.id().into()).await.expect("list").is_empty());
    // ... without being written: the server cascades, and a refused delete can be undone by
    // reverting the one tombstone.
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM audio_tracks WHERE deleted = 0").await, 1);
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM projects WHERE deleted = 1").await, 1, "tombstone kept");
    let ops = SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list");
    assert_eq!(
        ops.iter().map(|o| o.kind).collect::<Vec<_>>(),
        [OperationKind::Create, OperationKind::Create, OperationKind::Delete]
    );

    let err = projects.delete(p.id()).await.expect_err("already deleted");
    assert!(matches!(err, RepositoryError::NotFound(_)), "{err:?}");
    let err = tracks
        .update(t.id(), AudioTrackPatch { name: Some("x".into()), ..Default::default() })
        .await
        .expect_err("hidden track");
    assert!(matches!(err, RepositoryError::NotFound(_)), "{err:?}");
    assert_eq!(outbox_total(&fx).await, 3);
}

#[tokio::test]
async fn children_need_a_live_parent_and_wait_for_its_create() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let orphan =
        AudioTrack::new(project(owner, "nowhere").id(), owner, "T", 1_000, None, NOW).expect("valid");
    let err = tracks.create(orphan).await.expect_err("no such project");
    assert!(matches!(err, RepositoryError::NotFound(r) if r.entity_type == Project::ENTITY_TYPE));
    assert_eq!(outbox_total(&fx).await, 0);
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM audio_tracks").await, 0);

    let p = SqliteRepository::<Project>::new(fx.store.clone())
        .create(project(owner, "Demo"))
        .await
        .expect("create");
    let t = tracks
        .create(AudioTrack::new(p.id(), owner, "T", 1_000, None, NOW).expect("valid"))
        .await
        .expect("create track");
    let ops = SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list");
    assert_eq!(ops[1].entity.id, t.id().as_uuid());
    assert_eq!(ops[1].depends_on, [ops[0].id], "the track waits for the project's create");
}

#[tokio::test]
async fn comments_are_checked_against_the_stored_track() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let p = SqliteRepository::<Project>::new(fx.store.clone())
        .create(project(owner, "Demo"))
        .await
        .expect("create");
    let track = SqliteRepository::<AudioTrack>::new(fx.store.clone())
        .create(AudioTrack::new(p.id(), owner, "T", 10_000, None, NOW).expect("valid"))
        .await
        .expect("create track");
    let comments = SqliteRepository::<AudioComment>::new(fx.store.clone());
    let first = comments
        .create(AudioComment::new(&track, owner, "late intro", 9_000, NOW).expect("valid"))
        .await
        .expect("comment");
    comments
        .create(AudioComment::new(&track, owner, "nice intro", 1_000, NOW).expect("valid"))
        .await
        .expect("comment");
    let listed = comments.list_by_parent(track.id().into()).await.expect("list");
    assert_eq!(listed.iter().map(|c| c.timestamp_ms()).collect::<Vec<_>>(), [1_000, 9_000], "by position");

    // A comment built against a longer copy of the track is refused by the stored one.
    let longer = AudioTrack::restore(track.id(), p.id(), owner, "T", 20_000, None, NOW).expect("valid");
    let err = comments
        .create(AudioComment::new(&longer, owner, "past the end", 15_000, NOW).expect("valid"))
        .await
        .expect_err("past the stored track's end");
    assert!(matches!(err, RepositoryError::Validation(ref v) if v.field == "timestamp_ms"), "{err:?}");
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM audio_comments").await, 2);
    comments.delete(first.id()).await.expect("delete");
    assert_eq!(comments.list_by_parent(track.id().into()).await.expect("list").len(), 1);
}

#[tokio::test]
async fn playlists_hold_tracks_of_their_own_project_only() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let playlists = SqliteRepository::<Playlist>::new(fx.store.clone());
    let (a, b) = (
        projects.create(project(owner, "A")).await.expect("create"),
        projects.create(project(owner, "B")).await.expect("create"),
    );
    let in_a = tracks
        .create(AudioTrack::new(a.id(), owner, "a1", 5, None, NOW).expect("valid"))
        .await
        .expect("track");
    let in_b = tracks
        .create(AudioTrack::new(b.id(), owner, "b1", 5, None, NOW).expect("valid"))
        .await
        .expect("track");

    let mix = playlists
        .create(Playlist::new(a.id(), "Mix", vec![in_a.id()], NOW).expect("valid"))
        .await
        .expect("playlist");
    let err = playlists
        .update(mix.id(), PlaylistPatch { track_ids: Some(vec![in_a.id(), in_b.id()]), ..Default::default() })
        .await
        .expect_err("foreign track");
    assert!(matches!(err, RepositoryError::Validation(ref v) if v.field == "track_ids"), "{err:?}");
    assert_eq!(
        playlists.get(mix.id()).await.expect("get").map(|p| p.track_ids().to_vec()),
        Some(vec![in_a.id()])
    );
    assert_eq!(playlists.list_by_parent(a.id().into()).await.expect("list").len(), 1);
    assert!(playlists.list_by_parent(b.id().into()).await.expect("list").is_empty());
}

#[tokio::test]
async fn collaborators_join_once_and_see_the_project() {
    let fx = Fixture::new().await;
    let (owner, guest) = (UserId::new(), UserId::new());
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let members = SqliteRepository::<ProjectCollaborator>::new(fx.store.clone());
    let p = projects.create(project(owner, "Band")).await.expect("create");
    projects.create(project(UserId::new(), "Someone else's")).await.expect("create");

    let m = members
        .create(ProjectCollaborator::new(p.id(), guest, CollaboratorRole::Viewer, NOW).expect("valid"))
        .await
        .expect("join");
    let again = ProjectCollaborator::new(p.id(), guest, CollaboratorRole::Editor, NOW).expect("valid");
    assert!(matches!(members.create(again).await, Err(RepositoryError::Conflict(_))));
    let owner_as_member =
        ProjectCollaborator::new(p.id(), owner, CollaboratorRole::Editor, NOW).expect("valid");
    assert!(matches!(members.create(owner_as_member).await, Err(RepositoryError::Validation(_))));

    let seen: Vec<_> = projects
        .list_by(Project::BY_MEMBER, guest.into())
        .await
        .expect("list")
        .iter()
        .map(Project::id)
        .collect();
    assert_eq!(seen, [p.id()]);
    members.delete(m.id()).await.expect("leave");
    assert!(projects.list_by(Project::BY_MEMBER, guest.into()).await.expect("list").is_empty());
    assert!(members.list_by_parent(p.id().into()).await.expect("list").is_empty());
}

#[tokio::test]
async fn a_reopened_database_still_holds_data_and_queue() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let created = SqliteRepository::<Project>::new(fx.store.clone())
        .create(project(owner, "Persistent"))
        .await
        .expect("create");
    let last_hlc =
        SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list")[0].hlc;

    let reopened = open(&fx.db_path()).await;
    let projects = SqliteRepository::<Project>::new(reopened.clone());
    assert_eq!(projects.get(created.id()).await.expect("get"), Some(created.clone()));
    let outbox = SqlitePendingOperationsRepository::new(reopened.clone());
    let counts = outbox.counts().await.expect("counts");
    assert_eq!((counts.pending, counts.failed), (1, 0));
    assert!(counts.oldest_pending_at.is_some());
    projects
        .update(created.id(), ProjectPatch { name: Some("Again".into()), ..Default::default() })
        .await
        .expect("update");
    let ops = outbox.list(None).await.expect("list");
    assert!(ops[1].hlc > last_hlc, "the clock continues past what the outbox holds");
    assert_eq!(count(&reopened, "SELECT COUNT(*) AS n FROM pending_operations").await, 2);
}

/// Physical time that stands still, so only the database's clock floor orders readings.
struct Frozen;

impl trackflow_domain::ports::Clock for Frozen {
    fn now(&self) -> Timestamp {
        NOW
    }
}

async fn open_frozen(path: &std::path::Path) -> trackflow_store::LocalStore {
    trackflow_store::LocalStore::open(
        trackflow_store::LocalStoreOptions::new(path),
        std::sync::Arc::new(Frozen),
    )
    .await
    .expect("open")
}

#[tokio::test]
async fn two_processes_on_one_database_never_issue_the_same_clock_reading() {
    // Two stores on one file stand for two processes (an app and the CLI): same replica id,
    // separate in-memory clocks. Readings must still strictly increase in commit order.
    let fx = Fixture::new().await;
    let (first, second) = (open_frozen(&fx.db_path()).await, open_frozen(&fx.db_path()).await);
    assert_eq!(first.replica_id(), second.replica_id());
    let repos = [SqliteRepository::<Project>::new(first), SqliteRepository::<Project>::new(second)];
    let owner = UserId::new();
    for i in 0..40 {
        repos[i % 2].create(project(owner, &format!("P{i}"))).await.expect("create");
    }
    let ops = SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list");
    assert_eq!(ops.len(), 40);
    for pair in ops.windows(2) {
        assert!(pair[0].hlc < pair[1].hlc, "{} then {}", pair[0].hlc, pair[1].hlc);
    }
}

#[tokio::test]
async fn a_playlist_keeps_a_deleted_track_until_edited_but_cannot_add_one() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let p =
        SqliteRepository::<Project>::new(fx.store.clone()).create(project(owner, "P")).await.expect("create");
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let (a, b) = (
        tracks
            .create(AudioTrack::new(p.id(), owner, "a", 5, None, NOW).expect("valid"))
            .await
            .expect("track"),
        tracks
            .create(AudioTrack::new(p.id(), owner, "b", 5, None, NOW).expect("valid"))
            .await
            .expect("track"),
    );
    let playlists = SqliteRepository::<Playlist>::new(fx.store.clone());
    let mix = playlists
        .create(Playlist::new(p.id(), "Mix", vec![a.id()], NOW).expect("valid"))
        .await
        .expect("create");
    tracks.delete(a.id()).await.expect("delete");
    tracks.delete(b.id()).await.expect("delete");

    let renamed = playlists
        .update(mix.id(), PlaylistPatch { name: Some("Renamed".into()), ..Default::default() })
        .await
        .expect("a rename does not re-check tracks the playlist already held");
    assert_eq!(renamed.track_ids(), [a.id()]);
    let err = playlists
        .update(mix.id(), PlaylistPatch { track_ids: Some(vec![a.id(), b.id()]), ..Default::default() })
        .await
        .expect_err("adding a deleted track");
    assert!(matches!(err, RepositoryError::NotFound(r) if r.id == b.id().as_uuid()), "{err:?}");
    let emptied = playlists
        .update(mix.id(), PlaylistPatch { track_ids: Some(vec![]), ..Default::default() })
        .await
        .expect("dropping the deleted track");
    assert!(emptied.track_ids().is_empty());
}

#[tokio::test]
async fn the_clock_floor_survives_an_emptied_queue() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let first = open_frozen(&fx.db_path()).await;
    SqliteRepository::<Project>::new(first.clone()).create(project(owner, "A")).await.expect("create");
    let before = SqlitePendingOperationsRepository::new(first).list(None).await.expect("list")[0].hlc;
    // Reopening stores the floor; then the queue is emptied, as acknowledgements will do.
    let reopened = open_frozen(&fx.db_path()).await;
    execute(&reopened, "DELETE FROM pending_operations").await;
    let fresh = open_frozen(&fx.db_path()).await;
    SqliteRepository::<Project>::new(fresh.clone()).create(project(owner, "B")).await.expect("create");
    let after = SqlitePendingOperationsRepository::new(fresh).list(None).await.expect("list")[0].hlc;
    assert!(after > before, "{after} must follow {before}");
}

#[tokio::test]
async fn an_edit_wins_over_a_pulled_value_written_ahead_of_our_clock() {
    let fx = Fixture::new().await;
    let repo = SqliteRepository::<Project>::new(fx.store.clone());
    let p = repo.create(project(UserId::new(), "Demo")).await.expect("create");
    // As if another replica, its clock a minute ahead, had written the row and it was pulled.
    let ahead = trackflow_domain::Hlc {
        wall_ms: u64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis(),
        )
        .expect("fits")
            + 60_000,
        counter: 3,
        node: trackflow_domain::NodeId::new(),
    };
    execute(
        &fx.store,
        &format!("UPDATE projects SET field_hlc = '{{\"*\":\"{ahead}\"}}' WHERE id = '{}'", p.id()),
    )
    .await;
    repo.update(p.id(), ProjectPatch { name: Some("Mine".into()), ..Default::default() })
        .await
        .expect("update");
    let ops = SqlitePendingOperationsRepository::new(fx.store.clone()).list(None).await.expect("list");
    assert!(ops[1].hlc > ahead, "{} must follow the pulled {}", ops[1].hlc, ahead);
}

/// The generic repository's lists: `list` hides what lives inside a deleted parent, a type
/// without a parent has none to list by, and an index the type does not declare is refused.
#[tokio::test]
async fn generic_lists_hide_what_a_deleted_parent_holds_and_refuse_what_the_type_lacks() {
    let fx = Fixture::new().await;
    let owner = UserId::new();
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let (kept, gone) = (project(owner, "Kept"), project(owner, "Gone"));
    for p in [&kept, &gone] {
        projects.create(p.clone()).await.expect("project");
        for name in ["A", "B"] {
            let track = AudioTrack::new(p.id(), owner, name, 1_000, None, NOW).expect("valid");
            tracks.create(track).await.expect("track");
        }
    }
    assert_eq!(tracks.list().await.expect("all tracks").len(), 4);
    projects.delete(gone.id()).await.expect("delete");

    let listed = tracks.list().await.expect("all tracks");
    assert_eq!(listed.len(), 2, "the deleted project's tracks are hidden with it");
    assert!(listed.iter().all(|t| t.project_id() == kept.id()));
    assert!(tracks.list_by_parent(gone.id().into()).await.expect("hidden parent").is_empty());
    assert_eq!(
        projects.list_by(Project::BY_MEMBER, owner.into()).await.expect("member"),
        std::slice::from_ref(&kept)
    );

    let refused = projects.list_by_parent(kept.id().into()).await.expect_err("a project has no parent");
    assert!(matches!(&refused, RepositoryError::Validation(v) if v.field == "parent"), "{refused}");
    let refused = tracks.list_by("colour", owner.into()).await.expect_err("no such index");
    assert!(matches!(&refused, RepositoryError::Validation(v) if v.field == "index"), "{refused}");
}

/// Signs `user` in on this device (no server: the role check needs only who writes).
async fn sign_in(fx: &Fixture, user: UserId) {
    use trackflow_domain::ports::{Session, SessionStorage};
    let session = Session { user_id: user, server_url: None, access_token: None };
    trackflow_store::SqliteSessionStorage::new(fx.store.clone()).save(session).await.expect("save session");
}

/// The refusal and that it wrote and queued nothing.
async fn refused<T: std::fmt::Debug>(fx: &Fixture, write: Result<T, RepositoryError>, because: &str) {
    let queued = outbox_total(fx).await;
    match write {
        Err(RepositoryError::Forbidden(message)) => assert_eq!(message, because),
        other => panic!("expected a refusal ({because}), got {other:?}"),
    }
    assert_eq!(outbox_total(fx).await, queued, "a refused write queues nothing");
}

#[tokio::test]
async fn a_write_the_known_role_forbids_is_refused_here_and_queues_nothing() {
    use trackflow_music::{AudioCommentPatch, ProjectCollaboratorPatch};
    let fx = Fixture::new().await;
    let (owner, me) = (UserId::new(), UserId::new());
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let members = SqliteRepository::<ProjectCollaborator>::new(fx.store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let comments = SqliteRepository::<AudioComment>::new(fx.store.clone());
    let profiles = SqliteRepository::<UserProfile>::new(fx.store.clone());

    // What the owner made, as this device holds it after a pull.
    sign_in(&fx, owner).await;
    let p = projects.create(project(owner, "Band")).await.expect("create");
    let membership = members
        .create(ProjectCollaborator::new(p.id(), me, CollaboratorRole::Viewer, NOW).expect("valid"))
        .await
        .expect("invite");
    let track = tracks
        .create(AudioTrack::new(p.id(), owner, "T", 10_000, None, NOW).expect("valid"))
        .await
        .expect("track");
    let theirs = comments
        .create(AudioComment::new(&track, owner, "theirs", 1_000, NOW).expect("valid"))
        .await
        .expect("comment");
    let owner_profile = profiles
        .create(UserProfile::new(owner, "Olu", "olu@example.com", NOW).expect("valid"))
        .await
        .expect("profile");

    // A viewer changes nothing in the project.
    sign_in(&fx, me).await;
    let rename = || ProjectPatch { name: Some("Mine now".into()), ..Default::default() };
    refused(&fx, projects.update(p.id(), rename()).await, "viewers cannot change a project").await;
    let comment = AudioComment::new(&track, me, "mine", 2_000, NOW).expect("valid");
    refused(&fx, comments.create(comment).await, "viewers cannot change a project").await;
    let promote = ProjectCollaboratorPatch { role: Some(CollaboratorRole::Editor) };
    refused(&fx, members.update(membership.id(), promote.clone()).await, "viewers cannot change a project")
        .await;
    assert_eq!(projects.get(p.id()).await.expect("get").map(|p| p.name().to_owned()), Some("Band".into()));
    let patch = UserProfilePatch { name: Some("Not Olu".into()), ..Default::default() };
    refused(&fx, profiles.update(owner_profile.id(), patch).await, "only its owner changes a user profile")
        .await;

    // Promoted by the owner, an editor writes, but deletes no project and manages nobody.
    sign_in(&fx, owner).await;
    members.update(membership.id(), promote).await.expect("the owner promotes");
    sign_in(&fx, me).await;
    projects.update(p.id(), rename()).await.expect("an editor renames the project");
    refused(&fx, projects.delete(p.id()).await, "only the owner deletes a project").await;
    refused(&fx, members.delete(membership.id()).await, "only the owner manages project collaborators").await;

    // A comment is its author's: others neither rewrite nor delete it, its author does both.
    let edit = || AudioCommentPatch { content: Some("rewritten".into()) };
    refused(&fx, comments.update(theirs.id(), edit()).await, "only its author changes this audio comment")
        .await;
    let why = "only its author or the project's owner deletes this audio comment";
    refused(&fx, comments.delete(theirs.id()).await, why).await;
    let mine = comments
        .create(AudioComment::new(&track, me, "mine", 2_000, NOW).expect("valid"))
        .await
        .expect("own");
    comments.update(mine.id(), edit()).await.expect("its author rewrites it");
    // The project's owner removes any comment.
    sign_in(&fx, owner).await;
    comments.delete(mine.id()).await.expect("the owner deletes it");
}
