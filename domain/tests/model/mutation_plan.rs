use serde_json::{json, Value};
use std::collections::BTreeMap;
use trackflow_domain::{
    entities::{EntityType, FieldReader, Scope, ScopeKind, SyncEntity},
    ids::{NodeId, UserId},
    protocol::Mutation,
    sync::{
        field_merge::{FieldState, MergeKind},
        mutation_plan::*,
        Hlc, OperationKind, SyncOperation,
    },
    EntityRef, Priority, Timestamp, ValidationError,
};
use trackflow_music::{AudioTrack, Project};
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
        state: FieldState { field_hlc: fields.keys().map(|k| (k.clone(), at)).collect(), fields, deleted },
        deleted_with: None,
    }
}

/// What the server stores after applying `plan` (a create) to an entity of `entity_type`: the
/// plan's state at version 1.
fn stored_after(entity_type: EntityType, plan: Plan) -> StoredEntity {
    StoredEntity { entity_type, scope: plan.scope, version: 1, state: plan.state, deleted_with: None }
}

fn create_fields(entity: &impl SyncEntity) -> BTreeMap<String, Value> {
    entity.fields()
}

/// One row per case: the mutation, the current row, and the expected plan kind and lost
/// fields, or the refusal code.
#[test]
fn mutations_against_server_state() {
    crate::music();
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
        let expected = expected.map(|(k, lost)| (k, lost.into_iter().map(String::from).collect::<Vec<_>>()));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn malformed_input_and_permanent_refusals_are_told_apart() {
    crate::music();
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
    crate::music();
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

trackflow_domain::typed_id!(
    /// Identifies a [`Seal`].
    SealId, "seal"
);

/// A type of this test alone, declaring a set-once field (`stamp`): the merge plan needs only
/// its declaration, not an installed registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Seal {
    id: SealId,
    owner_id: UserId,
    stamp: Option<String>,
}

impl SyncEntity for Seal {
    type Id = SealId;
    type Patch = ();
    const NAME: &'static str = "seal";
    const TABLE: &'static str = "seals";
    const SCOPE: ScopeKind = ScopeKind::User;
    const PRIORITY: Priority = Priority::Low;
    const FIELDS: &'static [&'static str] = &["owner_id", "stamp"];
    const IMMUTABLE: &'static [&'static str] = &["owner_id"];
    const SET_ONCE: &'static [&'static str] = &["stamp"];

    fn patched(&self, _patch: &()) -> Result<Self, ValidationError> {
        Ok(self.clone())
    }

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Ok(Self { id: SealId::from_uuid(id), owner_id: f.required("owner_id")?, stamp: f.optional("stamp")? })
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

    fn scope(&self) -> Scope {
        Scope::User(self.owner_id)
    }
}

#[test]
fn a_set_once_field_is_set_once() {
    let seal = Seal { id: SealId::new(), owner_id: UserId::new(), stamp: None };
    let it = seal.entity_ref();
    let created = plan_mutation(&mutation(OperationKind::Create, it, create_fields(&seal), hlc(1, 1)), None)
        .expect("create");
    let set = |stamp: Value, wall| mutation(OperationKind::Update, it, [("stamp", stamp)], hlc(wall, 1));
    let first = plan_mutation(&set(json!("first"), 2), Some(&stored_after(Seal::ENTITY_TYPE, created)))
        .expect("first set");
    let with_stamp = stored_after(Seal::ENTITY_TYPE, first);
    for (case, stamp) in [("replaced", json!("second")), ("cleared", Value::Null)] {
        let refused = plan_mutation(&set(stamp, 3), Some(&with_stamp));
        assert!(
            matches!(refused, Err(Refusal::Rejected { code: "immutable_field", .. })),
            "{case}: {refused:?}"
        );
    }
    assert!(plan_mutation(&set(json!("first"), 3), Some(&with_stamp)).is_ok(), "the same value again");
}

#[test]
fn a_tracks_audio_and_duration_may_be_replaced_together() {
    crate::music();
    let owner = UserId::new();
    let project = Project::new(owner, "Demo", None, Timestamp(1)).expect("valid");
    let track =
        AudioTrack::new(project.id(), owner, "T", 10, Some(&"a".repeat(64)), Timestamp(1)).expect("valid");
    let it = track.entity_ref();
    let created = plan_mutation(&mutation(OperationKind::Create, it, create_fields(&track), hlc(1, 1)), None)
        .expect("create");
    let current = stored_after(AudioTrack::ENTITY_TYPE, created);
    let replace = mutation(
        OperationKind::Update,
        it,
        [("audio_sha256", json!("b".repeat(64))), ("duration_ms", json!(20))],
        hlc(2, 1),
    );
    let replaced = plan_mutation(&replace, Some(&current)).expect("replaced");
    assert_eq!(replaced.state.fields["audio_sha256"], json!("b".repeat(64)));
    assert_eq!(replaced.state.fields["duration_ms"], json!(20));
}

#[test]
fn only_references_a_change_adds_need_checking() {
    crate::music();
    let owner = UserId::new();
    let project = Project::new(owner, "Demo", None, Timestamp(1)).expect("valid");
    let track = AudioTrack::new(project.id(), owner, "T", 10, None, Timestamp(1)).expect("valid");
    let it = track.entity_ref();
    let created = plan_mutation(&mutation(OperationKind::Create, it, create_fields(&track), hlc(1, 1)), None)
        .expect("create");
    assert_eq!(created.new_references, vec![project.entity_ref()]);
    assert_eq!(created.scope, Scope::Shared(project.id().into()));
    let current = stored_after(AudioTrack::ENTITY_TYPE, created);
    let renamed = plan_mutation(
        &mutation(OperationKind::Update, it, [("name", json!("U"))], hlc(2, 1)),
        Some(&current),
    )
    .expect("update");
    assert!(renamed.new_references.is_empty());
    assert!(renamed.changes(Some(&current)));
}
