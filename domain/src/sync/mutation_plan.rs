//! What the sync server does with one pushed mutation, decided without I/O.
//!
//! The server store looks up the entity's current row, asks [`plan_mutation`] what the
//! mutation would make of it, then checks authorization and references against its tables and
//! writes the plan. Keeping the decision pure lets one table-driven test cover creates, updates,
//! deletes, immutable fields, concurrent edits and deletes racing updates.

use super::{
    field_merge::{merge, Change, FieldState, MergeKind},
    OperationKind,
};
use crate::{
    entities::{AnyEntity, EntityRef, EntityType, Scope},
    protocol::{DeletedWith, Mutation},
};
use std::collections::BTreeMap;

/// An entity as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    /// Its type.
    pub entity_type: EntityType,
    /// The scope it belongs to.
    pub scope: Scope,
    /// Its current version.
    pub version: i64,
    /// Its replicated state (fields, field clocks, tombstone).
    pub state: FieldState,
    /// Set when it was deleted with the entity it lived inside.
    pub deleted_with: Option<DeletedWith>,
}

/// What applying a mutation would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The entity's scope (for a delete, the scope it had).
    pub scope: Scope,
    /// What the merge did.
    pub kind: MergeKind,
    /// The state to store. Equal to the current state when the mutation changed nothing.
    pub state: FieldState,
    /// The entity after the change; `None` once it is a tombstone.
    pub entity: Option<AnyEntity>,
    /// The entity before the change, if it existed and was alive.
    pub before: Option<AnyEntity>,
    /// References the change adds, which must exist (the rest were checked when they were
    /// set).
    pub new_references: Vec<EntityRef>,
    /// Fields of the mutation that lost to later writes or to a delete.
    pub lost: Vec<String>,
}

impl Plan {
    /// Whether the stored row changes (and so gets a new version).
    pub fn changes(&self, current: Option<&StoredEntity>) -> bool {
        current.is_none_or(|current| current.state != self.state)
    }
}

/// Why a mutation is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The mutation is malformed (a client bug): the whole push is refused and nothing stored.
    BadInput {
        /// Stable code (`invalid_field`, `entity_type_mismatch`, ...).
        code: &'static str,
        /// Detail naming the field.
        message: String,
    },
    /// A well-formed mutation the server will never accept; this mutation alone is rejected.
    Rejected {
        /// Stable code (`not_found`, `immutable_field`, `already_exists`, ...).
        code: &'static str,
        /// Detail.
        message: String,
    },
}

impl Refusal {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Refusal::BadInput { code, message: message.into() }
    }

    fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        Refusal::Rejected { code, message: message.into() }
    }
}

/// Decides what `mutation` does to `current` (`None`: the server has never seen the entity).
///
/// - A create of a new entity must carry every required field; a create of an entity that
///   already exists merges like an update, provided it agrees on the fields only a create sets.
/// - An update merges field by field, last writer wins by HLC; it may not change an immutable
///   field, and the merged entity must still be valid.
/// - A delete makes a tombstone and wins over concurrent updates.
pub fn plan_mutation(mutation: &Mutation, current: Option<&StoredEntity>) -> Result<Plan, Refusal> {
    let entity_type = mutation.entity_type;
    let what = EntityRef::new(entity_type, mutation.entity_id);
    if let Some(current) = current {
        if current.entity_type != entity_type {
            return Err(Refusal::bad(
                "entity_type_mismatch",
                format!("{} is a {}, not a {entity_type}", mutation.entity_id, current.entity_type),
            ));
        }
    }
    let before = match current {
        Some(c) if !c.state.deleted => {
            AnyEntity::from_fields(entity_type, mutation.entity_id, &c.state.fields).ok()
        }
        _ => None,
    };
    let change = match mutation.kind {
        OperationKind::Upload => {
            return Err(Refusal::bad(
                "invalid_request",
                format!("kind: 'upload' is not a mutation ({what}): audio goes to PUT /v1/blobs/{{sha256}}"),
            ));
        }
        OperationKind::Delete => {
            let current = current.ok_or_else(|| Refusal::rejected("not_found", format!("no such {what}")))?;
            let merged = merge(Some(&current.state), Change::Delete);
            return Ok(Plan {
                scope: current.scope,
                kind: merged.kind,
                state: merged.state,
                entity: None,
                before,
                new_references: Vec::new(),
                lost: Vec::new(),
            });
        }
        OperationKind::Update if current.is_none() => {
            return Err(Refusal::rejected("not_found", format!("no such {what}")));
        }
        OperationKind::Create | OperationKind::Update => Change::Write(&mutation.fields),
    };
    if let Some(current) = current.filter(|c| c.state.deleted) {
        // Delete wins: a write to a tombstone changes nothing and is told what it lost. (A
        // purged tombstone has no fields left to merge with or to validate against.)
        return Ok(Plan {
            scope: current.scope,
            kind: MergeKind::DeleteWins,
            state: current.state.clone(),
            entity: None,
            before,
            new_references: Vec::new(),
            lost: mutation.fields.keys().cloned().collect(),
        });
    }
    if let Some(current) = current {
        check_immutable(mutation, current)?;
    }
    let merged = merge(current.map(|c| &c.state), change);
    let entity = AnyEntity::from_fields(entity_type, mutation.entity_id, &merged.state.fields)
        .map_err(|e| Refusal::bad("invalid_field", format!("{what}: {e}")))?;
    let scope = current.map_or_else(|| entity.scope(), |c| c.scope);
    let old_references = before.as_ref().map(AnyEntity::references).unwrap_or_default();
    let new_references = if merged.state.deleted {
        Vec::new()
    } else {
        entity.references().into_iter().filter(|r| !old_references.contains(r)).collect()
    };
    Ok(Plan {
        scope,
        kind: merged.kind,
        entity: (!merged.state.deleted).then_some(entity),
        state: merged.state,
        before,
        new_references,
        lost: merged.lost,
    })
}

/// Refuses a write to an existing entity that changes a field only a create may set, or a
/// set-once field that is already set (a track's audio).
fn check_immutable(mutation: &Mutation, current: &StoredEntity) -> Result<(), Refusal> {
    let immutable = mutation.entity_type.immutable_fields();
    let set_once = mutation.entity_type.set_once_fields();
    let stored: &BTreeMap<_, _> = &current.state.fields;
    for (name, change) in &mutation.fields {
        let fixed = immutable.contains(&name.as_str())
            || (set_once.contains(&name.as_str()) && stored.get(name).is_some_and(|v| !v.is_null()));
        if fixed && stored.get(name).is_some_and(|v| *v != change.value) {
            let code =
                if mutation.kind == OperationKind::Create { "already_exists" } else { "immutable_field" };
            return Err(Refusal::rejected(code, format!("{name} cannot change after create")));
        }
    }
    Ok(())
}
