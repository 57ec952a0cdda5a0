use serde_json::Value;
use trackflow_domain::{
    entities::{changed_fields, SyncEntity},
    ids::{NodeId, UserId},
    sync::*,
    Timestamp,
};
use trackflow_music::{Project, ProjectPatch};

#[test]
fn priorities_sort_most_urgent_first() {
    crate::music();
    let mut ps = [Priority::Low, Priority::Critical, Priority::Medium, Priority::High];
    ps.sort();
    assert_eq!(ps, [Priority::Critical, Priority::High, Priority::Medium, Priority::Low]);
}

#[test]
fn stable_names_round_trip() {
    crate::music();
    for k in [OperationKind::Create, OperationKind::Update, OperationKind::Delete, OperationKind::Upload] {
        assert_eq!(k.as_str().parse::<OperationKind>(), Ok(k));
    }
    for s in [OperationStatus::Pending, OperationStatus::InFlight, OperationStatus::Failed] {
        assert_eq!(s.as_str().parse::<OperationStatus>(), Ok(s));
    }
    assert!("later".parse::<Priority>().is_err());
}

#[test]
fn building_an_update_carries_only_changed_fields_stamped_with_its_clock() {
    crate::music();
    let hlc = Hlc { wall_ms: 42, counter: 0, node: NodeId::new() };
    let before = Project::new(UserId::new(), "Demo", Some("same"), Timestamp(1)).expect("valid");
    let after =
        before.patched(&ProjectPatch { name: Some("Renamed".into()), ..Default::default() }).expect("valid");
    let op = SyncOperation::new(
        after.entity_ref(),
        OperationKind::Update,
        changed_fields(&before, &after),
        hlc,
        7,
        vec![],
        Timestamp(2),
    );
    assert_eq!(op.changed_fields.len(), 1);
    assert_eq!(op.changed_fields.get("name"), Some(&FieldChange { value: Value::from("Renamed"), hlc }));
    assert_eq!((op.base_version, op.status, op.attempts), (7, OperationStatus::Pending, 0));
    assert_eq!(op.priority, Project::ENTITY_TYPE.default_priority(OperationKind::Update));
}

#[test]
fn building_a_create_carries_every_field_but_the_id() {
    crate::music();
    let p = Project::new(UserId::new(), "Demo", None, Timestamp(1)).expect("valid");
    let hlc = Hlc { wall_ms: 1, counter: 0, node: NodeId::new() };
    let op =
        SyncOperation::new(p.entity_ref(), OperationKind::Create, p.fields(), hlc, 0, vec![], Timestamp(1));
    let names: Vec<&str> = op.changed_fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["created_at", "description", "name", "owner_id"]);
}
