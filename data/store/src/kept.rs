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
    records::{find, save},
    rows::{from_json, to_json, Record},
    schema::{sync_deferred, sync_kept},
};
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use std::{borrow::Cow, collections::BTreeMap};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    entities::AnyEntity,
    ports::{ApplyPlan, ConflictPolicies},
    protocol::{EntityState, UnknownTypeState},
    EntityRef, EntityType, Timestamp,
};
use uuid::Uuid;

const TABLE: &str = "sync_kept";

/// Every type this build declares with its fields, as a short stable name (a SHA-256 prefix):
/// what decides what is kept. A kept row notes the declarations it was last held against.
fn declarations() -> String {
    let text: Vec<String> =
        EntityType::all().iter().map(|t| format!("{}({})", t.as_str(), t.fields().join(","))).collect();
    let digest = Sha256::digest(text.join(";").as_bytes());
    digest[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Takes the entries of `map` whose field `entity_type` does not declare out of it.
fn take_undeclared<V>(map: &mut BTreeMap<String, V>, entity_type: EntityType) -> BTreeMap<String, V> {
    let undeclared: Vec<String> = map.keys().filter(|f| !entity_type.declares(f)).cloned().collect();
    undeclared.into_iter().filter_map(|field| map.remove_entry(&field)).collect()
}

/// `state`, its renamed fields under their current names, split in two: what its type
/// declares, and (if anything) the undeclared fields with their readings, the row's version
/// and deletion, naming its type.
fn split(mut state: EntityState) -> (EntityState, Option<UnknownTypeState>) {
    let entity_type = state.entity_type;
    // From a server not yet upgraded past a rename: the old name is this build's new one.
    entity_type.row_to_current(&mut state.fields, &mut state.field_hlc);
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

/// What is kept of one row: the row whole (its type was unknown), or fields of it.
pub(crate) struct Kept {
    /// As the server sent it, naming its type.
    pub state: UnknownTypeState,
    /// The whole row, not some fields of a row the entity tables hold.
    pub whole: bool,
}

/// `changes` without the fields their types do not declare, and those fields, row by row. A
/// page whose fields are all declared (the rule) is not copied.
pub(crate) fn sort_out(changes: &[EntityState]) -> (Cow<'_, [EntityState]>, Vec<Kept>) {
    let undeclared = |c: &EntityState| {
        c.fields.keys().chain(c.field_hlc.keys()).any(|field| !c.entity_type.declares(field))
    };
    if !changes.iter().any(undeclared) {
        return (Cow::Borrowed(changes), Vec::new());
    }
    let mut declared = Vec::with_capacity(changes.len());
    let mut kept = Vec::new();
    for state in changes {
        let (state, undeclared) = split(state.clone());
        declared.push(state);
        kept.extend(undeclared.map(|state| Kept { state, whole: false }));
    }
    (Cow::Owned(declared), kept)
}

/// Keeps `rows` of a page of `scope` aside, each merged with what is kept of the same row
/// already.
pub(crate) fn keep(
    conn: &mut SqliteConnection,
    scope: &str,
    rows: impl IntoIterator<Item = Kept>,
) -> StoreResult<()> {
    let mut against = None;
    for Kept { state, whole } in rows {
        let against = against.get_or_insert_with(declarations);
        let key = (state.entity_type.as_str(), state.entity_id.to_string());
        let stored: Option<(bool, String)> =
            sync_kept::table.find(key).select((sync_kept::whole, sync_kept::state)).first(conn).optional()?;
        let (whole, state) = match stored {
            Some((was_whole, stored)) => {
                (whole || was_whole, merged(&from_json::<UnknownTypeState>(TABLE, &stored)?, &state))
            }
            None => (whole, state),
        };
        tracing::debug!(entity_type = %state.entity_type, entity = %state.entity_id, whole, "kept aside: not declared by this build");
        store(conn, &state, whole, against, Some(scope))?;
    }
    Ok(())
}

/// Writes one kept row, from a page of `scope` (`None`: the scope it was kept from stays).
fn store(
    conn: &mut SqliteConnection,
    state: &UnknownTypeState,
    whole: bool,
    against: &str,
    scope: Option<&str>,
) -> StoreResult<()> {
    let text = to_json(TABLE, state)?;
    let written = (sync_kept::whole.eq(whole), sync_kept::state.eq(&text), sync_kept::against.eq(against));
    let insert = diesel::insert_into(sync_kept::table).values((
        sync_kept::entity_type.eq(&state.entity_type),
        sync_kept::entity_id.eq(state.entity_id.to_string()),
        written,
        sync_kept::scope.eq(scope),
    ));
    let on_conflict = insert.on_conflict((sync_kept::entity_type, sync_kept::entity_id)).do_update();
    match scope {
        Some(scope) => on_conflict.set((written, sync_kept::scope.eq(scope))).execute(conn)?,
        None => on_conflict.set(written).execute(conn)?,
    };
    Ok(())
}

/// Forgets what was kept from pages of `scope`: its access is lost.
pub(crate) fn forget(conn: &mut SqliteConnection, scope: &str) -> StoreResult<usize> {
    Ok(diesel::delete(sync_kept::table.filter(sync_kept::scope.eq(scope))).execute(conn)?)
}

/// Notes that the kept row of `entity_type` `id` was held against the declarations `against`
/// and none of them lets it in.
fn held_against(conn: &mut SqliteConnection, entity_type: &str, id: Uuid, against: &str) -> StoreResult<()> {
    diesel::update(sync_kept::table.find((entity_type, id.to_string())))
        .set(sync_kept::against.eq(against))
        .execute(conn)?;
    Ok(())
}

/// Lets in what is kept aside that this build's types now declare (after an upgrade), in one
/// transaction, looking only at rows kept against other declarations:
/// - a row kept whole whose type is now known is applied as a pulled row (inserted, deferred
///   until what it lives inside arrives, or merged into a row this device holds);
/// - undeclared fields now declared merge into their row where their readings are later than
///   the row's, or into its pulled state still waiting for its parent; with neither, nothing
///   holds them and they are dropped (a pull of the row brings them whole).
///
/// What is still not declared, or not valid for its type, stays kept. Returns how many rows took
/// something in.
pub(crate) fn let_in_declared(conn: &mut SqliteConnection, now: Timestamp) -> StoreResult<u64> {
    conn.immediate_transaction(|conn| {
        let against = declarations();
        let elsewhere = sync_kept::against.lt(&against).or(sync_kept::against.gt(&against));
        let kept: Vec<(bool, String)> =
            sync_kept::table.filter(elsewhere).select((sync_kept::whole, sync_kept::state)).load(conn)?;
        let mut whole_rows = Vec::new();
        let mut taken = 0;
        for (whole, text) in kept {
            let state = from_json::<UnknownTypeState>(TABLE, &text)?;
            let (declared, still) = match state.resolve() {
                Ok(state) => split(state),
                Err(state) => {
                    held_against(conn, &state.entity_type, state.entity_id, &against)?;
                    continue;
                }
            };
            let entity = EntityRef::new(declared.entity_type, declared.entity_id);
            if declared.fields.is_empty() && declared.field_hlc.is_empty() {
                // Nothing of it is declared here either.
                held_against(conn, entity.entity_type.as_str(), entity.id, &against)?;
                continue;
            }
            let taken_in = if whole {
                let valid = declared.deleted
                    || AnyEntity::from_fields(entity.entity_type, entity.id, &declared.fields).is_ok();
                if valid {
                    whole_rows.push(declared);
                }
                valid
            } else if let Some(record) = find(conn, entity.entity_type, entity.id)? {
                merge_fields(conn, record, &declared)?
            } else {
                into_deferred(conn, &declared)?;
                true
            };
            if !taken_in {
                tracing::warn!(%entity, "a kept row is not valid for its declared type; it stays kept");
                store(conn, &from_json::<UnknownTypeState>(TABLE, &text)?, whole, &against, None)?;
                continue;
            }
            taken += 1;
            match still {
                Some(still) => store(conn, &still, false, &against, None)?,
                None => {
                    let key = (entity.entity_type.as_str(), entity.id.to_string());
                    diesel::delete(sync_kept::table.find(key)).execute(conn)?;
                }
            }
        }
        if !whole_rows.is_empty() {
            // Rows of a type this device did not know: the plan orders them, and the policy
            // meets a local row only if an earlier build of the program held it.
            let plan = ApplyPlan::new(EntityType::all().to_vec(), ConflictPolicies::default())
                .map_err(|e| StoreError::corrupt(TABLE, e))?;
            apply_rows(conn, &whole_rows, &plan, now, &mut Changes::unwanted())?;
        }
        Ok(taken)
    })
}

/// Merges `fields`, now declared, into the pulled state of its row still waiting for its parent
/// (`sync_deferred`), if there is one; otherwise nothing holds them and they are dropped.
fn into_deferred(conn: &mut SqliteConnection, fields: &EntityState) -> StoreResult<()> {
    let key = (fields.entity_type.as_str(), fields.entity_id.to_string());
    let waiting: Option<String> =
        sync_deferred::table.find(key.clone()).select(sync_deferred::state).first(conn).optional()?;
    let Some(waiting) = waiting else {
        tracing::debug!(entity = %EntityRef::new(fields.entity_type, fields.entity_id), "kept fields of a row this device does not hold: dropped");
        return Ok(());
    };
    let waiting: EntityState = from_json("sync_deferred", &waiting)?;
    let (earlier, later) =
        if fields.version <= waiting.version { (fields, &waiting) } else { (&waiting, fields) };
    let state = merged(earlier, later);
    diesel::update(sync_deferred::table.find(key))
        .set(sync_deferred::state.eq(to_json("sync_deferred", &state)?))
        .execute(conn)?;
    Ok(())
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
