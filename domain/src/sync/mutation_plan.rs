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
    protocol::Mutation,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        entities::{AudioTrack, Project, SyncEntity},
        ids::{NodeId, UserId},
        sync::{Hlc, SyncOperation},
        Timestamp,
    };
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn hlc(wall_ms: u64, node: u128) -> Hlc {
        Hlc { wall_ms, counter: 0, node: NodeId::from_uuid(Uuid::from_u128(node)) }
    }

    fn mutation<K: Into<String>>(
        kind: OperationKind,
        entity: EntityRef,
        fields: impl IntoIterator<Item = (K, Value)>,
        at: Hlc,
    ) -> Mutation {
        let fields = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
        Mutation::from(&SyncOperation::new(entity, kind, fields, at, 0, vec![], Timestamp(0)))
    }

    fn stored(project: &Project, at: Hlc, deleted: bool) -> StoredEntity {
        let fields = project.fields();
        StoredEntity {
            entity_type: Project::ENTITY_TYPE,
            scope: Scope::Shared(project.id().into()),
            version: 7,
            state: FieldState {
                field_hlc: fields.keys().map(|k| (k.clone(), at)).collect(),
                fields,
                deleted,
            },
        }
    }

    fn create_fields(entity: &impl SyncEntity) -> BTreeMap<String, Value> {
        entity.fields()
    }

    /// One row per case: the mutation, the current row, and the expected plan kind and lost
    /// fields, or the refusal code.
    #[test]
    fn mutations_against_server_state() {
        let owner = UserId::new();
        let project = Project::new(owner, "Demo", None, Timestamp(1)).expect("valid");
        let it = project.entity_ref();
        let (old, new) = (hlc(100, 1), hlc(200, 2));
        let alive = stored(&project, hlc(150, 3), false);
        let tomb = stored(&project, hlc(150, 3), true);
        let track = EntityRef::new(AudioTrack::ENTITY_TYPE, it.id);
        let rename = |at| mutation(OperationKind::Update, it, [("name", json!("Renamed"))], at);
        type Expect = Result<(MergeKind, Vec<&'static str>), &'static str>;
        let cases: Vec<(&str, Mutation, Option<&StoredEntity>, Expect)> = vec![
            (
                "create",
                mutation(OperationKind::Create, it, create_fields(&project), new),
                None,
                Ok((MergeKind::Created, vec![])),
            ),
            (
                "create missing a field",
                mutation(OperationKind::Create, it, [("name", json!("x"))], new),
                None,
                Err("invalid_field"),
            ),
            (
                "create with unknown field",
                mutation(OperationKind::Create, it, [("colour", json!("red"))], new),
                None,
                Err("invalid_field"),
            ),
            (
                "create again, same content",
                mutation(OperationKind::Create, it, create_fields(&project), new),
                Some(&alive),
                Ok((MergeKind::Merged, vec![])),
            ),
            (
                "create again, other owner",
                mutation(OperationKind::Create, it, [("owner_id", json!(UserId::new()))], new),
                Some(&alive),
                Err("already_exists"),
            ),
            ("newer update wins", rename(new), Some(&alive), Ok((MergeKind::Merged, vec![]))),
            ("older update loses", rename(old), Some(&alive), Ok((MergeKind::Merged, vec!["name"]))),
            ("update of missing", rename(new), None, Err("not_found")),
            (
                "update to invalid value",
                mutation(OperationKind::Update, it, [("name", json!(""))], new),
                Some(&alive),
                Err("invalid_field"),
            ),
            (
                "update of immutable",
                mutation(OperationKind::Update, it, [("owner_id", json!(UserId::new()))], new),
                Some(&alive),
                Err("immutable_field"),
            ),
            ("update of deleted loses", rename(new), Some(&tomb), Ok((MergeKind::DeleteWins, vec!["name"]))),
            (
                "delete",
                mutation(OperationKind::Delete, it, [] as [(&str, Value); 0], new),
                Some(&alive),
                Ok((MergeKind::Deleted, vec![])),
            ),
            (
                "delete of missing",
                mutation(OperationKind::Delete, it, [] as [(&str, Value); 0], new),
                None,
                Err("not_found"),
            ),
            (
                "wrong type for the id",
                mutation(OperationKind::Update, track, [("name", json!("x"))], new),
                Some(&alive),
                Err("entity_type_mismatch"),
            ),
        ];
        for (name, m, current, expected) in cases {
            let got = plan_mutation(&m, current).map(|p| (p.kind, p.lost)).map_err(|r| match r {
                Refusal::BadInput { code, .. } | Refusal::Rejected { code, .. } => code,
            });
            let expected =
                expected.map(|(k, lost)| (k, lost.into_iter().map(String::from).collect::<Vec<_>>()));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn malformed_input_and_permanent_refusals_are_told_apart() {
        let project = Project::new(UserId::new(), "Demo", None, Timestamp(1)).expect("valid");
        let it = project.entity_ref();
        let mut fields = create_fields(&project);
        fields.insert("name".into(), json!(5));
        let bad = plan_mutation(&mutation(OperationKind::Create, it, fields, hlc(1, 1)), None);
        assert!(
            matches!(bad, Err(Refusal::BadInput { code: "invalid_field", ref message }) if message.contains("name"))
        );
        let missing =
            plan_mutation(&mutation(OperationKind::Delete, it, [] as [(&str, Value); 0], hlc(1, 1)), None);
        assert!(matches!(missing, Err(Refusal::Rejected { code: "not_found", .. })));
    }

    #[test]
    fn concurrent_edits_to_different_fields_both_survive() {
        let project = Project::new(UserId::new(), "Demo", None, Timestamp(1)).expect("valid");
        let current = stored(&project, hlc(100, 1), false);
        let it = project.entity_ref();
        let a = plan_mutation(
            &mutation(OperationKind::Update, it, [("name", json!("A"))], hlc(300, 1)),
            Some(&current),
        )
        .expect("applies");
        let after_a = StoredEntity { state: a.state, version: 8, ..current };
        let b = plan_mutation(
            &mutation(OperationKind::Update, it, [("description", json!("B"))], hlc(200, 2)),
            Some(&after_a),
        )
        .expect("applies");
        assert!(b.lost.is_empty());
        assert_eq!(b.state.fields["name"], json!("A"));
        assert_eq!(b.state.fields["description"], json!("B"));
    }

    #[test]
    fn a_tracks_audio_is_set_once() {
        let owner = UserId::new();
        let project = Project::new(owner, "Demo", None, Timestamp(1)).expect("valid");
        let silent = AudioTrack::new(project.id(), owner, "T", 10, None, Timestamp(1)).expect("valid");
        let it = silent.entity_ref();
        let created =
            plan_mutation(&mutation(OperationKind::Create, it, create_fields(&silent), hlc(1, 1)), None)
                .expect("create");
        let stored = |state| StoredEntity {
            entity_type: AudioTrack::ENTITY_TYPE,
            scope: created.scope,
            version: 1,
            state,
        };
        let set =
            |hash: Value, wall| mutation(OperationKind::Update, it, [("audio_sha256", hash)], hlc(wall, 1));
        let first = plan_mutation(&set(json!("a".repeat(64)), 2), Some(&stored(created.state.clone())))
            .expect("first set");
        let with_audio = stored(first.state);
        for (case, hash) in [("replaced", json!("b".repeat(64))), ("cleared", Value::Null)] {
            let refused = plan_mutation(&set(hash, 3), Some(&with_audio));
            assert!(
                matches!(refused, Err(Refusal::Rejected { code: "immutable_field", .. })),
                "{case}: {refused:?}"
            );
        }
        assert!(
            plan_mutation(&set(json!("a".repeat(64)), 3), Some(&with_audio)).is_ok(),
            "the same value again"
        );
    }

    #[test]
    fn only_references_a_change_adds_need_checking() {
        let owner = UserId::new();
        let project = Project::new(owner, "Demo", None, Timestamp(1)).expect("valid");
        let track = AudioTrack::new(project.id(), owner, "T", 10, None, Timestamp(1)).expect("valid");
        let it = track.entity_ref();
        let created =
            plan_mutation(&mutation(OperationKind::Create, it, create_fields(&track), hlc(1, 1)), None)
                .expect("create");
        assert_eq!(created.new_references, vec![project.entity_ref()]);
        assert_eq!(created.scope, Scope::Shared(project.id().into()));
        let current = StoredEntity {
            entity_type: AudioTrack::ENTITY_TYPE,
            scope: created.scope,
            version: 1,
            state: created.state,
        };
        let renamed = plan_mutation(
            &mutation(OperationKind::Update, it, [("name", json!("U"))], hlc(2, 1)),
            Some(&current),
        )
        .expect("update");
        assert!(renamed.new_references.is_empty());
        assert!(renamed.changes(Some(&current)));
    }
}
