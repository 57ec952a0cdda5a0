//! What a newer server's schema adds, as an older build meets it: rows of unknown types and
//! undeclared fields kept aside without failing the page, and let in after an upgrade without
//! pulling again.

use super::{pulled, Fixture};
use serde_json::json;
use trackflow_domain::{
    entities::Scope,
    ids::ScopeId,
    ports::{ApplyPlan, DownstreamRepository, PendingOperationsRepository, Repository},
    protocol::{EntityState, UnknownTypeState},
    EntityType, Hlc, NodeId, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project, ProjectPatch};
use trackflow_store::{SqliteDownstreamRepository, SqlitePendingOperationsRepository, SqliteRepository};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn at(wall_ms: u64) -> Hlc {
    Hlc { wall_ms, counter: 0, node: NodeId::from_uuid(uuid::Uuid::from_u128(7)) }
}

/// `state` with `field` set to `value`, written at `wall_ms`.
fn with_field<T>(
    mut state: EntityState<T>,
    field: &str,
    value: serde_json::Value,
    wall_ms: u64,
) -> EntityState<T> {
    state.fields.insert(field.to_owned(), value);
    state.field_hlc.insert(field.to_owned(), at(wall_ms));
    state
}

/// A row of a type the music model does not declare, inside `project`.
fn lyrics(project: &Project, version: i64) -> UnknownTypeState {
    let state = EntityState {
        entity_type: "lyrics".to_owned(),
        entity_id: uuid::Uuid::from_u128(42),
        version,
        deleted: false,
        fields: Default::default(),
        field_hlc: Default::default(),
        deleted_with: None,
    };
    with_field(with_field(state, "project_id", json!(project.id()), 10), "text", json!("la la"), 10)
}

async fn apply(
    store: &SqliteDownstreamRepository,
    changes: Vec<EntityState>,
    unknown: Vec<UnknownTypeState>,
    cursor: &str,
) {
    apply_in(store, "all", changes, unknown, cursor).await;
}

/// [`apply`] for a page of `scope`.
async fn apply_in(
    store: &SqliteDownstreamRepository,
    scope: &str,
    changes: Vec<EntityState>,
    unknown: Vec<UnknownTypeState>,
    cursor: &str,
) {
    let plan = ApplyPlan::new(EntityType::all().to_vec(), Default::default()).expect("every type once");
    store.apply_page(scope, changes, unknown, cursor.into(), &plan).await.expect("the page applies");
}

/// What is kept of a row, as one JSON value.
async fn kept(fx: &Fixture, id: uuid::Uuid, path: &str) -> String {
    let sql =
        format!("SELECT json_extract(state, '{path}') AS value FROM sync_kept WHERE entity_id = '{id}'");
    #[derive(diesel::QueryableByName)]
    struct Value {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    fx.store
        .with_connection(move |conn| {
            Ok(diesel::RunQueryDsl::get_result::<Value>(diesel::sql_query(sql), conn)?.value)
        })
        .await
        .expect("a kept row")
}

#[tokio::test]
async fn a_newer_servers_types_and_fields_are_kept_aside_and_the_page_still_applies() {
    let fx = Fixture::new().await;
    let downstream = SqliteDownstreamRepository::new(fx.store.clone());
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    let first = with_field(pulled(&project, 1, 10), "tempo", json!(120), 10);
    apply(&downstream, vec![first], vec![lyrics(&project, 2)], "c1").await;

    assert_eq!(projects.get(project.id()).await.expect("read").expect("stored").name(), "Demo");
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM sync_kept").await, 2);
    assert_eq!(kept(&fx, project.id().into(), "$.fields.tempo").await, "120");
    assert_eq!(kept(&fx, uuid::Uuid::from_u128(42), "$.fields.text").await, "la la");
    assert_eq!(downstream.scope("all").await.expect("scope").cursor.as_deref(), Some("c1"));

    // A later state of the row: declared fields apply, the kept field takes the later reading;
    // an earlier reading of it, arriving after, changes nothing.
    let mut second = with_field(pulled(&project, 3, 20), "tempo", json!(130), 20);
    second.fields.insert("name".to_owned(), json!("Renamed"));
    let stale = with_field(pulled(&project, 4, 5), "tempo", json!(99), 5);
    apply(&downstream, vec![second, stale], Vec::new(), "c2").await;
    assert_eq!(projects.get(project.id()).await.expect("read").expect("stored").name(), "Renamed");
    assert_eq!(kept(&fx, project.id().into(), "$.fields.tempo").await, "130");
    assert_eq!(kept(&fx, project.id().into(), "$.version").await, "4");

    // The device's own write names only what it changed: never the field it cannot read.
    projects
        .update(project.id(), ProjectPatch { description: Some(Some("Mine".into())), ..Default::default() })
        .await
        .expect("edit");
    let outbox = SqlitePendingOperationsRepository::new(fx.store.clone());
    let ops = outbox.list(None).await.expect("queue");
    let fields: Vec<&String> = ops.iter().flat_map(|op| op.changed_fields.keys()).collect();
    assert_eq!(fields, ["description"]);
}

#[tokio::test]
async fn what_was_kept_of_a_scope_is_forgotten_with_it() {
    let fx = Fixture::new().await;
    let downstream = SqliteDownstreamRepository::new(fx.store.clone());
    let (lost, kept_on) = (
        Project::new(UserId::new(), "Lost", None, NOW).expect("valid"),
        Project::new(UserId::new(), "Kept", None, NOW).expect("valid"),
    );
    let scope_of = |p: &Project| Scope::Shared(ScopeId::from_uuid(p.id().into())).to_string();
    let lost_row = with_field(pulled(&lost, 1, 10), "tempo", json!(120), 10);
    apply_in(&downstream, &scope_of(&lost), vec![lost_row], vec![lyrics(&lost, 2)], "c1").await;
    let other = with_field(pulled(&kept_on, 3, 10), "tempo", json!(90), 10);
    // The unknown row comes again in the other project's page (it moved there).
    let moved = with_field(lyrics(&lost, 4), "project_id", json!(kept_on.id()), 20);
    apply_in(&downstream, &scope_of(&kept_on), vec![other], vec![moved], "c2").await;
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM sync_kept").await, 3);

    // Access to the first project is lost: what was kept of it goes with its rows, so no
    // upgrade can let it in; what was kept of the other project stays.
    downstream.forget_scope(ScopeId::from_uuid(lost.id().into())).await.expect("forget");
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM sync_kept").await, 2);
    assert_eq!(kept(&fx, kept_on.id().into(), "$.fields.tempo").await, "90");
    assert_eq!(kept(&fx, uuid::Uuid::from_u128(42), "$.version").await, "4");
}

/// The statements storing `rows` (each whole or not) as a build with other declarations kept
/// them.
fn kept_by_an_older_build(rows: &[(UnknownTypeState, bool)]) -> String {
    rows.iter()
        .map(|(row, whole)| {
            let state = serde_json::to_string(row).expect("json");
            format!(
                "INSERT OR REPLACE INTO sync_kept (entity_type, entity_id, whole, state, against) \
                 VALUES ('{}', '{}', {}, '{state}', 'an older build');",
                row.entity_type,
                row.entity_id,
                i32::from(*whole)
            )
        })
        .collect()
}

/// Closes `fx`'s store and opens its file again, as a new build of the program would.
async fn reopen(
    fx: Fixture,
    downstream: SqliteDownstreamRepository,
) -> (trackflow_store::LocalStore, tempfile::TempDir) {
    let path = fx.db_path();
    let Fixture { dir, store } = fx;
    drop((downstream, store));
    (super::open(&path).await, dir)
}

#[tokio::test]
async fn an_upgrade_lets_in_what_was_kept_without_pulling_again() {
    let fx = Fixture::new().await;
    let downstream = SqliteDownstreamRepository::new(fx.store.clone());
    let project = Project::new(UserId::new(), "Demo", None, NOW).expect("valid");
    apply(&downstream, vec![pulled(&project, 1, 10)], Vec::new(), "c1").await;
    let track = AudioTrack::new(project.id(), project.owner_id(), "Take", 1_000, None, NOW).expect("valid");

    // What an older build kept, which this one declares: a description written after the
    // stored one and a name written before it (fields of a row it holds), a track (a row of a
    // type it did not know), a track its type refuses (no name), and a row of a type still
    // unknown.
    let as_kept = |state: EntityState| {
        let name = state.entity_type.to_string();
        state.with_type(name)
    };
    let mut fields = pulled(&project, 2, 10);
    fields.fields.clear();
    fields.field_hlc.clear();
    let fields = with_field(with_field(fields, "description", json!("From v2"), 20), "name", json!("Old"), 5);
    let invalid = {
        let mut state = pulled(
            &AudioTrack::new(project.id(), project.owner_id(), "Other", 1, None, NOW).expect("valid"),
            3,
            10,
        );
        state.fields.remove("name");
        state
    };
    let rows = [
        (as_kept(fields), false),
        (as_kept(pulled(&track, 2, 10)), true),
        (as_kept(invalid.clone()), true),
        (lyrics(&project, 3), true),
    ];
    super::execute(&fx.store, &kept_by_an_older_build(&rows)).await;
    let (store, dir) = reopen(fx, downstream).await;
    let projects = SqliteRepository::<Project>::new(store.clone());
    let stored = projects.get(project.id()).await.expect("read").expect("stored");
    assert_eq!((stored.name(), stored.description()), ("Demo", Some("From v2")));
    let tracks = SqliteRepository::<AudioTrack>::new(store.clone());
    assert_eq!(tracks.get(track.id()).await.expect("read").expect("let in").name(), "Take");
    assert_eq!(tracks.get(invalid.entity_id.into()).await.expect("read"), None);
    let left = super::count(&store, "SELECT COUNT(*) AS n FROM sync_kept").await;
    assert_eq!(left, 2, "the invalid track and the unknown type stay kept");
    // Nothing pulled: no queued write either.
    let outbox = SqlitePendingOperationsRepository::new(store.clone());
    assert!(outbox.list(None).await.expect("queue").is_empty());
    drop(dir);
}

#[tokio::test]
async fn kept_fields_of_a_row_waiting_for_its_parent_and_a_kept_tombstone_are_let_in() {
    let fx = Fixture::new().await;
    let downstream = SqliteDownstreamRepository::new(fx.store.clone());
    let (project, gone) = (
        Project::new(UserId::new(), "Demo", None, NOW).expect("valid"),
        Project::new(UserId::new(), "Gone", None, NOW).expect("valid"),
    );
    let track = AudioTrack::new(project.id(), project.owner_id(), "Take", 1_000, None, NOW).expect("valid");
    // The track arrives before its project and waits; the other project is held.
    apply(&downstream, vec![pulled(&track, 2, 10), pulled(&gone, 1, 10)], Vec::new(), "c1").await;
    assert_eq!(fx.count("SELECT COUNT(*) AS n FROM sync_deferred").await, 1);

    // Kept by an older build: a field of the waiting track written later, and the other
    // project's tombstone, kept whole (its type was unknown to that build).
    let mut renamed = pulled(&track, 2, 10);
    renamed.fields.clear();
    renamed.field_hlc.clear();
    let renamed = with_field(renamed, "name", json!("Take, renamed"), 20);
    let mut tombstone = pulled(&gone, 5, 30);
    tombstone.deleted = true;
    let name = |state: EntityState| {
        let entity_type = state.entity_type.to_string();
        state.with_type(entity_type)
    };
    super::execute(&fx.store, &kept_by_an_older_build(&[(name(renamed), false), (name(tombstone), true)]))
        .await;
    let (store, dir) = reopen(fx, downstream).await;
    assert_eq!(super::count(&store, "SELECT COUNT(*) AS n FROM sync_kept").await, 0, "both let in");
    let projects = SqliteRepository::<Project>::new(store.clone());
    assert_eq!(projects.get(gone.id()).await.expect("read"), None, "the tombstone applies");

    // The project arrives: the waiting track goes in with the field it was kept.
    let downstream = SqliteDownstreamRepository::new(store.clone());
    apply(&downstream, vec![pulled(&project, 1, 10)], Vec::new(), "c2").await;
    let tracks = SqliteRepository::<AudioTrack>::new(store.clone());
    assert_eq!(tracks.get(track.id()).await.expect("read").expect("stored").name(), "Take, renamed");
    drop(dir);
}
