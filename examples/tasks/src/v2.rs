//! Version 2 of the example's model, as the program's next release declares it: a task gains an
//! estimate, and a board gains labels. The estimate is optional, so creates from devices still
//! on version 1 (which cannot name it) stay valid (docs/sync-protocol.md, "Schema evolution").
//!
//! A real program ships one version; this crate holds both so that tests run them side by side,
//! each in a process of its own (a process installs one registry).

use crate::{Board, BoardId, TaskId};
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_client::domain::{
    entities::{AppMigration, FieldReader, Parent, Registry, RegistryError, Scope, ScopeKind},
    serde_json::Value,
    uuid::Uuid,
    validate::required_text,
    EntityRef, Priority, SyncEntity, Timestamp, ValidationError,
};

/// Version 2's types, parents first, with their tables. Its changes are additive: devices
/// still on version 1 keep syncing with a server on version 2.
pub fn registry() -> Result<Registry, RegistryError> {
    Ok(Registry::new().with::<Board>()?.with::<Task>()?.with::<Label>()?.with_schema(SCHEMA)?.with_version(2))
}

/// Version 1's tables, then version 2's additions: a device on version 1 migrates on upgrade.
pub const SCHEMA: &[AppMigration] = &[
    crate::BOARDS_AND_TASKS,
    AppMigration {
        version: "2026-12-08-000000_estimates_and_labels",
        up: include_str!("../migrations/2026-12-08-000000_estimates_and_labels/up.sql"),
    },
];

/// A task of version 2: version 1's, and an estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    #[serde(flatten)]
    task: crate::Task,
    estimate: Option<u32>,
}

/// Changes to a [`Task`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// What version 1 could change.
    pub task: crate::TaskPatch,
    /// A new estimate, or none.
    pub estimate: Option<Option<u32>>,
}

impl Task {
    /// A new task, not done, on `board`.
    pub fn new(
        board: BoardId,
        title: &str,
        estimate: Option<u32>,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Ok(Self { task: crate::Task::new(board, title, now)?, estimate })
    }

    /// The id.
    pub fn id(&self) -> TaskId {
        self.task.id()
    }

    /// The estimate, in minutes.
    pub fn estimate(&self) -> Option<u32> {
        self.estimate
    }
}

impl SyncEntity for Task {
    type Id = TaskId;
    type Patch = TaskPatch;
    const NAME: &'static str = "task";
    const TABLE: &'static str = "tasks";
    const FIELDS: &'static [&'static str] = &["board_id", "title", "done", "created_at", "estimate"];
    const IMMUTABLE: &'static [&'static str] = <crate::Task as SyncEntity>::IMMUTABLE;
    const PARENT: Option<Parent> = <crate::Task as SyncEntity>::PARENT;
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const SCOPE_FIELD: &'static str = <crate::Task as SyncEntity>::SCOPE_FIELD;
    const PRIORITY: Priority = Priority::Medium;
    const JSON_FIELDS: &'static [&'static str] = <crate::Task as SyncEntity>::JSON_FIELDS;

    fn scope(&self) -> Scope {
        self.task.scope()
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let estimate = FieldReader::new(fields, Self::FIELDS)?.optional("estimate")?;
        let mut earlier = fields.clone();
        earlier.remove("estimate");
        Ok(Self { task: crate::Task::from_fields(id, &earlier)?, estimate })
    }

    fn patched(&self, patch: &TaskPatch) -> Result<Self, ValidationError> {
        Ok(Self { task: self.task.patched(&patch.task)?, estimate: patch.estimate.unwrap_or(self.estimate) })
    }

    fn entity_id(&self) -> Uuid {
        self.task.entity_id()
    }

    fn references(&self) -> Vec<EntityRef> {
        self.task.references()
    }

    fn parent(&self) -> Option<EntityRef> {
        self.task.parent()
    }
}

trackflow_client::domain::typed_id!(
    /// Identifies a [`Label`].
    LabelId, "label"
);

/// A label a board's tasks may be sorted by (version 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    id: LabelId,
    board_id: BoardId,
    name: String,
    created_at: Timestamp,
}

/// Changes to a [`Label`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelPatch {
    /// A new name.
    pub name: Option<String>,
}

impl Label {
    /// Longest allowed name, in characters.
    pub const MAX_NAME: usize = 50;

    /// A new label on `board`.
    pub fn new(board: BoardId, name: &str, now: Timestamp) -> Result<Self, ValidationError> {
        let name = required_text("name", name, Self::MAX_NAME)?;
        Ok(Self { id: LabelId::new(), board_id: board, name, created_at: now })
    }

    /// The id.
    pub fn id(&self) -> LabelId {
        self.id
    }

    fn board(&self) -> EntityRef {
        EntityRef::new(Board::ENTITY_TYPE, self.board_id.as_uuid())
    }
}

impl SyncEntity for Label {
    type Id = LabelId;
    type Patch = LabelPatch;
    const NAME: &'static str = "label";
    const TABLE: &'static str = "labels";
    const FIELDS: &'static [&'static str] = &["board_id", "name", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["board_id", "created_at"];
    const PARENT: Option<Parent> = Some(Parent { entity_type: Board::ENTITY_TYPE, field: "board_id" });
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const SCOPE_FIELD: &'static str = "board_id";
    const PRIORITY: Priority = Priority::Medium;

    fn scope(&self) -> Scope {
        Scope::Shared(self.board_id.into())
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Ok(Self {
            id: LabelId::from_uuid(id),
            board_id: f.required("board_id")?,
            name: required_text("name", &f.required::<String>("name")?, Self::MAX_NAME)?,
            created_at: f.required("created_at")?,
        })
    }

    fn patched(&self, patch: &LabelPatch) -> Result<Self, ValidationError> {
        let name = match &patch.name {
            Some(name) => required_text("name", name, Self::MAX_NAME)?,
            None => self.name.clone(),
        };
        Ok(Self { name, ..self.clone() })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 2's label, declared as a breaking change at version 2.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(transparent)]
    struct StrictLabel(Label);

    impl SyncEntity for StrictLabel {
        type Id = LabelId;
        type Patch = LabelPatch;
        const NAME: &'static str = "label";
        const TABLE: &'static str = "labels";
        const FIELDS: &'static [&'static str] = Label::FIELDS;
        const IMMUTABLE: &'static [&'static str] = Label::IMMUTABLE;
        const PRIORITY: Priority = Label::PRIORITY;
        const PARENT: Option<Parent> = Label::PARENT;
        const SCOPE: ScopeKind = ScopeKind::Shared;
        const SCOPE_FIELD: &'static str = Label::SCOPE_FIELD;
        const BREAKING_SINCE: u32 = 2;

        fn scope(&self) -> Scope {
            self.0.scope()
        }
        fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
            Label::from_fields(id, fields).map(Self)
        }
        fn patched(&self, patch: &LabelPatch) -> Result<Self, ValidationError> {
            self.0.patched(patch).map(Self)
        }
        fn entity_id(&self) -> Uuid {
            self.0.entity_id()
        }
        fn references(&self) -> Vec<EntityRef> {
            self.0.references()
        }
        fn parent(&self) -> Option<EntityRef> {
            self.0.parent()
        }
    }

    #[test]
    fn versions_and_breaking_changes_are_declared_on_the_registry_or_a_type() {
        let v1 = crate::registry().expect("v1");
        let v2 = registry().expect("v2");
        assert_eq!((v1.version(), v1.breaking_since_version()), (1, 0));
        assert_eq!((v2.version(), v2.breaking_since_version()), (2, 0), "additive: not breaking");
        let declared = registry().and_then(|r| r.breaking_since(2)).expect("declared on the registry");
        assert_eq!(declared.breaking_since_version(), 2);
        assert!(registry().and_then(|r| r.breaking_since(3)).is_err(), "not ahead of the version");
        let by_type = Registry::new().with::<Board>().and_then(|r| r.with::<StrictLabel>()).expect("types");
        assert_eq!(by_type.with_version(2).breaking_since_version(), 2, "declared on a type");
    }
}
