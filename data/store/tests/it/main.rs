//! Integration tests of the local store, on temporary database files.
#![allow(missing_docs)]

mod blobs;
mod changes;
mod downstream;
mod kept;
mod live_model;
mod model;
mod repositories;
mod store;
mod upstream;

use diesel::{connection::SimpleConnection, prelude::*, sql_types::BigInt};
use std::{path::Path, sync::Arc};
use tempfile::TempDir;
use trackflow_store::{LocalStore, LocalStoreOptions, SystemClock};

/// A fresh database file in its own temporary directory.
pub struct Fixture {
    pub dir: TempDir,
    pub store: LocalStore,
}

impl Fixture {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir.path().join("local.db")).await;
        Self { dir, store }
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("local.db")
    }

    /// Runs a `SELECT COUNT(*) AS n ...` style query.
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.store, sql).await
    }
}

/// Installs the music model's registry (idempotent): the tests' types are the music model's.
pub fn music() {
    trackflow_music::install().expect("the music registry installs");
}

pub async fn open(path: &Path) -> LocalStore {
    music();
    LocalStore::open(LocalStoreOptions::new(path), Arc::new(SystemClock)).await.expect("open local store")
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn count(store: &LocalStore, sql: &str) -> i64 {
    let sql = sql.to_owned();
    store
        .with_connection(move |conn| Ok(diesel::sql_query(sql).get_result::<Count>(conn)?.n))
        .await
        .expect("count query")
}

pub async fn execute(store: &LocalStore, sql: &str) {
    let sql = sql.to_owned();
    store.with_connection(move |conn| Ok(conn.batch_execute(&sql)?)).await.expect("execute statement");
}

/// `entity` as the server sends it at `version`, every field written at `wall_ms`.
pub fn pulled<E: trackflow_domain::SyncEntity>(
    entity: &E,
    version: i64,
    wall_ms: u64,
) -> trackflow_domain::protocol::EntityState {
    let fields = entity.fields();
    let node = trackflow_domain::NodeId::from_uuid(uuid::Uuid::from_u128(7));
    let at = trackflow_domain::Hlc { wall_ms, counter: 0, node };
    trackflow_domain::protocol::EntityState {
        entity_type: E::ENTITY_TYPE,
        entity_id: entity.entity_id(),
        version,
        deleted: false,
        field_hlc: fields.keys().map(|k| (k.clone(), at)).collect(),
        fields,
        deleted_with: None,
    }
}
