//! Opening the store: connection settings, migrations and schema versions.

use super::{count, execute, open, Fixture};
use diesel::{connection::SimpleConnection, prelude::*, sql_types::Text};
use std::sync::{Arc, Barrier};
use trackflow_domain::ports::Repository;
use trackflow_music::{AudioTrack, Project};
use trackflow_store::{LocalStore, LocalStoreOptions, SqliteRepository, StoreError, SystemClock};

/// The music model's tables, created by its registry's migration.
const MUSIC_TABLES: [&str; 6] =
    ["user_profiles", "projects", "project_collaborators", "audio_tracks", "audio_comments", "playlists"];

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct AutoCheckpoint {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    wal_autocheckpoint: i64,
}

fn pragma(conn: &mut SqliteConnection, name: &str, column: &str) -> String {
    diesel::sql_query(format!("SELECT CAST({column} AS TEXT) AS value FROM pragma_{name}"))
        .get_result::<Setting>(conn)
        .expect("read pragma")
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_connection_gets_the_sqlite_settings() {
    let fx = Fixture::new().await;
    // All four tasks hold their connection until every one has one, so the pool must hand
    // out four distinct connections (its maximum).
    let all_connected = Arc::new(Barrier::new(4));
    let mut checks = Vec::new();
    for _ in 0..4 {
        let (store, all_connected) = (fx.store.clone(), Arc::clone(&all_connected));
        checks.push(tokio::spawn(async move {
            store
                .with_connection(move |conn| {
                    all_connected.wait();
                    Ok([
                        pragma(conn, "journal_mode", "journal_mode"),
                        pragma(conn, "synchronous", "synchronous"),
                        pragma(conn, "foreign_keys", "foreign_keys"),
                        pragma(conn, "busy_timeout", "timeout"),
                        diesel::sql_query("PRAGMA wal_autocheckpoint")
                            .get_result::<AutoCheckpoint>(conn)
                            .expect("read wal_autocheckpoint")
                            .wal_autocheckpoint
                            .to_string(),
                    ])
                })
                .await
                .expect("connection")
        }));
    }
    for check in checks {
        let settings = check.await.expect("task");
        assert_eq!(
            settings,
            ["wal", "1", "1", "5000", "32000"],
            "WAL, synchronous=NORMAL, foreign keys, 5 s busy timeout, writers checkpoint only as a backstop"
        );
    }
}

/// Pages of the log of the database at `path` not yet copied back into the file, from the
/// WAL-index header (https://www.sqlite.org/walformat.html).
fn pages_waiting(path: &std::path::Path) -> u32 {
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    let header = std::fs::read(shm).expect("the -shm file");
    let word = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().expect("four bytes"));
    word(16) - word(96)
}

#[tokio::test]
async fn the_store_checkpoints_on_its_own_thread_once_writers_are_idle() {
    super::music();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("local.db");
    let checkpoint = trackflow_store::CheckpointOptions {
        idle: std::time::Duration::from_millis(5),
        idle_pages: 20,
        ..Default::default()
    };
    let options = LocalStoreOptions { checkpoint, ..LocalStoreOptions::new(&path) };
    let store = LocalStore::open(options, Arc::new(SystemClock)).await.expect("open");
    let mut done = store.checkpoints();
    let projects = SqliteRepository::<Project>::new(store.clone());
    let owner = trackflow_domain::UserId::new();
    for i in 0..40 {
        let project =
            Project::new(owner, &format!("P{i}"), None, trackflow_domain::Timestamp(1)).expect("valid");
        projects.create(project).await.expect("create");
    }
    // The writes stop: the thread copies the log back, with no writer doing it.
    tokio::time::timeout(std::time::Duration::from_secs(10), done.wait_for(|n| *n > 0))
        .await
        .expect("a checkpoint within 10 s")
        .expect("store alive");
    assert_eq!(pages_waiting(&path), 0, "the whole log is in the database file");
    assert_eq!(count(&store, "SELECT COUNT(*) AS n FROM projects").await, 40);

    // Without the thread, the writers' own checkpoint is SQLite's default, and nothing else runs.
    let path = dir.path().join("inline.db");
    let checkpoint = trackflow_store::CheckpointOptions::inline();
    let options = LocalStoreOptions { checkpoint, ..LocalStoreOptions::new(&path) };
    let store = LocalStore::open(options, Arc::new(SystemClock)).await.expect("open");
    let projects = SqliteRepository::<Project>::new(store.clone());
    for i in 0..40 {
        let project =
            Project::new(owner, &format!("P{i}"), None, trackflow_domain::Timestamp(1)).expect("valid");
        projects.create(project).await.expect("create");
    }
    assert!(pages_waiting(&path) > 20, "the log waits for SQLite's checkpoint at 1,000 pages");
    assert_eq!(*store.checkpoints().borrow(), 0);
}

#[tokio::test]
async fn migrations_create_every_table() {
    let fx = Fixture::new().await;
    for table in MUSIC_TABLES.into_iter().chain([
        "pending_operations",
        "sync_metadata",
        "sync_conflicts",
        "blobs",
        "session",
    ]) {
        let n = fx
            .count(&format!(
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ))
            .await;
        assert_eq!(n, 1, "table {table}");
    }
}

/// A table's shape: every column (name, type, not null, default, key) and every index.
async fn shape(store: &LocalStore, table: &str) -> String {
    let sql = format!(
        "SELECT (SELECT group_concat(c, '; ') FROM (SELECT name || ' ' || type || ' ' || \"notnull\" \
         || ' ' || coalesce(dflt_value, '-') || ' ' || pk AS c FROM pragma_table_info('{table}') ORDER BY cid)) \
         || ' | ' || (SELECT coalesce(group_concat(name, ', '), '') FROM (SELECT name || ':' || \"unique\" || ':' \
         || partial AS name FROM pragma_index_list('{table}') ORDER BY name)) AS value"
    );
    store
        .with_connection(move |conn| Ok(diesel::sql_query(sql).get_result::<Setting>(conn)?.value))
        .await
        .expect("table shape")
}

/// A database written before the music tables left the engine's migrations (the dump of one
/// that build's crash writer wrote: 6 projects, 5 tracks, 13 queued operations) opens: the music
/// model's migration finds its tables and only records itself, rows and outbox are kept and
/// usable, and every music table has exactly the shape a new database gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_music_tables_moved_opens_with_its_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let old_path = dir.path().join("old.db");
    let mut conn = SqliteConnection::establish(old_path.to_str().expect("utf-8")).expect("connect");
    conn.batch_execute(include_str!("../fixtures/pre-split-local.sql")).expect("load the dump");
    drop(conn);
    let old = open(&old_path).await;
    let new = open(&dir.path().join("new.db")).await;
    for table in MUSIC_TABLES {
        let old_shape = shape(&old, table).await;
        assert!(old_shape.contains("pulled_version BIGINT 1 0 0"), "{table}: {old_shape}");
        assert_eq!(old_shape, shape(&new, table).await, "{table}");
    }
    let recorded = "SELECT COUNT(*) AS n FROM app_migrations WHERE version = '2026-11-27-000000_music'";
    assert_eq!((count(&old, recorded).await, count(&new, recorded).await), (1, 1));
    assert_eq!(count(&old, "SELECT COUNT(*) AS n FROM pending_operations").await, 13, "the outbox is kept");
    let projects = SqliteRepository::<Project>::new(old.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(old.clone());
    let listed = projects.list().await.expect("projects");
    assert_eq!((listed.len(), tracks.list().await.expect("tracks").len()), (6, 5));
    let renamed = trackflow_music::ProjectPatch { name: Some("Still writable".into()), ..Default::default() };
    projects.update(listed[0].id(), renamed).await.expect("a write after the upgrade");
    assert_eq!(count(&old, "SELECT COUNT(*) AS n FROM pending_operations").await, 14);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused_with_a_clear_error() {
    let fx = Fixture::new().await;
    execute(&fx.store, "INSERT INTO __diesel_schema_migrations (version) VALUES ('20990101000000')").await;
    drop(fx.store.clone());
    let err = LocalStore::open(LocalStoreOptions::new(fx.db_path()), Arc::new(SystemClock))
        .await
        .expect_err("a newer schema must be refused");
    assert!(matches!(err, StoreError::NewerSchema { ref found, .. } if found == "20990101000000"), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("newer TrackFlow") && message.contains("Upgrade"), "{message}");
}

#[tokio::test]
async fn an_unopenable_path_is_a_clear_error() {
    let fx = Fixture::new().await;
    let blocker = fx.dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let err = LocalStore::open(LocalStoreOptions::new(blocker.join("local.db")), Arc::new(SystemClock))
        .await
        .expect_err("a file is in the way of the directory");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[tokio::test]
async fn the_replica_id_survives_reopening() {
    let fx = Fixture::new().await;
    let first = fx.store.replica_id();
    let again = open(&fx.db_path()).await;
    assert_eq!(again.replica_id(), first);
    assert_eq!(count(&again, "SELECT COUNT(*) AS n FROM local_settings").await, 1);
}

async fn projects_of(store: &LocalStore) -> Vec<Project> {
    let rows = SqliteRepository::<Project>::new(store.clone());
    let ids: Vec<String> = {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = Text)]
            id: String,
        }
        store
            .with_connection(|conn| Ok(diesel::sql_query("SELECT id FROM projects").load::<Id>(conn)?))
            .await
            .expect("ids")
            .into_iter()
            .map(|row| row.id)
            .collect()
    };
    let mut found = Vec::new();
    for id in ids {
        let id: trackflow_music::ProjectId = id.parse().expect("a project id");
        found.extend(rows.get(id).await.expect("get"));
    }
    found
}

/// A page of the outbox overwritten: the rebuild keeps every operation that can still be read,
/// counts the rest, and keeps the replica's identity; the new file is sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_every_readable_outbox_operation_and_counts_the_rest() {
    use trackflow_domain::{ports::PendingOperationsRepository, Timestamp, UserId};
    use trackflow_store::{repair, SqlitePendingOperationsRepository};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("local.db");
    let store = open(&path).await;
    let replica = store.replica_id();
    let projects = SqliteRepository::<Project>::new(store.clone());
    let owner = UserId::new();
    let description = "a description long enough to spread the queue over many pages ".repeat(4);
    for n in 0..300 {
        let project =
            Project::new(owner, &format!("Project {n}"), Some(&description), Timestamp(1)).expect("valid");
        projects.create(project).await.expect("create");
    }
    let queued = SqlitePendingOperationsRepository::new(store.clone()).list(None).await.expect("queue");
    let middle = queued[150].id.to_string();
    drop((projects, store));
    {
        // Everything into the main file, as the last connection closing does.
        let mut conn = SqliteConnection::establish(path.to_str().expect("utf-8")).expect("open");
        conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
    }

    let mut bytes = std::fs::read(&path).expect("the database");
    let page = (0..bytes.len() / 4096)
        .find(|p| bytes[p * 4096..(p + 1) * 4096].windows(middle.len()).any(|w| w == middle.as_bytes()))
        .expect("the page holding the middle operation");
    bytes[page * 4096..(page + 1) * 4096].fill(0xA5);
    std::fs::write(&path, &bytes).expect("overwrite a page");
    assert!(!repair::check(&path).expect("check").is_sound());

    let rebuilt = repair::rebuild(&path, 7).expect("rebuild");
    let lost = rebuilt.unreadable.iter().find(|(t, _)| t == "pending_operations").map_or(0, |(_, n)| *n);
    assert!(lost > 0 && lost < 50, "one page of operations lost: {rebuilt:?}");
    assert_eq!(rebuilt.operations_kept + lost, 300, "{rebuilt:?}");
    assert!(rebuilt.damaged_copy.exists() && rebuilt.damaged_copy.ends_with("local.db.damaged-7"));
    assert!(repair::check(&path).expect("check").is_sound());

    let store = open(&path).await;
    assert_eq!(store.replica_id(), replica, "the same replica");
    let kept = SqlitePendingOperationsRepository::new(store.clone()).list(None).await.expect("queue");
    assert_eq!(kept.len() as u64, rebuilt.operations_kept);
    let before: std::collections::HashMap<_, _> = queued.iter().map(|op| (op.id, op)).collect();
    assert!(kept.iter().all(|op| before.get(&op.id) == Some(&op)), "kept operations are unchanged");
    // Never acknowledged, these projects exist only in the queue: their rows are made again.
    assert_eq!(rebuilt.rows_replayed, rebuilt.operations_kept);
    let shown = projects_of(&store).await;
    assert_eq!(shown.len() as u64, rebuilt.operations_kept, "every kept create is shown again");
    assert!(shown.iter().all(|p| p.description() == Some(description.trim())), "as they were written");
}
