use serde_json::json;
use serde_json::Value;
use std::collections::BTreeMap;
use trackflow_domain::{protocol::*, Hlc, NodeId, SyncEntity};
use trackflow_music::Project;
use uuid::Uuid;

#[test]
fn pull_responses_read_back_what_they_write_and_name_what_is_missing() {
    crate::music();
    let hlc = Hlc { wall_ms: 1, counter: 2, node: NodeId::new() };
    let page = PullResponse::Changes {
        changes: vec![EntityState {
            entity_type: Project::ENTITY_TYPE,
            entity_id: Uuid::now_v7(),
            version: 7,
            deleted: false,
            fields: BTreeMap::from([("name".to_owned(), json!("Demo"))]),
            field_hlc: BTreeMap::from([("name".to_owned(), hlc)]),
            deleted_with: None,
        }],
        next_cursor: "c".into(),
        has_more: true,
    };
    for response in [page, PullResponse::Reset] {
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(serde_json::from_str::<PullResponse>(&text).unwrap(), response, "{text}");
    }
    let missing = serde_json::from_value::<PullResponse>(json!({"status": "changes", "changes": []}));
    assert!(missing.unwrap_err().to_string().contains("next_cursor"));
    assert!(serde_json::from_value::<PullResponse>(json!({"status": "gone"})).is_err());
}

type Readings = BTreeMap<String, Hlc>;

/// `field_hlc` as the wire carries it: a value of what [`readings_by_field`] reads.
fn readings(value: Value) -> Result<Readings, String> {
    let mut state = json!({
        "entity_type": "project", "entity_id": Uuid::nil(), "version": 1, "deleted": false,
        "fields": {},
    });
    state["field_hlc"] = value;
    serde_json::from_value::<EntityState>(state).map(|s| s.field_hlc).map_err(|e| e.to_string())
}

#[test]
fn field_readings_travel_grouped_and_both_forms_are_read() {
    crate::music();
    let node = NodeId::from_uuid(Uuid::from_u128(0xab));
    let (early, late) = (Hlc { wall_ms: 5, counter: 0, node }, Hlc { wall_ms: 9, counter: 1, node });
    let stamped = |pairs: &[(&str, Hlc)]| -> Readings {
        pairs.iter().map(|(field, hlc)| ((*field).to_owned(), *hlc)).collect()
    };
    let three = stamped(&[("name", late), ("description", early), ("owner_id", early)]);
    let (e, l) = (early.to_string(), late.to_string());

    // Written grouped: readings in clock order, each one's fields in name order.
    let mut state = EntityState {
        entity_type: Project::ENTITY_TYPE,
        entity_id: Uuid::nil(),
        version: 1,
        deleted: false,
        fields: BTreeMap::new(),
        field_hlc: three.clone(),
        deleted_with: None,
    };
    let written = serde_json::to_value(&state).unwrap();
    assert_eq!(written["field_hlc"], json!({ &e: ["description", "owner_id"], &l: ["name"] }));
    assert_eq!(written["field_hlc"].as_object().unwrap().keys().collect::<Vec<_>>(), [&e, &l]);
    assert_eq!(serde_json::from_value::<EntityState>(written).unwrap(), state);
    state.field_hlc.clear();
    assert_eq!(serde_json::to_value(&state).unwrap()["field_hlc"], json!({}));

    let cases: Vec<(&str, Value, Result<Readings, &str>)> = vec![
        ("grouped", json!({ &e: ["description", "owner_id"], &l: ["name"] }), Ok(three.clone())),
        ("per field", json!({"name": &l, "description": &e, "owner_id": &e}), Ok(three.clone())),
        ("mixed", json!({ &e: ["description", "owner_id"], "name": &l }), Ok(three)),
        ("empty", json!({}), Ok(BTreeMap::new())),
        ("a reading with no fields", json!({ &e: [] }), Ok(BTreeMap::new())),
        ("a field under two readings", json!({ &e: ["name"], &l: ["name"] }), Err("two clock readings")),
        ("a field twice", json!({ &e: ["name", "name"] }), Err("two clock readings")),
        ("a bad reading as key", json!({"yesterday": ["name"]}), Err("invalid hybrid logical clock")),
        ("a bad reading as value", json!({"name": "yesterday"}), Err("invalid hybrid logical clock")),
        ("a number", json!({"name": 5}), Err("a list of field names or a clock reading")),
        ("not an object", json!(["name"]), Err("clock readings")),
    ];
    for (case, value, expected) in cases {
        match (readings(value), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{case}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{case}: {got}"),
            (got, want) => panic!("{case}: got {got:?}, expected {want:?}"),
        }
    }
}
