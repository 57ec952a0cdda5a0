//! An outside program's model on TrackFlow Sync: boards, each holding tasks. Everything here
//! goes through the public API of `trackflow-client`, as any program's would: each type is
//! declared once (this file and `task.rs`), listed in [`registry`], and given its table in
//! [`SCHEMA`]; the engine does the rest (outbox, push, pull, merge, authorization).
//!
//! A board is the root of a shared scope: its owner is its member, and its tasks live inside it
//! (hidden and deleted with it).

mod task;
pub mod v2;
pub mod v3;

pub use task::{Task, TaskId, TaskPatch};

use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_client::domain::{
    entities::{AppMigration, FieldReader, Membership, Registry, RegistryError, Scope, ScopeKind, WriteRule},
    ids::ScopeId,
    serde_json::Value,
    uuid::Uuid,
    validate::required_text,
    CollaboratorRole, EntityRef, Priority, SyncEntity, Timestamp, UserId, ValidationError,
};

trackflow_client::domain::typed_id!(
    /// Identifies a [`Board`].
    BoardId, "board"
);

/// The program's types, parents first, with their tables. Install it before anything else
/// touches the engine.
pub fn registry() -> Result<Registry, RegistryError> {
    Registry::new().with::<Board>()?.with::<Task>()?.with_schema(SCHEMA).map(|r| r.with_version(1))
}

/// The tables of the program's types, applied when a local database is opened.
pub const SCHEMA: &[AppMigration] = &[BOARDS_AND_TASKS];

/// Version 1's tables ([`v2::SCHEMA`] starts with them too).
const BOARDS_AND_TASKS: AppMigration = AppMigration {
    version: "2026-12-06-000000_boards_and_tasks",
    up: include_str!("../migrations/2026-12-06-000000_boards_and_tasks/up.sql"),
};

/// A board of tasks, shared by its owner's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    id: BoardId,
    owner_id: UserId,
    title: String,
    created_at: Timestamp,
}

/// Changes to a [`Board`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardPatch {
    /// A new title.
    pub title: Option<String>,
}

impl Board {
    /// Longest allowed title, in characters.
    pub const MAX_TITLE: usize = 200;

    /// A new board owned by `owner_id`.
    pub fn new(owner_id: UserId, title: &str, now: Timestamp) -> Result<Self, ValidationError> {
        Ok(Self {
            id: BoardId::new(),
            owner_id,
            title: required_text("title", title, Self::MAX_TITLE)?,
            created_at: now,
        })
    }

    /// The id.
    pub fn id(&self) -> BoardId {
        self.id
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }
}

/// A board is the root of a shared scope, named by its id: what its tasks and its grant name.
impl From<BoardId> for ScopeId {
    fn from(id: BoardId) -> Self {
        ScopeId::from_uuid(id.as_uuid())
    }
}

impl SyncEntity for Board {
    type Id = BoardId;
    type Patch = BoardPatch;
    const NAME: &'static str = "board";
    const TABLE: &'static str = "boards";
    const FIELDS: &'static [&'static str] = &["owner_id", "title", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["owner_id", "created_at"];
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const WRITE: WriteRule = WriteRule { delete: CollaboratorRole::Owner, ..WriteRule::MEMBERS };
    const PRIORITY: Priority = Priority::High;
    const MEMBER_FIELD: Option<&'static str> = Some("owner_id");

    fn scope(&self) -> Scope {
        Scope::Shared(self.id.into())
    }

    fn membership(&self) -> Option<Membership> {
        Some(Membership { scope: self.id.into(), user_id: self.owner_id, role: CollaboratorRole::Owner })
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Ok(Self {
            id: BoardId::from_uuid(id),
            owner_id: f.required("owner_id")?,
            title: required_text("title", &f.required::<String>("title")?, Self::MAX_TITLE)?,
            created_at: f.required("created_at")?,
        })
    }

    fn patched(&self, patch: &BoardPatch) -> Result<Self, ValidationError> {
        let title = match &patch.title {
            Some(title) => required_text("title", title, Self::MAX_TITLE)?,
            None => self.title.clone(),
        };
        Ok(Self { title, ..self.clone() })
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
