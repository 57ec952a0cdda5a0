//! Conflicts that a policy could not (or was told not to) resolve automatically.

use crate::{entities::EntityRef, ids::ConflictId, time::Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How a stored conflict was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "choice", content = "fields")]
pub enum ConflictResolution {
    /// Keep the local values.
    Mine,
    /// Take the remote values.
    Theirs,
    /// Use these field values.
    Merged(BTreeMap<String, Value>),
}

/// What a conflict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Both sides wrote some fields: `fields` names them.
    #[default]
    Fields,
    /// The entity was deleted with the entity it lived inside (someone deleted a track this
    /// device's user had commented on): `local` keeps what this user wrote, `remote` is empty.
    /// Only taking the server's side (the deletion) resolves it.
    ParentDeleted,
}

/// Local and remote states of one entity that disagree on some fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConflict {
    /// The conflict's id.
    pub id: ConflictId,
    /// The entity in conflict.
    pub entity: EntityRef,
    /// The local field values.
    pub local: BTreeMap<String, Value>,
    /// The remote field values.
    pub remote: BTreeMap<String, Value>,
    /// The fields that disagree.
    pub fields: Vec<String>,
    /// When the conflict was found.
    pub detected_at: Timestamp,
    /// How it was resolved, once it is.
    pub resolution: Option<ConflictResolution>,
    /// What it is about.
    #[serde(default)]
    pub kind: ConflictKind,
}
