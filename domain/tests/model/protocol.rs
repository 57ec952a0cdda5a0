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
        unknown: Vec::new(),
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

#[test]
fn a_page_sorts_out_rows_of_types_this_build_does_not_know() {
    crate::music();
    let row = |entity_type: &str, version: i64| {
        json!({
            "entity_type": entity_type, "entity_id": Uuid::from_u128(version as u128), "version": version,
            "deleted": false, "fields": {"name": "Demo", "key": "D minor"},
            "field_hlc": {"1-0-00000000000000000000000000000007": ["key", "name"]},
        })
    };
    let page = json!({
        "status": "changes", "next_cursor": "c", "has_more": false,
        "changes": [row("project", 1), row("lyrics", 2), row("project", 3), row("lyrics", 4)],
    });
    let PullResponse::Changes { changes, unknown, .. } =
        serde_json::from_value::<PullResponse>(page).unwrap()
    else {
        panic!("a page of changes")
    };
    let known: Vec<(String, i64)> = changes.iter().map(|c| (c.entity_type.to_string(), c.version)).collect();
    assert_eq!(known, [("project".to_owned(), 1), ("project".to_owned(), 3)]);
    let kept: Vec<(String, i64)> = unknown.iter().map(|c| (c.entity_type.clone(), c.version)).collect();
    assert_eq!(kept, [("lyrics".to_owned(), 2), ("lyrics".to_owned(), 4)]);
    // Kept whole, every field and reading as sent, and a type once known resolves.
    assert_eq!(unknown[0].fields["key"], json!("D minor"));
    assert_eq!(unknown[0].field_hlc.len(), 2);
    let known = UnknownTypeState { entity_type: "project".into(), ..unknown[0].clone() };
    assert_eq!(known.resolve().map(|state| state.entity_type), Ok(Project::ENTITY_TYPE));
    assert!(unknown[0].clone().resolve().is_err());
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
