//! A task: a title and whether it is done, inside a board.

use crate::{Board, BoardId};
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_client::domain::{
    entities::{FieldReader, Parent, Scope, ScopeKind},
    serde_json::Value,
    uuid::Uuid,
    validate::required_text,
    EntityRef, Priority, SyncEntity, Timestamp, ValidationError,
};

trackflow_client::domain::typed_id!(
    /// Identifies a [`Task`].
    TaskId, "task"
);

/// Something to do on a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    id: TaskId,
    board_id: BoardId,
    title: String,
    done: bool,
    created_at: Timestamp,
}

/// Changes to a [`Task`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// A new title.
    pub title: Option<String>,
    /// Done, or not.
    pub done: Option<bool>,
}

impl Task {
    /// Longest allowed title, in characters.
    pub const MAX_TITLE: usize = 500;

    /// A new task, not done, on `board`.
    pub fn new(board: BoardId, title: &str, now: Timestamp) -> Result<Self, ValidationError> {
        let title = required_text("title", title, Self::MAX_TITLE)?;
        Ok(Self { id: TaskId::new(), board_id: board, title, done: false, created_at: now })
    }

    /// The id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Whether it is done.
    pub fn done(&self) -> bool {
        self.done
    }

    fn board(&self) -> EntityRef {
        EntityRef::new(Board::ENTITY_TYPE, self.board_id.as_uuid())
    }
}

impl SyncEntity for Task {
    type Id = TaskId;
    type Patch = TaskPatch;
    const NAME: &'static str = "task";
    const TABLE: &'static str = "tasks";
    const FIELDS: &'static [&'static str] = &["board_id", "title", "done", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["board_id", "created_at"];
    const PARENT: Option<Parent> = Some(Parent { entity_type: Board::ENTITY_TYPE, field: "board_id" });
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const SCOPE_FIELD: &'static str = "board_id";
    const PRIORITY: Priority = Priority::Medium;
    // A flag is JSON `true`/`false`, kept as such (not SQLite's 1 and 0).
    const JSON_FIELDS: &'static [&'static str] = &["done"];

    fn scope(&self) -> Scope {
        Scope::Shared(self.board_id.into())
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Ok(Self {
            id: TaskId::from_uuid(id),
            board_id: f.required("board_id")?,
            title: required_text("title", &f.required::<String>("title")?, Self::MAX_TITLE)?,
            done: f.required("done")?,
            created_at: f.required("created_at")?,
        })
    }

    fn patched(&self, patch: &TaskPatch) -> Result<Self, ValidationError> {
        let title = match &patch.title {
            Some(title) => required_text("title", title, Self::MAX_TITLE)?,
            None => self.title.clone(),
        };
        Ok(Self { title, done: patch.done.unwrap_or(self.done), ..self.clone() })
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        vec![self.board()]
    }

    fn parent(&self) -> Option<EntityRef> {
        Some(self.board())
    }
}
