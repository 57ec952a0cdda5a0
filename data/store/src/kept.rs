//! What pulled rows carry that this build's types do not declare, the schema of a newer server:
//! rows of a type it does not know, whole, and the undeclared fields of rows it knows, each
//! field with its clock reading. They are kept aside as the server sent them (`sync_kept`),
//! merged with later states of the same row the way the server merges writes, and let into the
//! entity tables when an upgrade declares them, without pulling again (docs/sync-protocol.md,
//! "Schema evolution"). The device never writes what it keeps: its writes name only the fields
//! they change, so a field it cannot read is never overwritten by its pushes.

use super::{
    downstream::{apply_rows, merged},
    feed::Changes,
    records::{find, save, set_setting, setting},
    rows::{from_json, to_json, Record},
    schema::sync_kept,
};
use diesel::prelude::*;
use std::{borrow::Cow, collections::BTreeMap};
use trackflow_db::error::StoreResult;
use trackflow_domain::{
    entities::AnyEntity,
    ports::{ApplyPlan, ConflictPolicies},
    protocol::{EntityState, UnknownTypeState},
    EntityType, Timestamp,
};

const TABLE: &str = "sync_kept";

/// The `local_settings` key of the declarations the kept rows were last sorted against: kept
/// rows are looked at again only when the program's declarations differ from it.
const KEPT_AGAINST: &str = "kept_against";

/// Every type this build declares with its fields, as one text: what decides what is kept.
fn declarations() -> String {
    EntityType::all()
        .iter()
        .map(|t| format!("{}({})", t.as_str(), t.fields().join(",")))
        .collect::<Vec<_>>()
        .join(";")
}

fn declares(entity_type: EntityType, field: &str) -> bool {
    entity_type.fields().contains(&field)
}

/// `state` split in two: what its type declares, and (if anything) the undeclared fields with
/// their readings, the row's version and deletion, naming its type.
fn split(mut state: EntityState) -> (EntityState, Option<UnknownTypeState>) {
    let entity_type = state.entity_type;
    let fields = take_undeclared(&mut state.fields, entity_type);
    let field_hlc = take_undeclared(&mut state.field_hlc, entity_type);
    if fields.is_empty() && field_hlc.is_empty() {
        return (state, None);
    }
    let undeclared = UnknownTypeState {
        entity_type: entity_type.as_str().to_owned(),
        entity_id: state.entity_id,
        version: state.version,
        deleted: state.deleted,
        fields,
        field_hlc,
        deleted_with: state.deleted_with,
    };
    (state, Some(undeclared))
}

/// Takes the entries of `map` whose field `entity_type` does not declare out of it.
fn take_undeclared<V>(map: &mut BTreeMap<String, V>, entity_type: EntityType) -> BTreeMap<String, V> {
    let undeclared: Vec<String> = map.keys().filter(|f| !declares(entity_type, f)).cloned().collect();
    undeclared.into_iter().filter_map(|field| map.remove_entry(&field)).collect()
}

/// `changes` without the fields their types do not declare, and those fields, row by row. A
/// page whose fields are all declared (the rule) is not copied.
pub(crate) fn sort_out(changes: &[EntityState]) -> (Cow<'_, [EntityState]>, Vec<UnknownTypeState>) {
    let undeclared = |c: &EntityState| {
        c.fields.keys().chain(c.field_hlc.keys()).any(|field| !declares(c.entity_type, field))
    };
    if !changes.iter().any(undeclared) {
        return (Cow::Borrowed(changes), Vec::new());
    }
    let mut declared = Vec::with_capacity(changes.len());
    let mut kept = Vec::new();
    for state in changes {
        let (state, undeclared) = split(state.clone());
        declared.push(state);
        kept.extend(undeclared);
    }
    (Cow::Owned(declared), kept)
}

/// Keeps `rows` aside, each merged with what is kept of the same row already.
pub(crate) fn keep(
    conn: &mut SqliteConnection,
    rows: impl IntoIterator<Item = UnknownTypeState>,
) -> StoreResult<()> {
    let mut any = false;
    for row in rows {
        any = true;
        let key = (row.entity_type.as_str(), row.entity_id.to_string());
        let stored: Option<String> =
            sync_kept::table.find(key).select(sync_kept::state).first(conn).optional()?;
        let row = match stored {
            Some(stored) => merged(&from_json::<UnknownTypeState>(TABLE, &stored)?, &row),
            None => row,
        };
        tracing::debug!(entity_type = %row.entity_type, entity = %row.entity_id, "kept aside: not declared by this build");
        diesel::replace_into(sync_kept::table)
            .values((
                sync_kept::entity_type.eq(&row.entity_type),
                sync_kept::entity_id.eq(row.entity_id.to_string()),
                sync_kept::state.eq(to_json(TABLE, &row)?),
            ))
            .execute(conn)?;
    }
    if any {
        set_setting(conn, KEPT_AGAINST, &declarations())?;
    }
    Ok(())
}

/// Lets in what is kept aside that this build's types now declare (after an upgrade), in one
/// transaction: undeclared fields of a stored row merge into it (a field's later reading wins),
/// and rows of a type now known are applied as pulled rows. What is still not declared, or no
/// longer valid for its type, stays kept. Looks only when the declarations changed since rows
/// were kept. Returns how many rows took something in.
pub(crate) fn let_in_declared(conn: &mut SqliteConnection, now: Timestamp) -> StoreResult<u64> {
    conn.immediate_transaction(|conn| {
        let any: bool = diesel::select(diesel::dsl::exists(sync_kept::table.select(sync_kept::entity_id)))
            .get_result(conn)?;
        let declared = declarations();
        if !any || setting::<String>(conn, KEPT_AGAINST)?.as_deref() == Some(declared.as_str()) {
            return Ok(0);
        }
        let kept: Vec<String> = sync_kept::table.select(sync_kept::state).load(conn)?;
        let mut rows = Vec::new();
        let mut taken = 0;
        for text in kept {
            let Ok(state) = from_json::<UnknownTypeState>(TABLE, &text)?.resolve() else { continue };
            let (now_declared, still) = split(state);
            if now_declared.fields.is_empty() && now_declared.field_hlc.is_empty() {
                continue;
            }
            let valid = match find(conn, now_declared.entity_type, now_declared.entity_id)? {
                Some(record) => merge_fields(conn, record, &now_declared)?,
                None => {
                    let valid = now_declared.deleted
                        || AnyEntity::from_fields(now_declared.entity_type, now_declared.entity_id, &now_declared.fields)
                            .is_ok();
                    if valid {
                        rows.push(now_declared.clone());
                    }
                    valid
                }
            };
            if !valid {
                tracing::warn!(entity_type = %now_declared.entity_type, entity = %now_declared.entity_id, "a kept row is not valid for its declared type; it stays kept");
                continue;
            }
            taken += 1;
            let key = sync_kept::table.find((now_declared.entity_type.as_str(), now_declared.entity_id.to_string()));
            match still {
                Some(still) => {
                    diesel::update(key).set(sync_kept::state.eq(to_json(TABLE, &still)?)).execute(conn)?;
                }
                None => {
                    diesel::delete(key).execute(conn)?;
                }
            }
        }
        if !rows.is_empty() {
            // No local row of these exists, so no conflict policy applies: the plan only orders.
            let plan = ApplyPlan::new(EntityType::all().to_vec(), ConflictPolicies::default())
                .expect("every registered type once");
            apply_rows(conn, &rows, &plan, now, &mut Changes::unwanted())?;
        }
        set_setting(conn, KEPT_AGAINST, &declared)?;
        Ok(taken)
    })
}

/// Merges the fields of `state` into the stored `record` where their readings are later than
/// the record's. Returns false, writing nothing, if the result is not valid for the type.
fn merge_fields(
    conn: &mut SqliteConnection,
    mut record: Record<AnyEntity>,
    state: &EntityState,
) -> StoreResult<bool> {
    let mut fields = record.entity.fields();
    for (field, value) in &state.fields {
        let reading = state.field_hlc.get(field);
        if reading > record.meta.field_hlc.get(field) {
            fields.insert(field.clone(), value.clone());
            if let Some(reading) = reading {
                record.meta.field_hlc.insert(field.clone(), *reading);
            }
        }
    }
    match AnyEntity::from_fields(state.entity_type, state.entity_id, &fields) {
        Ok(entity) => {
            record.entity = entity;
            save(conn, &record)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}
