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
            ["wal", "1", "1", "5000"],
            "WAL, synchronous=NORMAL, foreign keys, 5 s busy timeout"
        );
    }
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
