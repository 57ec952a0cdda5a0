//! The server-store contract: every test here runs against SQLite and against PostgreSQL.
//!
//! PostgreSQL comes from `TRACKFLOW_TEST_POSTGRES_URL` (set by .ci/run); each test creates a
//! database of its own and drops it afterwards. Without the variable the PostgreSQL half of
//! each test prints that it was skipped.

use crate::harness::Writer;
use serde_json::{json, Value};
use std::{collections::BTreeMap, sync::Arc};
use trackflow_domain::{
    ports::{Account, Retention, ServerStore, ServerStoreError, StoredToken},
    protocol::{
        DeletedWith, EntityState, MutationOutcome, PullRequest, PullResponse, PushRequest, ScopeHead,
        PEOPLE_SCOPE,
    },
    CollaboratorRole, EntityType, SyncEntity, Timestamp, UserId,
};
use trackflow_music::{
    AudioComment, AudioTrack, Playlist, Project, ProjectCollaborator, ProjectId, UserProfile,
};
use trackflow_server_store::{DieselServerStore, ScratchDatabase};
use uuid::Uuid;

pub type Store = Arc<dyn ServerStore>;

pub fn sqlite_store() -> Store {
    crate::harness::init_logs();
    Arc::new(DieselServerStore::open("sqlite::memory:", 1).expect("open sqlite"))
}

/// A PostgreSQL database that lives as long as this value.
pub struct PgDatabase {
    scratch: ScratchDatabase,
    pub url: String,
}

impl PgDatabase {
    /// A fresh database, or `None` (after saying so) when no PostgreSQL is configured and none
    /// is required (`TRACKFLOW_REQUIRE_POSTGRES`).
    pub fn create(test: &str) -> Option<Self> {
        let admin_url = trackflow_server_store::test_postgres_url(test)?;
        let scratch = ScratchDatabase::create(&admin_url, "trackflow_test").expect("create a test database");
        Some(Self { url: scratch.url().to_owned(), scratch })
    }

    pub fn store(&self, connections: u32) -> DieselServerStore {
        crate::harness::init_logs();
        DieselServerStore::open(self.scratch.url(), connections).expect("open postgres store")
    }
}

/// Declares each listed test twice: `sqlite::name` and `postgres::name`.
macro_rules! contract_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_store()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::PgDatabase::create(stringify!($name)) else { return };
                    super::$name(std::sync::Arc::new(db.store(4))).await;
                }
            )+
        }
    };
}

contract_tests!(
    accounts_and_tokens,
    applies_and_replays_mutations_once,
    concurrent_edits_merge_field_by_field,
    delete_wins_over_concurrent_update,
    bad_input_refuses_the_whole_push,
    references_must_exist_in_the_same_project,
    children_are_deleted_with_their_parent,
    pull_pages_in_order_without_gaps,
    new_collaborator_receives_existing_content,
    existing_members_receive_a_new_fellow_and_their_grant,
    authors_and_members_cannot_be_forged,
    a_member_of_many_projects_syncs_everything_once,
    purged_projects_cannot_be_taken_over,
    unknown_and_expired_cursors_reset,
    authorization_for_every_entity_type_and_role,
    scoped_pulls_cover_one_scope_each,
    a_create_of_a_row_stored_in_another_project_is_answered_as_before,
    purging_by_age_forgets_only_what_is_older_than_the_retention,
);

fn now() -> Timestamp {
    Timestamp(1_800_000_000_000)
}

/// A user who has signed up (the store only needs the account to exist for tokens).
async fn account(store: &Store) -> UserId {
    let user = UserId::new();
    let email = format!("{}@example.com", user.as_uuid().simple());
    store
        .create_account(Account { user_id: user, email, password_hash: "x".into(), created_at: now() })
        .await
        .expect("account");
    user
}

/// Pushes and returns the outcomes.
async fn push(store: &Store, user: UserId, request: PushRequest) -> Vec<MutationOutcome> {
    store.push(user, request).await.expect("push").results.into_iter().map(|r| r.outcome).collect()
}

/// Pushes and expects every mutation applied; returns their versions.
async fn push_applied(store: &Store, user: UserId, request: PushRequest) -> Vec<i64> {
    push(store, user, request).await.iter().map(applied).collect()
}

fn applied(outcome: &MutationOutcome) -> i64 {
    match outcome {
        MutationOutcome::Applied { version } => *version,
        other => panic!("expected applied, got {other:?}"),
    }
}

/// Pulls everything after `cursor`, page by page; returns the changes and the last cursor.
async fn pull_from(
    store: &Store,
    user: UserId,
    cursor: Option<String>,
    limit: u32,
) -> (Vec<EntityState>, String) {
    pull_scope(store, user, None, cursor, limit).await
}

/// [`pull_from`] for one scope (`None`: everything).
async fn pull_scope(
    store: &Store,
    user: UserId,
    scope: Option<&str>,
    cursor: Option<String>,
    limit: u32,
) -> (Vec<EntityState>, String) {
    let mut cursor = cursor;
    let mut all = Vec::new();
    loop {
        match store
            .pull(user, PullRequest { cursor: cursor.clone(), limit, scope: scope.map(str::to_owned) })
            .await
            .expect("pull")
        {
            PullResponse::Changes { changes, next_cursor, has_more, .. } => {
                assert!(changes.len() <= limit as usize);
                all.extend(changes);
                cursor = Some(next_cursor);
                if !has_more {
                    return (all, cursor.unwrap_or_default());
                }
            }
            PullResponse::Reset => panic!("unexpected reset"),
        }
    }
}

fn ids(changes: &[EntityState]) -> Vec<Uuid> {
    changes.iter().map(|c| c.entity_id).collect()
}

/// A project owned by a fresh user, pushed. Returns (owner, writer, project).
async fn owned_project(store: &Store) -> (UserId, Writer, Project) {
    let owner = account(store).await;
    let mut writer = Writer::new();
    let project = Project::new(owner, "Album", None, now()).expect("valid");
    let outcome = push(store, owner, writer.creating(&project)).await;
    applied(&outcome[0]);
    (owner, writer, project)
}

async fn accounts_and_tokens(store: Store) {
    let user = account(&store).await;
    let email = format!("{}@example.com", user.as_uuid().simple());
    let found = store.find_account(&email).await.expect("find").expect("exists");
    assert_eq!(found.user_id, user);
    assert_eq!(store.find_account("nobody@example.com").await.expect("find"), None);
    let again = Account { user_id: UserId::new(), email, password_hash: "y".into(), created_at: now() };
    assert!(matches!(store.create_account(again).await, Err(ServerStoreError::Taken(_))));

    let token = |hash: &str, expires_at| StoredToken { token_hash: hash.into(), user_id: user, expires_at };
    store.save_token(token("live", Timestamp(2_000))).await.expect("save");
    store.save_token(token("old", Timestamp(1_000))).await.expect("save");
    assert_eq!(store.user_for_token("live", Timestamp(1_500)).await.expect("lookup"), Some(user));
    assert_eq!(store.user_for_token("old", Timestamp(1_500)).await.expect("lookup"), None, "expired");
    assert_eq!(store.user_for_token("nope", Timestamp(1_500)).await.expect("lookup"), None, "unknown");
    store.revoke_token("live").await.expect("revoke");
    assert_eq!(store.user_for_token("live", Timestamp(1_500)).await.expect("lookup"), None, "revoked");
}

async fn applies_and_replays_mutations_once(store: Store) {
    let owner = account(&store).await;
    let mut writer = Writer::new();
    let project = Project::new(owner, "Album", None, now()).expect("valid");
    let create = writer.create(&project);
    let rename = writer.update(Project::ENTITY_TYPE, project.entity_id(), &[("name", json!("Renamed"))]);
    let batch = writer.batch(vec![create.clone(), rename.clone()]);
    let first = push(&store, owner, batch.clone()).await;
    let (v1, v2) = (applied(&first[0]), applied(&first[1]));
    assert!(v2 > v1);

    // The response was lost; the client sends the same batch again.
    let replay = push(&store, owner, batch).await;
    assert_eq!(
        replay,
        first
            .iter()
            .map(|o| MutationOutcome::Duplicate { version: applied(o), first: Box::new(o.clone()) })
            .collect::<Vec<_>>()
    );
    let (changes, _) = pull_from(&store, owner, None, 100).await;
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].version, &changes[0].fields["name"]), (v2, &json!("Renamed")), "applied once");

    // Same id, different content.
    let mut forged = rename;
    forged.fields.get_mut("name").expect("name").value = json!("Other");
    let outcome = push(&store, owner, writer.batch(vec![forged])).await;
    assert!(
        matches!(&outcome[0], MutationOutcome::Rejected { code, .. } if code == "id_reused"),
        "{outcome:?}"
    );
}

async fn concurrent_edits_merge_field_by_field(store: Store) {
    let (owner, mut first, project) = owned_project(&store).await;
    let mut second = Writer::new();
    let id = project.entity_id();
    // Both edit from the same base: different fields both survive.
    let a = first.update(Project::ENTITY_TYPE, id, &[("name", json!("From A"))]);
    let b = second.update(Project::ENTITY_TYPE, id, &[("description", json!("From B"))]);
    applied(&push(&store, owner, first.batch(vec![a])).await[0]);
    applied(&push(&store, owner, second.batch(vec![b])).await[0]);
    // A later write of the same field from a clock that is behind loses, and says so.
    let mut late = Writer::new();
    let stale = late.update(Project::ENTITY_TYPE, id, &[("name", json!("Stale"))]);
    let stale = trackflow_domain::protocol::Mutation {
        fields: stale
            .fields
            .into_iter()
            .map(|(k, mut c)| {
                c.hlc.wall_ms = 1;
                (k, c)
            })
            .collect(),
        ..stale
    };
    let outcome = push(&store, owner, late.batch(vec![stale.clone()])).await;
    // Sent again, the conflict is replayed as it was, not merged again.
    let replay = push(&store, owner, late.batch(vec![stale])).await;
    assert!(
        matches!(&replay[0], MutationOutcome::Duplicate { first, .. } if **first == outcome[0]),
        "{replay:?}"
    );
    match &outcome[0] {
        MutationOutcome::Conflict { server, lost_fields } => {
            assert_eq!(lost_fields, &vec!["name".to_owned()]);
            assert_eq!(server.fields["name"], json!("From A"));
            assert_eq!(server.fields["description"], json!("From B"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn delete_wins_over_concurrent_update(store: Store) {
    let (owner, mut first, project) = owned_project(&store).await;
    let mut second = Writer::new();
    let id = project.entity_id();
    let delete = first.delete(Project::ENTITY_TYPE, id);
    // Written later by the clock, but concurrent with the delete.
    let update = second.update(Project::ENTITY_TYPE, id, &[("name", json!("Too late"))]);
    applied(&push(&store, owner, first.batch(vec![delete])).await[0]);
    let outcome = push(&store, owner, second.batch(vec![update])).await;
    assert!(
        matches!(&outcome[0], MutationOutcome::Conflict { server, lost_fields } if server.deleted && lost_fields == &vec!["name".to_owned()]),
        "{outcome:?}"
    );
    let (changes, _) = pull_from(&store, owner, None, 100).await;
    assert!(changes.iter().any(|c| c.entity_id == id && c.deleted));
}

async fn bad_input_refuses_the_whole_push(store: Store) {
    let owner = account(&store).await;
    let mut writer = Writer::new();
    let project = Project::new(owner, "Album", None, now()).expect("valid");
    let good = writer.create(&project);
    let mut fields = Project::new(owner, "Other", None, now()).expect("valid").fields();
    fields.insert("name".into(), json!("n".repeat(101)));
    let too_long = writer.mutation(
        trackflow_domain::OperationKind::Create,
        Project::ENTITY_TYPE,
        Uuid::now_v7(),
        fields,
    );
    let bad_id = too_long.id;
    let error = store.push(owner, writer.batch(vec![good.clone(), too_long])).await.expect_err("refused");
    match error {
        ServerStoreError::BadInput { code, message, mutation_id } => {
            assert_eq!(code, "invalid_field");
            assert!(message.contains("name"), "{message}");
            assert_eq!(mutation_id, Some(bad_id));
        }
        other => panic!("expected bad input, got {other:?}"),
    }
    let (changes, _) = pull_from(&store, owner, None, 100).await;
    assert!(changes.is_empty(), "nothing stored: {changes:?}");
    // The good mutation was not recorded either: sent alone it applies (not a duplicate).
    applied(&push(&store, owner, writer.batch(vec![good])).await[0]);

    // Too many mutations, and clock readings signed by another replica.
    let many: Vec<_> =
        (0..501).map(|_| writer.update(Project::ENTITY_TYPE, project.entity_id(), &[])).collect();
    let error = store.push(owner, writer.batch(many)).await.expect_err("too many");
    assert!(matches!(error, ServerStoreError::BadInput { ref code, .. } if code == "too_many_mutations"));
    let mut other = Writer::new();
    let foreign = other.update(Project::ENTITY_TYPE, project.entity_id(), &[("name", json!("x"))]);
    let error = store.push(owner, writer.batch(vec![foreign])).await.expect_err("foreign clock");
    assert!(matches!(error, ServerStoreError::BadInput { ref code, .. } if code == "clock_node_mismatch"));
}

async fn references_must_exist_in_the_same_project(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let (other_owner, mut other_writer, other_project) = owned_project(&store).await;
    // A track in a project that does not exist: malformed.
    let orphan = AudioTrack::new(ProjectId::new(), owner, "T", 1, None, now()).expect("valid");
    let error = store.push(owner, writer.creating(&orphan)).await.expect_err("missing");
    assert!(
        matches!(error, ServerStoreError::BadInput { ref code, .. } if code == "missing_reference"),
        "{error:?}"
    );
    // A playlist listing a track of another project: malformed.
    let foreign_track = AudioTrack::new(other_project.id(), other_owner, "T", 1, None, now()).expect("valid");
    applied(&push(&store, other_owner, other_writer.creating(&foreign_track)).await[0]);
    let playlist = Playlist::new(project.id(), "Mix", vec![foreign_track.id()], now()).expect("valid");
    let error = store.push(owner, writer.creating(&playlist)).await.expect_err("cross project");
    assert!(
        matches!(error, ServerStoreError::BadInput { ref code, .. } if code == "missing_reference"),
        "{error:?}"
    );
    // A comment on a deleted track: stored deleted with the track, its author told by a
    // conflict; not malformed.
    let track = AudioTrack::new(project.id(), owner, "T", 1, None, now()).expect("valid");
    let create = writer.create(&track);
    let delete = writer.delete(AudioTrack::ENTITY_TYPE, track.entity_id());
    push_applied(&store, owner, writer.batch(vec![create, delete])).await;
    let comment = AudioComment::new(&track, owner, "nice", 0, now()).expect("valid");
    let outcome = push(&store, owner, writer.creating(&comment)).await;
    let MutationOutcome::Conflict { server, lost_fields } = &outcome[0] else { panic!("{outcome:?}") };
    assert!(server.deleted, "{server:?}");
    assert_eq!(server.deleted_with, Some(DeletedWith { parent: track.entity_ref(), by: None }));
    assert!(lost_fields.contains(&"content".to_owned()), "{lost_fields:?}");
    // A playlist naming the deleted track, which it does not live inside: still refused.
    let playlist = Playlist::new(project.id(), "Mix", vec![track.id()], now()).expect("valid");
    let outcome = push(&store, owner, writer.creating(&playlist)).await;
    assert!(
        matches!(&outcome[0], MutationOutcome::Rejected { code, .. } if code == "reference_deleted"),
        "{outcome:?}"
    );
}

/// A create naming one project, of a row already stored in another: before its locks are
/// taken the push can only tell the project the create names, and reads the row under them.
/// It is refused as such a create always was, and nothing of either project changes.
async fn a_create_of_a_row_stored_in_another_project_is_answered_as_before(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let mut other_writer = Writer::new();
    let other = Project::new(owner, "Other", None, now()).expect("valid");
    applied(&push(&store, owner, other_writer.creating(&other)).await[0]);
    let track = AudioTrack::new(project.id(), owner, "T", 1, None, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&track)).await[0]);
    let (_, cursor) = pull_scope(&store, owner, Some(&format!("project:{}", other.id())), None, 100).await;

    // The same id, its fields naming the other project.
    let mut fields = track.fields();
    fields.insert("project_id".to_owned(), json!(other.id()));
    let moved = other_writer.mutation(
        trackflow_domain::OperationKind::Create,
        AudioTrack::ENTITY_TYPE,
        track.entity_id(),
        fields,
    );
    let answer = store.push(owner, other_writer.batch(vec![moved])).await;
    match &answer {
        Err(ServerStoreError::BadInput { .. }) => {}
        Ok(response) => {
            assert!(matches!(response.results[0].outcome, MutationOutcome::Rejected { .. }), "{response:?}")
        }
        Err(other) => panic!("not a refusal: {other:?}"),
    }
    let (changed, _) =
        pull_scope(&store, owner, Some(&format!("project:{}", other.id())), Some(cursor), 100).await;
    assert!(changed.is_empty(), "the other project is unchanged: {changed:?}");
}

/// A delete takes what lives inside the deleted entity with it: each descendant is a tombstone
/// at a new version that says why and who deleted it. Records that grant membership stay, so
/// the members still receive the deletion; a later write to a descendant loses to it.
async fn children_are_deleted_with_their_parent(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let guest = account(&store).await;
    let track = AudioTrack::new(project.id(), owner, "T", 1_000, None, now()).expect("valid");
    let other = AudioTrack::new(project.id(), owner, "Other", 1_000, None, now()).expect("valid");
    let comment = AudioComment::new(&track, owner, "nice", 0, now()).expect("valid");
    let kept = AudioComment::new(&other, owner, "stays", 0, now()).expect("valid");
    let invite =
        ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, now()).expect("valid");
    let batch = vec![
        writer.create(&track),
        writer.create(&other),
        writer.create(&comment),
        writer.create(&kept),
        writer.create(&invite),
    ];
    push_applied(&store, owner, writer.batch(batch)).await;
    let (_, cursor) = pull_from(&store, guest, None, 100).await;

    // The guest comments on the track; the owner, who has not seen it, deletes the track.
    let mut guest_writer = Writer::new();
    let late = AudioComment::new(&track, guest, "late", 10, now()).expect("valid");
    push_applied(&store, guest, guest_writer.creating(&late)).await;
    push_applied(&store, owner, writer.deleting(AudioTrack::ENTITY_TYPE, track.entity_id())).await;
    let (changes, cursor) = pull_from(&store, guest, Some(cursor), 100).await;
    let state = |id: Uuid| changes.iter().rev().find(|c| c.entity_id == id).cloned();
    let track_version = state(track.entity_id()).expect("the track's tombstone").version;
    for child in [comment.entity_id(), late.entity_id()] {
        let tombstone = state(child).expect("the comment's tombstone");
        assert!(tombstone.deleted && tombstone.version > track_version, "{tombstone:?}");
        assert_eq!(tombstone.deleted_with, Some(DeletedWith { parent: track.entity_ref(), by: Some(owner) }));
        assert_eq!(
            tombstone.fields["content"],
            serde_json::to_value(if child == late.entity_id() { "late" } else { "nice" }).unwrap(),
            "kept for its author"
        );
    }
    assert!(state(kept.entity_id()).is_none(), "another track's comment is untouched");

    // A later edit of a comment deleted with its track loses to the deletion.
    let edit = guest_writer.update(
        AudioComment::ENTITY_TYPE,
        late.entity_id(),
        &[("content", serde_json::json!("edited"))],
    );
    let outcome = push(&store, guest, guest_writer.batch(vec![edit])).await;
    let MutationOutcome::Conflict { server, .. } = &outcome[0] else { panic!("{outcome:?}") };
    assert!(server.deleted && server.deleted_with.is_some(), "{server:?}");

    // The project's deletion takes its tracks and comments, not its collaborator records: the
    // guest still receives it.
    push_applied(&store, owner, writer.deleting(Project::ENTITY_TYPE, project.entity_id())).await;
    let (changes, _) = pull_from(&store, guest, Some(cursor), 100).await;
    let state = |id: Uuid| changes.iter().rev().find(|c| c.entity_id == id).cloned();
    assert!(state(project.entity_id()).is_some_and(|p| p.deleted), "the guest receives the deletion");
    for child in [other.entity_id(), kept.entity_id()] {
        let tombstone = state(child).expect("deleted with the project");
        assert_eq!(
            tombstone.deleted_with,
            Some(DeletedWith { parent: project.entity_ref(), by: Some(owner) })
        );
    }
    assert!(state(invite.entity_id()).is_none(), "the membership record stays as it was");
}

async fn pull_pages_in_order_without_gaps(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let tracks: Vec<AudioTrack> = (0..25)
        .map(|i| AudioTrack::new(project.id(), owner, &format!("T{i}"), 1, None, now()).expect("valid"))
        .collect();
    let batch = tracks.iter().map(|t| writer.create(t)).collect();
    push_applied(&store, owner, writer.batch(batch)).await;
    let (changes, cursor) = pull_from(&store, owner, None, 10).await;
    let mut expected = vec![project.entity_id()];
    expected.extend(tracks.iter().map(SyncEntity::entity_id));
    assert_eq!(ids(&changes), expected, "every change once, in version order");
    assert!(changes.windows(2).all(|w| w[0].version < w[1].version));
    // Nothing new: an empty page, same position.
    let (none, same) = pull_from(&store, owner, Some(cursor.clone()), 10).await;
    assert!(none.is_empty());
    assert_eq!(same, cursor);
    // One more change: exactly it.
    let rename = writer.update(AudioTrack::ENTITY_TYPE, tracks[3].entity_id(), &[("name", json!("Renamed"))]);
    applied(&push(&store, owner, writer.batch(vec![rename])).await[0]);
    let (next, _) = pull_from(&store, owner, Some(cursor), 10).await;
    assert_eq!(ids(&next), vec![tracks[3].entity_id()]);
}

async fn new_collaborator_receives_existing_content(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let tracks: Vec<AudioTrack> = (0..3)
        .map(|i| AudioTrack::new(project.id(), owner, &format!("T{i}"), 1, None, now()).expect("valid"))
        .collect();
    let profile = UserProfile::new(owner, "Owner", "owner@example.com", now()).expect("valid");
    let mut batch: Vec<_> = tracks.iter().map(|t| writer.create(t)).collect();
    batch.push(writer.create(&profile));
    push_applied(&store, owner, writer.batch(batch)).await;

    let member = account(&store).await;
    let (before, cursor) = pull_from(&store, member, None, 2).await;
    assert!(before.is_empty(), "a stranger sees nothing: {before:?}");
    let grant =
        ProjectCollaborator::new(project.id(), member, CollaboratorRole::Viewer, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&grant)).await[0]);

    // From the old cursor, in small pages: the project, its tracks, the grant and the owner's
    // profile (a fellow member's), each once.
    let (after, cursor) = pull_from(&store, member, Some(cursor), 2).await;
    let mut got = ids(&after);
    got.sort();
    let mut expected = vec![project.entity_id(), grant.entity_id(), profile.entity_id()];
    expected.extend(tracks.iter().map(SyncEntity::entity_id));
    expected.sort();
    assert_eq!(got, expected);
    // Later changes arrive normally.
    let rename = writer.update(AudioTrack::ENTITY_TYPE, tracks[0].entity_id(), &[("name", json!("New"))]);
    applied(&push(&store, owner, writer.batch(vec![rename])).await[0]);
    let (next, _) = pull_from(&store, member, Some(cursor), 2).await;
    assert_eq!(ids(&next), vec![tracks[0].entity_id()]);
}

/// When someone joins, existing members receive the newcomer's older profile (placed at the
/// grant) and the collaborator record itself, even when a page ends between the two.
async fn existing_members_receive_a_new_fellow_and_their_grant(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let fellow = account(&store).await;
    let mut fellow_writer = Writer::new();
    let profile = UserProfile::new(fellow, "Fellow", "f@example.com", now()).expect("valid");
    applied(&push(&store, fellow, fellow_writer.creating(&profile)).await[0]);
    let (_, cursor) = pull_from(&store, owner, None, 10).await;
    let grant =
        ProjectCollaborator::new(project.id(), fellow, CollaboratorRole::Editor, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&grant)).await[0]);
    for limit in [1, 2, 10] {
        let (changes, _) = pull_from(&store, owner, Some(cursor.clone()), limit).await;
        assert_eq!(ids(&changes), vec![profile.entity_id(), grant.entity_id()], "pages of {limit}");
    }
}

/// A first sync over several projects joined at different times, in small pages: every row
/// once, and the pages fill up in grant order.
async fn a_member_of_many_projects_syncs_everything_once(store: Store) {
    let member = account(&store).await;
    let mut expected = Vec::new();
    for n in 0..4 {
        let (owner, mut writer, project) = owned_project(&store).await;
        let tracks: Vec<_> = (0..3 + n)
            .map(|i| AudioTrack::new(project.id(), owner, &format!("T{i}"), 1, None, now()).expect("valid"))
            .collect();
        let batch: Vec<_> = tracks.iter().map(|t| writer.create(t)).collect();
        let batch = writer.batch(batch);
        push_applied(&store, owner, batch).await;
        let grant =
            ProjectCollaborator::new(project.id(), member, CollaboratorRole::Viewer, now()).expect("valid");
        applied(&push(&store, owner, writer.creating(&grant)).await[0]);
        expected.push(project.entity_id());
        expected.push(grant.entity_id());
        expected.extend(tracks.iter().map(SyncEntity::entity_id));
    }
    for limit in [1, 3, 1000] {
        let (changes, _) = pull_from(&store, member, None, limit).await;
        let mut got = ids(&changes);
        let unique: std::collections::BTreeSet<_> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "no row twice (pages of {limit})");
        got.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(got, want, "pages of {limit}");
    }
}

async fn authors_and_members_cannot_be_forged(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let editor = account(&store).await;
    let grant =
        ProjectCollaborator::new(project.id(), editor, CollaboratorRole::Editor, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&grant)).await[0]);
    let track = AudioTrack::new(project.id(), owner, "T", 1, None, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&track)).await[0]);

    let mut editors = Writer::new();
    let as_owner = [
        editors.creating(&AudioTrack::new(project.id(), owner, "Forged", 1, None, now()).expect("valid")),
        editors.creating(&AudioComment::new(&track, owner, "forged", 0, now()).expect("valid")),
    ];
    for request in as_owner {
        let outcome = push(&store, editor, request).await;
        assert!(
            matches!(&outcome[0], MutationOutcome::Rejected { code, .. } if code == "forbidden"),
            "{outcome:?}"
        );
    }
    let own = AudioComment::new(&track, editor, "mine", 0, now()).expect("valid");
    applied(&push(&store, editor, editors.creating(&own)).await[0]);

    // One record per member: a second one for the editor, or one for the owner, is refused.
    for user in [editor, owner] {
        let again =
            ProjectCollaborator::new(project.id(), user, CollaboratorRole::Viewer, now()).expect("valid");
        let outcome = push(&store, owner, writer.creating(&again)).await;
        assert!(
            matches!(&outcome[0], MutationOutcome::Rejected { code, .. } if code == "already_exists"),
            "{outcome:?}"
        );
    }
}

/// Purging tombstones keeps a project's: otherwise a stranger could create a project with the
/// old id and read what is left inside it.
async fn purged_projects_cannot_be_taken_over(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let track = AudioTrack::new(project.id(), owner, "secret", 1, None, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&track)).await[0]);
    let delete = writer.delete(Project::ENTITY_TYPE, project.entity_id());
    applied(&push(&store, owner, writer.batch(vec![delete])).await[0]);
    store.purge(now(), Retention::Versions(0)).await.expect("purge");
    let stranger = account(&store).await;
    let mut fields = project.fields();
    fields.insert("owner_id".into(), json!(stranger));
    let mut theirs = Writer::new();
    let takeover = theirs.mutation(
        trackflow_domain::OperationKind::Create,
        Project::ENTITY_TYPE,
        project.entity_id(),
        fields,
    );
    let outcome = push(&store, stranger, theirs.batch(vec![takeover])).await;
    assert!(!matches!(outcome[0], MutationOutcome::Applied { .. }), "{outcome:?}");
    let (seen, _) = pull_from(&store, stranger, None, 100).await;
    assert!(seen.is_empty(), "{seen:?}");
}

/// A purge keeping 10 s forgets what the newest mark at least 10 s old covered: tombstones
/// there keep their rows without fields, dedupe records there go, cursors before it reset.
/// Writes sent again after their records are gone change nothing: a create still meets its
/// delete, an edit its later edit. Newer records still answer `duplicate`.
async fn purging_by_age_forgets_only_what_is_older_than_the_retention(store: Store) {
    let keep = Retention::Age(std::time::Duration::from_secs(10));
    let at = |s: i64| Timestamp(now().as_millis() + s * 1000);
    let (owner, mut writer, project) = owned_project(&store).await;
    let (_, early_cursor) = pull_from(&store, owner, None, 100).await;
    let track = AudioTrack::new(project.id(), owner, "T", 1, None, now()).expect("valid");
    let create = writer.create(&track);
    let rename = writer.update(Project::ENTITY_TYPE, project.entity_id(), &[("name", json!("Old"))]);
    let retitle = writer.update(AudioTrack::ENTITY_TYPE, track.entity_id(), &[("name", json!("T2"))]);
    let delete = writer.delete(AudioTrack::ENTITY_TYPE, track.entity_id());
    let old = writer.batch(vec![create.clone(), rename.clone(), retitle.clone(), delete]);
    push_applied(&store, owner, old).await;
    let (_, horizon_cursor) = pull_from(&store, owner, None, 100).await;
    assert_eq!(store.purge(at(0), keep).await.expect("purge").tombstones, 0, "the first run only marks");

    let newer = writer.update(Project::ENTITY_TYPE, project.entity_id(), &[("name", json!("New"))]);
    let newest = push_applied(&store, owner, writer.batch(vec![newer.clone()])).await[0];
    assert_eq!(store.purge(at(5), keep).await.expect("purge").tombstones, 0, "nothing is 10 s old yet");
    let purged = store.purge(at(11), keep).await.expect("purge");
    assert_eq!((purged.tombstones, purged.records), (1, 5), "the first batch and the project's create");
    let pull_after =
        |cursor: String| store.pull(owner, PullRequest { cursor: Some(cursor), limit: 10, scope: None });
    assert_eq!(pull_after(early_cursor).await.expect("pull"), PullResponse::Reset, "from before the horizon");
    let at_horizon = pull_after(horizon_cursor).await.expect("pull");
    assert!(
        matches!(at_horizon, PullResponse::Changes { .. }),
        "a cursor at the horizon lost nothing: {at_horizon:?}"
    );

    // Sent again: the old writes change nothing (the track's lose to its delete, with no fields
    // left to merge with); the newer one is still known.
    let again = push(&store, owner, writer.batch(vec![create, rename, retitle])).await;
    let versions: Vec<i64> = again
        .iter()
        .map(|o| match o {
            MutationOutcome::Conflict { server, .. } => server.version,
            other => panic!("each loses to what came later: {other:?}"),
        })
        .collect();
    assert!(versions.iter().all(|v| *v <= newest), "no new version: {versions:?}");
    let again = push(&store, owner, writer.batch(vec![newer])).await;
    assert!(matches!(again[0], MutationOutcome::Duplicate { .. }), "{again:?}");
    let (all, _) = pull_from(&store, owner, None, 100).await;
    let project_state = all.iter().find(|c| c.entity_id == project.entity_id()).expect("project");
    assert_eq!(project_state.fields["name"], json!("New"));
    let track_state = all.iter().find(|c| c.entity_id == track.entity_id()).expect("the tombstone");
    assert!(track_state.deleted && track_state.fields.is_empty(), "{track_state:?}");
}

async fn unknown_and_expired_cursors_reset(store: Store) {
    let (owner, mut writer, project) = owned_project(&store).await;
    let reset = |cursor: &str| {
        let store = store.clone();
        let cursor = cursor.to_owned();
        async move {
            store
                .pull(owner, PullRequest { cursor: Some(cursor), limit: 10, scope: None })
                .await
                .expect("pull")
        }
    };
    for garbage in ["", "abc", "x.1.1", "1.2", "a.b.c.d"] {
        assert_eq!(reset(garbage).await, PullResponse::Reset, "{garbage:?}");
    }
    let (_, cursor) = pull_from(&store, owner, None, 10).await;
    let (epoch, _) = cursor.split_once('.').expect("cursor has an epoch");
    assert_eq!(reset(&format!("{epoch}.999999.999999")).await, PullResponse::Reset, "ahead of the server");
    assert_eq!(reset(&cursor.replacen(epoch, "0123", 1)).await, PullResponse::Reset, "another database");
    // A tombstone purged after the cursor: the cursor has expired.
    let track = AudioTrack::new(project.id(), owner, "T", 1, None, now()).expect("valid");
    let batch = vec![writer.create(&track), writer.delete(AudioTrack::ENTITY_TYPE, track.entity_id())];
    push(&store, owner, writer.batch(batch)).await;
    let purged = store.purge(now(), Retention::Versions(0)).await.expect("purge");
    assert_eq!(
        (purged.tombstones, purged.records),
        (1, 3),
        "the track's tombstone; the three writes' records"
    );
    assert_eq!(reset(&cursor).await, PullResponse::Reset, "expired");
    let (fresh, _) = pull_from(&store, owner, None, 10).await;
    assert_eq!(ids(&fresh), vec![project.entity_id(), track.entity_id()]);
    assert!(
        fresh[1].deleted && fresh[1].fields.is_empty(),
        "a full re-sync learns of the delete, no more: {fresh:?}"
    );
    let error =
        store.pull(owner, PullRequest { cursor: None, limit: 0, scope: None }).await.expect_err("limit 0");
    assert!(matches!(error, ServerStoreError::BadInput { ref code, .. } if code == "invalid_limit"));
}

/// Every entity type against every role (owner, editor, viewer, stranger): may they pull it,
/// and may they create, update and delete it? `-` allowed, `x` refused.
async fn authorization_for_every_entity_type_and_role(store: Store) {
    //                         entity type                    pull  create update delete
    let table: [(EntityType, [&str; 4]); 5] = [
        (Project::ENTITY_TYPE, ["----", "-x-x", "-xxx", "xxxx"]),
        (ProjectCollaborator::ENTITY_TYPE, ["----", "-xxx", "-xxx", "xxxx"]),
        (AudioTrack::ENTITY_TYPE, ["----", "----", "-xxx", "xxxx"]),
        // The comment tried is the owner's: an editor writes comments of their own only.
        (AudioComment::ENTITY_TYPE, ["----", "--xx", "-xxx", "xxxx"]),
        (Playlist::ENTITY_TYPE, ["----", "----", "-xxx", "xxxx"]),
    ];
    let roles = ["owner", "editor", "viewer", "stranger"];
    for (entity_type, by_role) in table {
        for (role, expected) in roles.iter().zip(by_role) {
            let got = try_everything(&store, entity_type, role).await;
            assert_eq!(got, expected, "{entity_type} as {role}: pull, create, update, delete");
        }
    }
    // Profiles: one's own is read and written; a fellow member's is read only; a stranger's
    // is invisible and untouchable.
    for (relation, expected) in [("own", "----"), ("fellow", "-xxx"), ("stranger", "xxxx")] {
        assert_eq!(try_profile(&store, relation).await, expected, "profile as {relation}");
    }
}

/// Sets up a project with one entity of each type, a user with `role`, and tries to pull the
/// entity, create another like it, update it and delete it as that user.
async fn try_everything(store: &Store, entity_type: EntityType, role: &str) -> String {
    let (owner, mut setup, project) = owned_project(store).await;
    let actor = if role == "owner" { owner } else { account(store).await };
    if let Some(role) = match role {
        "editor" => Some(CollaboratorRole::Editor),
        "viewer" => Some(CollaboratorRole::Viewer),
        _ => None,
    } {
        let grant = ProjectCollaborator::new(project.id(), actor, role, now()).expect("valid");
        applied(&push(store, owner, setup.creating(&grant)).await[0]);
    }
    let track = AudioTrack::new(project.id(), owner, "T", 1, None, now()).expect("valid");
    let comment = AudioComment::new(&track, owner, "c", 0, now()).expect("valid");
    let playlist = Playlist::new(project.id(), "P", vec![track.id()], now()).expect("valid");
    let member =
        ProjectCollaborator::new(project.id(), account(store).await, CollaboratorRole::Viewer, now())
            .expect("valid");
    let batch =
        vec![setup.create(&track), setup.create(&comment), setup.create(&playlist), setup.create(&member)];
    let batch = setup.batch(batch);
    push_applied(store, owner, batch).await;

    // "Create" makes another entity of the type in this project; for a project itself, one that
    // names the project's owner as its owner.
    let fresh = |e: &dyn Fn() -> Wire| e();
    let (target, fresh, update): (Uuid, Wire, (&str, Value)) = match entity_type.as_str() {
        Project::NAME => (
            project.entity_id(),
            fresh(&|| wire(&Project::new(owner, "Theirs", None, now()).expect("valid"))),
            ("name", json!("Renamed")),
        ),
        ProjectCollaborator::NAME => {
            let newcomer = account(store).await;
            (
                member.entity_id(),
                fresh(&|| {
                    wire(
                        &ProjectCollaborator::new(project.id(), newcomer, CollaboratorRole::Editor, now())
                            .expect("valid"),
                    )
                }),
                ("role", json!("editor")),
            )
        }
        AudioTrack::NAME => (
            track.entity_id(),
            fresh(&|| wire(&AudioTrack::new(project.id(), actor, "New", 1, None, now()).expect("valid"))),
            ("name", json!("Renamed")),
        ),
        AudioComment::NAME => (
            comment.entity_id(),
            fresh(&|| wire(&AudioComment::new(&track, actor, "new", 0, now()).expect("valid"))),
            ("content", json!("edited")),
        ),
        Playlist::NAME => (
            playlist.entity_id(),
            fresh(&|| wire(&Playlist::new(project.id(), "New", vec![], now()).expect("valid"))),
            ("name", json!("Renamed")),
        ),
        other => unreachable!("{other}: profiles are tried separately"),
    };
    let (seen, _) = pull_from(store, actor, None, 100).await;
    let mut result = String::new();
    result.push(if seen.iter().any(|c| c.entity_id == target) { '-' } else { 'x' });
    let mut writer = Writer::new();
    let create = writer.mutation(trackflow_domain::OperationKind::Create, entity_type, fresh.0, fresh.1);
    let update = writer.update(entity_type, target, &[(update.0, update.1)]);
    let delete = writer.delete(entity_type, target);
    result
        + &try_writes(store, actor, &writer, [create, update, delete], &format!("{entity_type} as {role}"))
            .await
}

async fn try_profile(store: &Store, relation: &str) -> String {
    let (owner, mut setup, project) = owned_project(store).await;
    let subject = account(store).await;
    let actor = if relation == "own" { subject } else { account(store).await };
    let mut own_writer = Writer::new();
    let profile = UserProfile::new(subject, "Subject", "s@example.com", now()).expect("valid");
    applied(&push(store, subject, own_writer.creating(&profile)).await[0]);
    if relation == "fellow" {
        for user in [subject, actor] {
            let grant =
                ProjectCollaborator::new(project.id(), user, CollaboratorRole::Editor, now()).expect("valid");
            applied(&push(store, owner, setup.creating(&grant)).await[0]);
        }
    }
    let (seen, _) = pull_from(store, actor, None, 100).await;
    let mut result = String::new();
    result.push(if seen.iter().any(|c| c.entity_id == profile.entity_id()) { '-' } else { 'x' });
    let mut writer = Writer::new();
    // A create of the subject's profile (a second create of it, as the actor's own client would
    // send after an offline sign-up), an update and a delete.
    let mut fields: BTreeMap<String, Value> = profile.fields();
    fields.insert("name".into(), json!("Changed"));
    let create = writer.mutation(
        trackflow_domain::OperationKind::Create,
        UserProfile::ENTITY_TYPE,
        subject.as_uuid(),
        fields,
    );
    let update = writer.update(UserProfile::ENTITY_TYPE, subject.as_uuid(), &[("name", json!("Again"))]);
    let delete = writer.delete(UserProfile::ENTITY_TYPE, subject.as_uuid());
    result
        + &try_writes(store, actor, &writer, [create, update, delete], &format!("profile as {relation}"))
            .await
}

/// Pushes each mutation alone as `actor`: `-` for applied, `x` for refused (`forbidden` or
/// `not_found`). Anything else fails the test, naming `case`.
async fn try_writes(
    store: &Store,
    actor: UserId,
    writer: &Writer,
    mutations: [trackflow_domain::protocol::Mutation; 3],
    case: &str,
) -> String {
    let mut result = String::new();
    for mutation in mutations {
        let outcome = push(store, actor, writer.batch(vec![mutation])).await;
        result.push(match &outcome[0] {
            MutationOutcome::Applied { .. } => '-',
            MutationOutcome::Rejected { code, .. } if code == "forbidden" || code == "not_found" => 'x',
            other => panic!("{case}: unexpected {other:?}"),
        });
    }
    result
}

/// An entity's id and wire fields.
type Wire = (Uuid, BTreeMap<String, Value>);

fn wire(entity: &impl SyncEntity) -> Wire {
    (entity.entity_id(), entity.fields())
}

/// A reader pulling one scope (`None`: everything) over and over until `finished` was set
/// before a pull began. Returns the last version it saw of each entity, and how many pulls.
fn spawn_reader(
    store: Store,
    user: UserId,
    scope: Option<String>,
    finished: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(BTreeMap<Uuid, i64>, u32)> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        let mut pulls = 0u32;
        loop {
            // Read the flag before pulling: once it is set, this pull starts after every push.
            let last_round = finished.load(std::sync::atomic::Ordering::SeqCst);
            let (changes, next) = pull_scope(&store, user, scope.as_deref(), cursor.clone(), 7).await;
            pulls += 1;
            for change in changes {
                let version = seen.entry(change.entity_id).or_default();
                assert!(change.version > *version, "versions only grow");
                *version = change.version;
            }
            cursor = Some(next);
            if last_round {
                return (seen, pulls);
            }
            tokio::task::yield_now().await;
        }
    })
}

/// Several store instances (as several server processes would) push concurrently into several
/// projects while readers pull: each project on its own cursor, `people` (profiles) on its
/// own, and everything on one cursor. Some batches write two projects, in both orders; members
/// are added (memberships order the profile stream) while they edit their profiles. Whatever a
/// reader saw, page after page, must end up exactly the final state of what it reads: a change
/// committed behind its cursor would be missing.
async fn concurrent_pushes_never_skip_a_change(stores: Vec<Store>) {
    const PROJECTS: usize = 4;
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 3;
    let first = stores[0].clone();
    let owner = account(&first).await;
    let mut setup = Writer::new();
    let mut projects = Vec::new();
    for n in 0..PROJECTS {
        let project = Project::new(owner, &format!("P{n}"), None, now()).expect("valid");
        push_applied(&first, owner, setup.creating(&project)).await;
        projects.push(project.id());
    }
    let mut fellows = Vec::new();
    for n in 0..3 {
        let fellow = account(&first).await;
        let profile =
            UserProfile::new(fellow, &format!("F{n}"), &format!("f{n}@example.com"), now()).expect("valid");
        push_applied(&first, fellow, Writer::new().creating(&profile)).await;
        fellows.push((fellow, profile.entity_id()));
    }
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut scopes: Vec<Option<String>> = projects.iter().map(|p| Some(format!("project:{p}"))).collect();
    scopes.push(Some(PEOPLE_SCOPE.to_owned()));
    scopes.push(None);
    let readers: Vec<_> = scopes
        .iter()
        .enumerate()
        .map(|(i, scope)| {
            spawn_reader(stores[i % stores.len()].clone(), owner, scope.clone(), finished.clone())
        })
        .collect();

    let mut writers = Vec::new();
    // Two writers per project, one batch of tracks and an edit at a time.
    for (i, project) in projects.iter().chain(&projects).enumerate() {
        let (store, project) = (stores[i % stores.len()].clone(), *project);
        writers.push(tokio::spawn(async move {
            let mut writer = Writer::new();
            for _ in 0..BATCHES {
                let tracks: Vec<_> = (0..PER_BATCH)
                    .map(|_| AudioTrack::new(project, owner, "T", 1, None, now()).expect("valid"))
                    .collect();
                let mut batch: Vec<_> = tracks.iter().map(|t| writer.create(t)).collect();
                let rename = [("name", json!("U"))];
                batch.push(writer.update(AudioTrack::ENTITY_TYPE, tracks[0].entity_id(), &rename));
                push_applied(&store, owner, writer.batch(batch)).await;
            }
        }));
    }
    // Batches across two projects, in both orders.
    for (i, (a, b)) in [(projects[0], projects[1]), (projects[1], projects[0])].into_iter().enumerate() {
        let store = stores[(i + 1) % stores.len()].clone();
        writers.push(tokio::spawn(async move {
            let mut writer = Writer::new();
            for _ in 0..BATCHES {
                let tracks = [a, b].map(|p| AudioTrack::new(p, owner, "X", 1, None, now()).expect("valid"));
                let batch = tracks.iter().map(|t| writer.create(t)).collect();
                push_applied(&store, owner, writer.batch(batch)).await;
            }
        }));
    }
    // Members joining while they edit their profiles.
    for (i, (fellow, profile)) in fellows.iter().copied().enumerate() {
        let (store, project) = (stores[i % stores.len()].clone(), projects[i % PROJECTS]);
        writers.push(tokio::spawn(async move {
            let mut own = Writer::new();
            let mut granting = Writer::new();
            for round in 0..BATCHES {
                if round == BATCHES / 2 {
                    let grant = ProjectCollaborator::new(project, fellow, CollaboratorRole::Editor, now())
                        .expect("valid");
                    push_applied(&store, owner, granting.creating(&grant)).await;
                }
                let edit =
                    own.update(UserProfile::ENTITY_TYPE, profile, &[("name", json!(format!("F{round}")))]);
                push_applied(&store, fellow, own.batch(vec![edit])).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tracks = 0;
    for (reader, scope) in readers.into_iter().zip(scopes) {
        let (seen, pulls) = reader.await.expect("reader");
        let (everything, _) = pull_scope(&first, owner, scope.as_deref(), None, 1000).await;
        let final_state: BTreeMap<Uuid, i64> = everything.iter().map(|c| (c.entity_id, c.version)).collect();
        assert!(pulls > 1, "{scope:?}: the reader pulled while writers wrote");
        assert_eq!(seen, final_state, "{scope:?}: the reader's incremental view is the final state");
        if scope.is_none() {
            tracks = everything.iter().filter(|c| c.entity_type == AudioTrack::ENTITY_TYPE).count();
        }
    }
    assert_eq!(tracks, 2 * PROJECTS * BATCHES * PER_BATCH + 2 * 2 * BATCHES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_pushes_never_skip_a_change() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("server.db");
    let url = path.to_str().expect("utf-8");
    crate::harness::init_logs();
    let stores: Vec<Store> =
        (0..3).map(|_| Arc::new(DieselServerStore::open(url, 4).expect("open")) as Store).collect();
    concurrent_pushes_never_skip_a_change(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_pushes_never_skip_a_change() {
    let Some(db) = PgDatabase::create("concurrent_pushes_never_skip_a_change") else { return };
    // Separate stores act as separate server instances: they share nothing but the database.
    let stores: Vec<Store> = (0..3).map(|_| Arc::new(db.store(4)) as Store).collect();
    concurrent_pushes_never_skip_a_change(stores).await;
}

/// Two batches that each write the same two projects, in opposite orders, both waiting while a
/// third party holds the first project's lock. Were locks taken in batch order, the second
/// would hold the other project and the two would wait for each other once the lock is freed
/// (PostgreSQL would abort one as a deadlock); taken in name order, both wait for the same
/// lock, and both go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches_crossing_two_projects_never_deadlock() {
    use diesel::{Connection, RunQueryDsl};
    let Some(db) = PgDatabase::create("batches_crossing_two_projects_never_deadlock") else { return };
    let store: Store = Arc::new(db.store(4));
    let owner = account(&store).await;
    let mut writer = Writer::new();
    let mut projects = Vec::new();
    for name in ["A", "B"] {
        let project = Project::new(owner, name, None, now()).expect("valid");
        push_applied(&store, owner, writer.creating(&project)).await;
        projects.push(format!("project:{}", project.id()));
    }
    projects.sort();
    let ids: Vec<_> = projects.iter().map(|p| p["project:".len()..].parse::<Uuid>().expect("id")).collect();
    let (first, second) = (ProjectId::from_uuid(ids[0]), ProjectId::from_uuid(ids[1]));

    let mut holder = diesel::PgConnection::establish(&db.url).expect("connect");
    diesel::sql_query("BEGIN").execute(&mut holder).expect("begin");
    diesel::sql_query(format!("SELECT scope FROM scope_locks WHERE scope = '{}' FOR UPDATE", projects[0]))
        .execute(&mut holder)
        .expect("hold the first project's lock");
    // The batch in name order queues first, so it is the one to get the lock when it is freed.
    let mut pushes = Vec::new();
    for (a, b) in [(first, second), (second, first)] {
        let store = store.clone();
        pushes.push(tokio::spawn(async move {
            let mut writer = Writer::new();
            let tracks = [a, b].map(|p| AudioTrack::new(p, owner, "X", 1, None, now()).expect("valid"));
            let batch = tracks.iter().map(|t| writer.create(t)).collect();
            store.push(owner, writer.batch(batch)).await
        }));
        wait_for_lock_waiters(&mut holder, pushes.len() as i64).await;
    }
    diesel::sql_query("COMMIT").execute(&mut holder).expect("commit");
    for push in pushes {
        let response = push.await.expect("task").expect("no deadlock: the push went through");
        assert!(response.results.iter().all(|r| matches!(r.outcome, MutationOutcome::Applied { .. })));
    }
}

/// A batch that finds under its locks that it writes a project it did not lock: an update of a
/// track another push created after this one looked (the batch also edits a track of a project
/// a third party holds, so it waits between looking and reading). It must run again holding
/// both projects, and apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_that_finds_another_domain_runs_again_holding_it() {
    use diesel::{Connection, RunQueryDsl};
    let Some(db) = PgDatabase::create("a_batch_that_finds_another_domain_runs_again_holding_it") else {
        return;
    };
    let store: Store = Arc::new(db.store(4));
    let (owner, mut writer, held) = owned_project(&store).await;
    let mut later_writer = Writer::new();
    let later = Project::new(owner, "Later", None, now()).expect("valid");
    applied(&push(&store, owner, later_writer.creating(&later)).await[0]);
    let waiting_track = AudioTrack::new(held.id(), owner, "W", 1, None, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&waiting_track)).await[0]);

    let mut holder = diesel::PgConnection::establish(&db.url).expect("connect");
    diesel::sql_query("BEGIN").execute(&mut holder).expect("begin");
    diesel::sql_query(format!(
        "SELECT scope FROM scope_locks WHERE scope = 'project:{}' FOR UPDATE",
        held.id()
    ))
    .execute(&mut holder)
    .expect("hold the project's lock");
    // The batch: an edit in the held project, and an edit of a track that does not exist yet.
    let track = AudioTrack::new(later.id(), owner, "T", 1, None, now()).expect("valid");
    // Stamped before the edits, as the create happened first.
    let create = later_writer.creating(&track);
    let edits = vec![
        writer.update(AudioTrack::ENTITY_TYPE, waiting_track.entity_id(), &[("name", json!("W2"))]),
        writer.update(AudioTrack::ENTITY_TYPE, track.entity_id(), &[("name", json!("T2"))]),
    ];
    let batch = writer.batch(edits);
    let pushing = {
        let store = store.clone();
        tokio::spawn(async move { store.push(owner, batch).await })
    };
    wait_for_lock_waiters(&mut holder, 1).await;
    // Meanwhile the track is created in the other project.
    applied(&push(&store, owner, create).await[0]);
    diesel::sql_query("COMMIT").execute(&mut holder).expect("commit");
    let response = pushing.await.expect("task").expect("the batch ran again and went through");
    for result in &response.results {
        applied(&result.outcome);
    }
}

/// An older server instance still running against an upgraded database (a rolling upgrade)
/// would take versions from `server_meta`'s counter, out of order with the sequence: its
/// push's first statement (the one the old code ran) is refused, saying why, and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_older_instance_cannot_push_into_an_upgraded_database() {
    use diesel::{Connection, RunQueryDsl};
    let Some(db) = PgDatabase::create("an_older_instance_cannot_push_into_an_upgraded_database") else {
        return;
    };
    let store: Store = Arc::new(db.store(2));
    let (owner, _, _) = owned_project(&store).await;
    let mut old = diesel::PgConnection::establish(&db.url).expect("connect");
    let error = diesel::sql_query("UPDATE server_meta SET last_version = last_version")
        .execute(&mut old)
        .expect_err("the old code's write lock");
    assert!(error.to_string().contains("newer trackflow server"), "{error}");
    // The upgraded store still pushes and pulls.
    let (_, cursor) = pull_from(&store, owner, None, 10).await;
    let project = Project::new(owner, "After", None, now()).expect("valid");
    applied(&push(&store, owner, Writer::new().creating(&project)).await[0]);
    let (after, _) = pull_from(&store, owner, Some(cursor), 10).await;
    assert_eq!(ids(&after), vec![project.entity_id()]);
}

/// Waits (10 s at most) until `n` sessions of the database wait for a lock. PostgreSQL signals
/// nothing when a session starts waiting, so this asks again and again, paced by the query's own
/// round trip.
async fn wait_for_lock_waiters(conn: &mut diesel::PgConnection, n: i64) {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result(conn)
        .expect("pg_stat_activity");
        if waiting.n == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{n} pushes never queued for the lock");
        tokio::task::yield_now().await;
    }
}

/// Server instances starting together on a new PostgreSQL database all come up: migrations run
/// under an advisory lock, so exactly one applies them and the others find them applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_starting_together_migrate_once() {
    let Some(db) = PgDatabase::create("instances_starting_together_migrate_once") else { return };
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                DieselServerStore::open(&url, 1).map(|_| ())
            })
        })
        .collect();
    for start in starts {
        start.join().expect("thread").expect("every instance starts");
    }
    let store: Store = Arc::new(db.store(1));
    let (owner, _, project) = owned_project(&store).await;
    let (changes, _) = pull_from(&store, owner, None, 10).await;
    assert_eq!(ids(&changes), vec![project.entity_id()]);
}

/// A pull names one scope: `people` (profiles), or one readable project; the scopes listing
/// shows a project once it is shared, and a project never shared is refused.
async fn scoped_pulls_cover_one_scope_each(store: Store) {
    let (owner, mut writer, first) = owned_project(&store).await;
    let second = Project::new(owner, "Second", None, now()).expect("valid");
    let track = AudioTrack::new(second.id(), owner, "Take", 1, None, now()).expect("valid");
    let profile = UserProfile::new(owner, "Owner", "owner@example.com", now()).expect("valid");
    let creates = vec![writer.create(&second), writer.create(&track)];
    push_applied(&store, owner, writer.batch(creates)).await;
    push_applied(&store, owner, writer.creating(&profile)).await;

    let names = |heads: &[ScopeHead]| heads.iter().map(|h| h.scope.clone()).collect::<Vec<_>>();
    let heads = store.scopes(owner).await.expect("scopes");
    let scopes = names(&heads);
    assert_eq!(
        scopes,
        vec!["people".to_owned(), format!("project:{}", first.id()), format!("project:{}", second.id())]
    );
    let (people, _) = pull_scope(&store, owner, Some("people"), None, 1).await;
    assert_eq!(ids(&people), vec![profile.entity_id()]);
    let (project, cursor) = pull_scope(&store, owner, Some(&scopes[2]), None, 1).await;
    assert_eq!(ids(&project), vec![second.entity_id(), track.entity_id()]);
    let (everything, _) = pull_from(&store, owner, None, 10).await;
    assert_eq!(everything.len(), 4, "the unscoped pull still covers all");

    // A later change reaches only its scope's cursor.
    let rename = writer.update(AudioTrack::ENTITY_TYPE, track.entity_id(), &[("name", json!("New"))]);
    applied(&push(&store, owner, writer.batch(vec![rename])).await[0]);
    let (next, _) = pull_scope(&store, owner, Some(&scopes[2]), Some(cursor), 10).await;
    assert_eq!(ids(&next), vec![track.entity_id()]);
    // Only that scope's head moved.
    let moved = store.scopes(owner).await.expect("scopes");
    let changed: Vec<bool> =
        heads.iter().zip(&moved).map(|(before, after)| before.head != after.head).collect();
    assert_eq!(changed, vec![false, false, true], "{heads:?} -> {moved:?}");

    let stranger = account(&store).await;
    assert_eq!(names(&store.scopes(stranger).await.expect("scopes")), vec!["people".to_owned()]);
    let refused = store
        .pull(stranger, PullRequest { cursor: None, limit: 10, scope: Some(scopes[1].clone()) })
        .await
        .expect_err("not shared");
    assert!(
        matches!(&refused, ServerStoreError::BadInput { code, .. } if code == "scope_not_readable"),
        "{refused:?}"
    );
    let grant =
        ProjectCollaborator::new(first.id(), stranger, CollaboratorRole::Viewer, now()).expect("valid");
    applied(&push(&store, owner, writer.creating(&grant)).await[0]);
    let shared_heads = store.scopes(stranger).await.expect("scopes");
    assert_eq!(names(&shared_heads), vec!["people".to_owned(), scopes[1].clone()]);
    let (shared, _) = pull_scope(&store, stranger, Some(&scopes[1]), None, 10).await;
    assert_eq!(ids(&shared), vec![first.entity_id(), grant.entity_id()]);
}
