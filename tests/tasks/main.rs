//! An outside program's model, synced end to end: `trackflow-example-tasks` (boards and their
//! tasks, declared through `trackflow-client` alone) on two devices of one user, through a real
//! server process (`tasks-server`, the reference server with the example's registry). The
//! devices edit offline (the same task's different fields, the same field, a delete against an
//! edit), reconnect, and must end equal to what the server shows a fresh device.
//!
//! A test binary of its own: a process installs one registry, and this one installs the
//! example's.
#![allow(missing_docs)]

use std::{collections::BTreeMap, path::Path};
use trackflow_client::{
    domain::{
        protocol::SignUpRequest, serde_json::Value, uuid::Uuid, EntityRef, SyncEntity, SyncPhase, Timestamp,
        UserId,
    },
    remote::{AuthClient, RemoteOptions},
    EngineOptions, SyncEngine,
};
use trackflow_example_tasks::{Board, Task, TaskPatch};
use trackflow_tests::ServerProcess;

/// The `tasks-server` process over a database in `dir`.
fn start_server(dir: &Path) -> ServerProcess {
    ServerProcess::start(
        env!("CARGO_BIN_EXE_tasks-server"),
        [dir.join("server.db").as_os_str(), "127.0.0.1:0".as_ref()],
    )
}

async fn device(dir: &Path, server: &str, user: UserId, token: &str) -> SyncEngine {
    let options = EngineOptions { periodic: None, ..EngineOptions::default() };
    let engine = SyncEngine::open(dir, options).await.expect("engine");
    engine.sign_in(user, server, token).await.expect("session");
    engine
}

/// Pushes and pulls once; the sync must succeed and leave nothing queued.
async fn sync(engine: &SyncEngine) {
    let state = engine.sync_now().await;
    assert_eq!((state.phase, state.pending, state.last_error.as_deref()), (SyncPhase::Idle, 0, None));
}

/// Every live row a device shows, by entity, with its fields.
async fn rows(engine: &SyncEngine) -> BTreeMap<EntityRef, BTreeMap<String, Value>> {
    let mut rows = BTreeMap::new();
    for board in engine.repository::<Board>().list().await.expect("boards") {
        rows.insert(board.entity_ref(), board.fields());
    }
    for task in engine.repository::<Task>().list().await.expect("tasks") {
        rows.insert(task.entity_ref(), task.fields());
    }
    rows
}

fn title_of(rows: &BTreeMap<EntityRef, BTreeMap<String, Value>>, task: Uuid) -> Option<&Value> {
    rows.get(&EntityRef::new(Task::ENTITY_TYPE, task)).and_then(|fields| fields.get("title"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_edit_offline_and_both_end_equal_to_the_server() {
    trackflow_example_tasks::registry().expect("registry").install().expect("install");
    let dir = tempfile::tempdir().expect("dir");
    let server = start_server(dir.path());
    let user = UserId::new();
    let request = SignUpRequest {
        email: "kim@example.com".into(),
        password: "a long password".into(),
        user_id: Some(user),
    };
    let token = AuthClient::new(&RemoteOptions::default())
        .expect("client")
        .sign_up(&server.url, &request)
        .await
        .expect("sign up")
        .token;
    // The server describes the program's types, not the built-in model's.
    let document: Value = reqwest::get(format!("{}/v1/openapi.json", server.url))
        .await
        .expect("openapi")
        .json()
        .await
        .expect("JSON");
    assert_eq!(document["components"]["schemas"]["EntityType"]["enum"], Value::from(vec!["board", "task"]));
    let a = device(&dir.path().join("a"), &server.url, user, &token).await;
    let b = device(&dir.path().join("b"), &server.url, user, &token).await;
    let now = Timestamp(1_800_000_000_000);

    // A creates a board with three tasks; both devices sync.
    let board = a
        .repository::<Board>()
        .create(Board::new(user, "Release", now).expect("valid"))
        .await
        .expect("board");
    let tasks_a = a.repository::<Task>();
    let mut made = Vec::new();
    for title in ["Notes", "Cover art", "Mastering"] {
        made.push(tasks_a.create(Task::new(board.id(), title, now).expect("valid")).await.expect("task"));
    }
    let (both_fields, same_field, deleted) = (made[0].id(), made[1].id(), made[2].id());
    sync(&a).await;
    sync(&b).await;
    let tasks_b = b.repository::<Task>();
    assert_eq!(
        tasks_b.list_by_parent(board.id().as_uuid()).await.expect("tasks").len(),
        3,
        "B has A's tasks"
    );

    // Offline (neither syncs): different fields of one task, the same field of another, and a
    // delete against an edit.
    let title = |t: &str| TaskPatch { title: Some(t.into()), ..TaskPatch::default() };
    tasks_a.update(both_fields, title("Liner notes")).await.expect("A edits the title");
    tasks_b
        .update(both_fields, TaskPatch { done: Some(true), ..TaskPatch::default() })
        .await
        .expect("B ticks it");
    tasks_a.update(same_field, title("Cover art, from A")).await.expect("A renames");
    tasks_b.update(same_field, title("Cover art, from B")).await.expect("B renames");
    tasks_a.delete(deleted).await.expect("A deletes");
    tasks_b.update(deleted, title("Mastering, edited")).await.expect("B edits");

    // Reconnection: A, then B, then A again (to receive B's changes).
    sync(&a).await;
    sync(&b).await;
    sync(&a).await;

    // What the server shows the user: a fresh device's first pull.
    let fresh = device(&dir.path().join("fresh"), &server.url, user, &token).await;
    sync(&fresh).await;
    let on_server = rows(&fresh).await;
    let (on_a, on_b) = (rows(&a).await, rows(&b).await);
    assert_eq!(on_a, on_server, "device A equals the server");
    assert_eq!(on_b, on_server, "device B equals the server");

    // And what the server shows is what the merge rules say.
    let both = &on_server[&EntityRef::new(Task::ENTITY_TYPE, both_fields.as_uuid())];
    assert_eq!(
        (&both["title"], &both["done"]),
        (&Value::from("Liner notes"), &Value::from(true)),
        "both edits kept"
    );
    let renamed = title_of(&on_server, same_field.as_uuid()).expect("renamed task");
    assert!(
        [Value::from("Cover art, from A"), Value::from("Cover art, from B")].contains(renamed),
        "one writer's title, the same everywhere: {renamed}"
    );
    assert!(title_of(&on_server, deleted.as_uuid()).is_none(), "the delete wins over the concurrent edit");
    assert_eq!(on_server.len(), 3, "the board and two tasks");

    for engine in [a, b, fresh] {
        engine.shutdown().await;
    }
}

/// Refusals name the program's own types: a viewer's write inside a board is refused as a
/// change to a board, not to anything of the music model.
#[test]
fn refusals_name_the_programs_types() {
    use trackflow_client::domain::{
        authorization::{authorize, Access, Relation},
        CollaboratorRole, OperationKind,
    };
    trackflow_example_tasks::registry().expect("registry").install().expect("install");
    assert_eq!(Task::ENTITY_TYPE.scope_root(), Some(Board::ENTITY_TYPE));
    let viewer = Relation::Member(Some(CollaboratorRole::Viewer));
    let refused = authorize(Task::ENTITY_TYPE, Access::Write(OperationKind::Update), viewer);
    assert_eq!(refused.expect_err("a viewer writes nothing").message, "viewers cannot change a board");
    let editor = Relation::Member(Some(CollaboratorRole::Editor));
    let refused = authorize(Board::ENTITY_TYPE, Access::Write(OperationKind::Delete), editor);
    assert_eq!(refused.expect_err("owner only").message, "only the owner deletes a board");
}
