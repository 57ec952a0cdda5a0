//! The change feed's events: what one committed transaction of the local store changed, as a
//! UI needs it (which entities, how, and why), and the queries a live query re-runs on them.

use crate::entities::{EntityRef, EntityType};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// What happened to one entity, as its readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It appeared: created here, pulled for the first time, or brought back.
    Created,
    /// Some of its fields changed.
    Updated,
    /// It was deleted.
    Deleted,
    /// It is hidden because what it lives inside was deleted (the entity itself is unchanged).
    HiddenWithParent,
    /// It shows again because what it lives inside came back (a refused delete rolled back).
    ShownWithParent,
}

impl ChangeKind {
    /// Its name on the wire and in the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::HiddenWithParent => "hidden_with_parent",
            Self::ShownWithParent => "shown_with_parent",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transaction changed what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// A write made on this device.
    Local,
    /// A page pulled from the server.
    Pull,
    /// A conflict resolved on this device.
    Resolution,
    /// A change the server refused, undone.
    Rollback,
}

impl ChangeOrigin {
    /// Its name on the wire and in the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Pull => "pull",
            Self::Resolution => "resolution",
            Self::Rollback => "rollback",
        }
    }
}

impl fmt::Display for ChangeOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entity's change in a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityChange {
    /// The entity.
    pub entity: EntityRef,
    /// What happened to it.
    pub kind: ChangeKind,
    /// Why.
    pub origin: ChangeOrigin,
    /// The parent it lives inside, if its type declares one.
    pub parent: Option<EntityRef>,
    /// The ids its parent field, declared indexes and membership grant match on, before and
    /// after the change (field name and value): what decides which lists can see it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<(String, Uuid)>,
}

/// What one committed transaction of the local store changed, published after its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Its place in the store's feed: 1, 2, 3... in commit order, within one process.
    pub seq: u64,
    /// Every entity it changed, in the order it changed them.
    pub changes: Vec<EntityChange>,
}

/// What a live query of `E` reads: one entity, the children of a parent, or what a declared
/// index finds under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveQuery {
    /// The entity with this id.
    Get(Uuid),
    /// The entities inside this parent.
    ByParent(Uuid),
    /// What the named declared index finds under this key.
    By(&'static str, Uuid),
}

impl LiveQuery {
    /// Whether `change` can change this query's result over `entity_type`, whose last result
    /// showed the entities `shown`: a change of another type or inside another parent cannot
    /// (beyond the grants a membership index follows, and the rows it shows, see
    /// [`follows_its_rows`](Self::follows_its_rows)).
    pub fn affected_by(&self, entity_type: EntityType, change: &EntityChange, shown: &[Uuid]) -> bool {
        let same_type = change.entity.entity_type == entity_type;
        if same_type && self.follows_its_rows(entity_type) && shown.contains(&change.entity.id) {
            return true;
        }
        match *self {
            Self::Get(id) => same_type && change.entity.id == id,
            Self::ByParent(parent) => {
                let Some(declared) = entity_type.parent() else { return false };
                let inside = EntityRef::new(declared.entity_type, parent);
                // Its parent after the change, or before it (a row moved out).
                let moved = change.keys.iter().any(|(f, k)| f == declared.field && *k == parent);
                (same_type && (change.parent == Some(inside) || moved)) || change.entity == inside
            }
            Self::By(index, key) => {
                let Some(index) = entity_type.indexes().iter().find(|i| i.name == index) else {
                    return false;
                };
                let has = |field: &str| change.keys.iter().any(|(f, k)| f == field && *k == key);
                if same_type {
                    return has(index.field);
                }
                // A membership index also finds what the key holds a grant in: a grant of it
                // changes the result.
                index.members && change.entity.entity_type.member_field().is_some_and(has)
            }
        }
    }

    /// Whether a change to any entity of its last result can change it, whatever the change's
    /// keys: true for a membership index, whose result holds what the key was granted (a
    /// project shared with a user), and a change to such a project carries its owner, not the
    /// user. Other queries find their rows by the keys every change of them carries.
    pub fn follows_its_rows(&self, entity_type: EntityType) -> bool {
        match *self {
            Self::By(index, _) => entity_type.indexes().iter().any(|i| i.name == index && i.members),
            Self::Get(_) | Self::ByParent(_) => false,
        }
    }
}
