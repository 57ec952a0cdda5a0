//! Wire types of the sync protocol (HTTP + JSON under `/v1`). They are separate from the
//! entities on purpose: the wire format can evolve with versioning while the domain model stays
//! free to change, and this one module owns what goes over the network.

use crate::{
    entities::EntityType,
    ids::{NodeId, OperationId},
    sync::{FieldChange, Hlc, OperationKind, SyncOperation},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// One change of one entity sent by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// Client-generated id; the idempotency key.
    pub id: OperationId,
    /// The entity's type.
    pub entity_type: EntityType,
    /// The entity's id.
    pub entity_id: Uuid,
    /// Create, update or delete.
    pub kind: OperationKind,
    /// The server version the client based the change on.
    pub base_version: i64,
    /// Changed fields with their clock readings.
    pub fields: BTreeMap<String, FieldChange>,
}

impl From<&SyncOperation> for Mutation {
    fn from(op: &SyncOperation) -> Self {
        Self {
            id: op.id,
            entity_type: op.entity.entity_type,
            entity_id: op.entity.id,
            kind: op.kind,
            base_version: op.base_version,
            fields: op.changed_fields.clone(),
        }
    }
}

/// A batch of mutations, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRequest {
    /// The sending replica (ties in last-writer-wins are broken by it).
    pub client_id: NodeId,
    /// The mutations, in the order the client made them.
    pub mutations: Vec<Mutation>,
}

/// A row as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityState {
    /// The entity's type.
    pub entity_type: EntityType,
    /// The entity's id.
    pub entity_id: Uuid,
    /// Server version.
    pub version: i64,
    /// Tombstone.
    pub deleted: bool,
    /// All fields.
    pub fields: BTreeMap<String, Value>,
    /// When each field was last written.
    pub field_hlc: BTreeMap<String, Hlc>,
}

/// The result of one mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum MutationOutcome {
    /// Applied; the row now has `version`.
    Applied {
        /// The row's new version.
        version: i64,
    },
    /// Seen before; this replays the first result and nothing was applied again.
    Duplicate {
        /// The version the first application produced.
        version: i64,
    },
    /// Merged against concurrent changes: `lost_fields` were overwritten by newer writes.
    Conflict {
        /// The server row after the merge.
        server: EntityState,
        /// Fields of this mutation that lost to a later write.
        lost_fields: Vec<String>,
    },
    /// Refused for good; retrying will not help.
    Rejected {
        /// A stable reason code (`forbidden`, `invalid_field`, ...).
        code: String,
        /// Human-readable detail.
        message: String,
    },
}

/// The result for one mutation of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationResult {
    /// The mutation's id.
    pub id: OperationId,
    /// What happened.
    #[serde(flatten)]
    pub outcome: MutationOutcome,
}

/// The answer to a push: one result per mutation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// Per-mutation results.
    pub results: Vec<MutationResult>,
}

/// Asks for changes after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Where the last pull ended; `None` for everything.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// The answer to a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum PullResponse {
    /// A page of changes.
    Changes {
        /// Changed rows, tombstones included, in version order.
        changes: Vec<EntityState>,
        /// The cursor to pull from next.
        next_cursor: String,
        /// Whether more changes are waiting.
        has_more: bool,
    },
    /// The cursor is unknown or expired: re-sync this scope from scratch.
    Reset,
}
