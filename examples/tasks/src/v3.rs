//! Version 3 of the example's model: a task's `title` is renamed `name`. The rename is declared
//! on the type ([`SyncEntity::RENAMED`]); the local migration renames the column, and the
//! engine does the rest, so devices on versions 1 and 2 keep syncing with a server on version
//! 3, and a device upgraded with writes still queued sends them under the new name
//! (docs/sync-protocol.md, "Schema evolution").

use crate::{v2::Label, Board, BoardId, TaskId};
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_client::domain::{
    entities::{AppMigration, FieldReader, Parent, Registry, RegistryError, Rename, Scope, ScopeKind},
    serde_json::Value,
    uuid::Uuid,
    validate::required_text,
    EntityRef, Priority, SyncEntity, Timestamp, ValidationError,
};

/// Version 3's types, with their tables. Not breaking: the rename is translated for older
/// devices.
pub fn registry() -> Result<Registry, RegistryError> {
    Ok(Registry::new().with::<Board>()?.with::<Task>()?.with::<Label>()?.with_schema(SCHEMA)?.with_version(3))
}

/// Version 2's tables, then the column renamed.
pub const SCHEMA: &[AppMigration] = &[
    crate::BOARDS_AND_TASKS,
    crate::v2::SCHEMA[1],
    AppMigration {
        version: "2026-12-09-000000_task_title_renamed",
        up: include_str!("../migrations/2026-12-09-000000_task_title_renamed/up.sql"),
    },
];

/// A task of version 3: named, where earlier versions titled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    id: TaskId,
    board_id: BoardId,
    name: String,
    done: bool,
    created_at: Timestamp,
    estimate: Option<u32>,
}

/// Changes to a [`Task`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// A new name.
    pub name: Option<String>,
    /// Done, or not.
    pub done: Option<bool>,
    /// A new estimate, or none.
    pub estimate: Option<Option<u32>>,
}

impl Task {
    /// Longest allowed name, in characters.
    pub const MAX_NAME: usize = crate::Task::MAX_TITLE;

    /// A new task, not done, on `board`.
    pub fn new(
        board: BoardId,
        name: &str,
        estimate: Option<u32>,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let name = required_text("name", name, Self::MAX_NAME)?;
        Ok(Self { id: TaskId::new(), board_id: board, name, done: false, created_at: now, estimate })
    }

    /// The id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
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
    const FIELDS: &'static [&'static str] = &["board_id", "name", "done", "created_at", "estimate"];
    const RENAMED: &'static [Rename] = &[Rename { from: "title", to: "name", since: 3 }];
    const IMMUTABLE: &'static [&'static str] = <crate::Task as SyncEntity>::IMMUTABLE;
    const PARENT: Option<Parent> = <crate::Task as SyncEntity>::PARENT;
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const SCOPE_FIELD: &'static str = <crate::Task as SyncEntity>::SCOPE_FIELD;
    const PRIORITY: Priority = Priority::Medium;
    const JSON_FIELDS: &'static [&'static str] = <crate::Task as SyncEntity>::JSON_FIELDS;

    fn scope(&self) -> Scope {
        Scope::Shared(self.board_id.into())
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Ok(Self {
            id: TaskId::from_uuid(id),
            board_id: f.required("board_id")?,
            name: required_text("name", &f.required::<String>("name")?, Self::MAX_NAME)?,
            done: f.required("done")?,
            created_at: f.required("created_at")?,
            estimate: f.optional("estimate")?,
        })
    }

    fn patched(&self, patch: &TaskPatch) -> Result<Self, ValidationError> {
        let name = match &patch.name {
            Some(name) => required_text("name", name, Self::MAX_NAME)?,
            None => self.name.clone(),
        };
        Ok(Self {
            name,
            done: patch.done.unwrap_or(self.done),
            estimate: patch.estimate.unwrap_or(self.estimate),
            ..self.clone()
        })
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
    use trackflow_client::domain::{entities::EntityType, Hlc, NodeId};

    #[test]
    fn a_rename_is_translated_both_ways_and_must_end_at_a_declared_field() {
        let task = EntityType::of::<Task>();
        let mut old: BTreeMap<String, u32> = [("title".to_owned(), 1), ("done".to_owned(), 2)].into();
        assert!(task.to_current(&mut old));
        assert_eq!(old, [("name".to_owned(), 1), ("done".to_owned(), 2)].into());
        assert!(!task.to_current(&mut old), "already current");
        task.as_known_at(2, &mut old);
        assert_eq!(old, [("title".to_owned(), 1), ("done".to_owned(), 2)].into(), "as version 2 knows it");
        let mut current = old.clone();
        task.to_current(&mut current);
        task.as_known_at(3, &mut current);
        assert!(current.contains_key("name"), "version 3 knows the new name");

        // A row holding both names (an older server instance wrote the old one beside the
        // new): the later reading wins, value and reading together.
        let at = |wall_ms| Hlc { wall_ms, counter: 0, node: NodeId::from_uuid(Uuid::nil()) };
        for (old_at, new_at, kept) in [(20, 10, "older name, later"), (10, 20, "new name, later")] {
            let mut fields: BTreeMap<String, &str> = BTreeMap::new();
            fields.insert("title".to_owned(), if old_at > new_at { kept } else { "older name, earlier" });
            fields.insert("name".to_owned(), if new_at > old_at { kept } else { "new name, earlier" });
            let mut readings: BTreeMap<String, Hlc> =
                [("title".to_owned(), at(old_at)), ("name".to_owned(), at(new_at))].into();
            assert!(task.row_to_current(&mut fields, &mut readings));
            assert_eq!(fields, [("name".to_owned(), kept)].into());
            assert_eq!(readings, [("name".to_owned(), at(old_at.max(new_at)))].into());
        }
        let mut lost = vec!["title".to_owned(), "done".to_owned()];
        task.names_to_current(&mut lost);
        assert_eq!(lost, ["name", "done"]);
        task.names_as_known_at(2, &mut lost);
        assert_eq!(lost, ["title", "done"], "as version 2 knows them");
        task.names_to_current(&mut lost);
        task.names_as_known_at(3, &mut lost);
        assert_eq!(lost, ["name", "done"], "version 3 knows the new name");

        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        struct Misnamed(Task);
        impl SyncEntity for Misnamed {
            type Id = TaskId;
            type Patch = TaskPatch;
            const NAME: &'static str = "task";
            const TABLE: &'static str = "tasks";
            const FIELDS: &'static [&'static str] = Task::FIELDS;
            const RENAMED: &'static [Rename] = &[Rename { from: "title", to: "heading", since: 3 }];
            const IMMUTABLE: &'static [&'static str] = Task::IMMUTABLE;
            const PARENT: Option<Parent> = Task::PARENT;
            const SCOPE: ScopeKind = ScopeKind::Shared;
            const SCOPE_FIELD: &'static str = Task::SCOPE_FIELD;
            const PRIORITY: Priority = Task::PRIORITY;
            fn scope(&self) -> Scope {
                self.0.scope()
            }
            fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
                Task::from_fields(id, fields).map(Self)
            }
            fn patched(&self, patch: &TaskPatch) -> Result<Self, ValidationError> {
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
        let refused = Registry::new().with::<Board>().and_then(|r| r.with::<Misnamed>());
        assert!(
            matches!(refused, Err(RegistryError::Rename { to: "heading", .. })),
            "a rename to an undeclared field: {refused:?}"
        );
        assert_eq!(registry().expect("v3").version(), 3);
    }
}
