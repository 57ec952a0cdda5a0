//! A field renamed by an upgrade: what the older build left under the old name (queued
//! operations, a row's own readings, the pulled state of a row waiting for its parent) is under
//! the new name once the store opens. A binary of its own: it installs a registry whose type
//! declares a rename.
#![allow(missing_docs)]

use diesel::{connection::SimpleConnection, prelude::*, sql_types::Text};
use serde::Serialize;
use std::{collections::BTreeMap, path::Path, sync::Arc};
use trackflow_domain::{
    entities::{AppMigration, FieldReader, Membership, Registry, Rename, Scope, ScopeKind},
    ids::ScopeId,
    ports::{PendingOperationsRepository, Repository},
    serde_json::Value,
    CollaboratorRole, EntityRef, Priority, SyncEntity, Timestamp, UserId, ValidationError,
};
use trackflow_store::{
    LocalStore, LocalStoreOptions, SqlitePendingOperationsRepository, SqliteRepository, SystemClock,
};
use uuid::Uuid;

trackflow_domain::typed_id!(
    /// Identifies a [`Note`].
    NoteId, "note"
);

/// A note, whose `title` version 2 renamed `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Note {
    id: NoteId,
    owner_id: UserId,
    name: String,
    body: String,
    created_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NotePatch {
    name: Option<String>,
}

impl SyncEntity for Note {
    type Id = NoteId;
    type Patch = NotePatch;
    const NAME: &'static str = "note";
    const TABLE: &'static str = "notes";
    const FIELDS: &'static [&'static str] = &["owner_id", "name", "body", "created_at"];
    const RENAMED: &'static [Rename] = &[Rename { from: "title", to: "name", since: 2 }];
    const IMMUTABLE: &'static [&'static str] = &["owner_id", "created_at"];
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const PRIORITY: Priority = Priority::Medium;
    const MEMBER_FIELD: Option<&'static str> = Some("owner_id");

    fn scope(&self) -> Scope {
        Scope::Shared(ScopeId::from_uuid(self.id.as_uuid()))
    }

    fn membership(&self) -> Option<Membership> {
        let scope = ScopeId::from_uuid(self.id.as_uuid());
        Some(Membership { scope, user_id: self.owner_id, role: CollaboratorRole::Owner })
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Ok(Self {
            id: NoteId::from_uuid(id),
            owner_id: f.required("owner_id")?,
            name: f.required("name")?,
            body: f.required("body")?,
            created_at: f.required("created_at")?,
        })
    }

    fn patched(&self, patch: &NotePatch) -> Result<Self, ValidationError> {
        Ok(Self { name: patch.name.clone().unwrap_or_else(|| self.name.clone()), ..self.clone() })
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        Vec::new()
    }

    fn parent(&self) -> Option<EntityRef> {
        None
    }
}

const NOTES: AppMigration = AppMigration {
    version: "2026-12-09-000000_notes",
    up: "CREATE TABLE notes (
        id TEXT PRIMARY KEY NOT NULL, owner_id TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
        created_at BIGINT NOT NULL, version BIGINT NOT NULL DEFAULT 0, field_hlc TEXT NOT NULL DEFAULT '{}',
        deleted BOOLEAN NOT NULL DEFAULT 0, dirty BIGINT NOT NULL DEFAULT 0, pending_create TEXT,
        pulled_version BIGINT NOT NULL DEFAULT 0
    ) WITHOUT ROWID;",
};

async fn open(path: &Path) -> LocalStore {
    let registry = Registry::new().with::<Note>().and_then(|r| r.with_schema(&[NOTES])).expect("registry");
    // Installed once; a second open finds it installed.
    let _ = registry.with_version(2).install();
    LocalStore::open(LocalStoreOptions::new(path), Arc::new(SystemClock)).await.expect("open")
}

#[derive(QueryableByName)]
struct Text1 {
    #[diesel(sql_type = Text)]
    text: String,
}

async fn read(store: &LocalStore, sql: &str) -> Vec<String> {
    let sql = sql.to_owned();
    let rows = store.with_connection(move |conn| Ok(diesel::sql_query(sql).load::<Text1>(conn)?)).await;
    rows.expect("query").into_iter().map(|r| r.text).collect()
}

async fn execute(store: &LocalStore, sql: &str) {
    let sql = sql.to_owned();
    store.with_connection(move |conn| Ok(conn.batch_execute(&sql)?)).await.expect("execute");
}

#[tokio::test]
async fn what_an_older_build_stored_under_a_renamed_field_is_moved_when_the_store_opens() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("local.db");
    let store = open(&path).await;
    let notes = SqliteRepository::<Note>::new(store.clone());
    let owner = UserId::new();
    let now = Timestamp(1_800_000_000_000);
    let note =
        Note { id: NoteId::new(), owner_id: owner, name: "Draft".into(), body: "b".into(), created_at: now };
    notes.create(note.clone()).await.expect("create");
    // A later edit of the name alone: the row keeps a reading of its own for it.
    notes.update(note.id, NotePatch { name: Some("Draft 2".into()) }).await.expect("edit");

    // As the older build left the file: every `name` the engine keeps was `title`, a row waits
    // for its parent with a pulled state naming `title`, and the renames were never moved.
    let waiting = r#"{"entity_type":"note","entity_id":"00000000-0000-0000-0000-000000000009","version":3,"deleted":false,"fields":{"title":"Waiting","body":"w"},"field_hlc":{}}"#;
    execute(
        &store,
        &format!(
            "UPDATE pending_operations SET changed_fields = replace(changed_fields, '\"name\"', '\"title\"'),
                field_hlc = replace(field_hlc, '\"name\"', '\"title\"');
             UPDATE notes SET field_hlc = replace(field_hlc, '\"name\"', '\"title\"');
             INSERT INTO sync_deferred (entity_type, entity_id, parent_type, parent_id, state)
                VALUES ('note', '00000000-0000-0000-0000-000000000009', 'note', '00000000-0000-0000-0000-000000000001', '{waiting}');
             INSERT INTO sync_conflicts (id, entity_type, entity_id, local_fields, remote_fields, fields, detected_at)
                VALUES ('00000000-0000-0000-0000-000000000008', 'note', '{id}', '{{\"title\":\"Mine\"}}',
                        '{{\"title\":\"Theirs\",\"body\":\"b\"}}', '[\"title\"]', 1);
             DELETE FROM local_settings WHERE key = 'renames_moved';",
            id = note.id.as_uuid()
        ),
    )
    .await;
    let naming_title = "SELECT changed_fields || field_hlc AS text FROM pending_operations
        UNION ALL SELECT field_hlc FROM notes UNION ALL SELECT state FROM sync_deferred
        UNION ALL SELECT local_fields || remote_fields || fields FROM sync_conflicts";
    let before = read(&store, naming_title).await;
    assert!(before.iter().filter(|t| t.contains("\"title\"")).count() >= 4, "set up: {before:?}");
    drop((notes, store));

    // The upgraded build opens the file.
    let store = open(&path).await;
    let after = read(&store, naming_title).await;
    assert!(after.iter().all(|t| !t.contains("\"title\"")), "nothing under the old name: {after:?}");
    let ops = SqlitePendingOperationsRepository::new(store.clone()).list(None).await.expect("ops");
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|op| op.changed_fields.contains_key("name")), "{ops:?}");
    let readings = read(&store, "SELECT field_hlc AS text FROM notes").await;
    assert!(readings[0].contains("\"name\""), "the row's own reading moved: {readings:?}");
    let state = read(&store, "SELECT state AS text FROM sync_deferred").await;
    assert!(state[0].contains("\"name\":\"Waiting\""), "{state:?}");
    let conflict =
        read(&store, "SELECT local_fields || remote_fields || fields AS text FROM sync_conflicts").await;
    assert_eq!(conflict, [r#"{"name":"Mine"}{"body":"b","name":"Theirs"}["name"]"#], "the conflict's names");
    let shown = SqliteRepository::<Note>::new(store.clone()).get(note.id).await.expect("get");
    assert_eq!(shown.map(|n| n.name), Some("Draft 2".to_owned()));
}
