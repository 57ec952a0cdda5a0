//! Fields renamed by an upgrade ([`Rename`]): what this device stored under the old name is
//! moved to the new one when the store opens. The app's own migration renames the column;
//! this moves what the engine keeps by field name beside it: the queued operations' fields and
//! readings, the rows' readings, the pulled states of rows waiting for their parent, and the
//! conflicts recorded. So an operation queued before the upgrade is sent under the name the
//! server now declares, and a conflict recorded before it can still be resolved.
//!
//! Runs once per set of renames (noted in `local_settings`), in one transaction; moving is
//! idempotent, so a pass cut short runs again whole at the next open.

use super::{
    rows::{from_json, to_json},
    schema::{local_settings, pending_operations, sync_conflicts, sync_deferred},
};
use diesel::{prelude::*, sql_query, sql_types::Text, SqliteConnection};
use std::collections::BTreeMap;
use trackflow_db::error::StoreResult;
use trackflow_domain::{
    entities::{EntityType, Registry, Rename},
    protocol::EntityState,
    serde_json::Value,
};

/// The `local_settings` key naming the renames last moved.
const MOVED: &str = "renames_moved";

/// The installed registry's renames, as text: what decides whether to move anything.
fn renames() -> String {
    let mut text = String::new();
    for entity_type in Registry::global().types() {
        for Rename { from, to, since } in entity_type.renamed() {
            text.push_str(&format!("{entity_type}.{from}>{to}@{since};"));
        }
    }
    text
}

/// `text`, a JSON object by field name, with the fields `entity_type` renamed under their new
/// names; `None` if it names none of them.
fn moved<V>(table: &'static str, entity_type: EntityType, text: &str) -> StoreResult<Option<String>>
where
    V: serde::de::DeserializeOwned + serde::Serialize,
{
    let mut map: BTreeMap<String, V> = from_json(table, text)?;
    if entity_type.to_current(&mut map) {
        return Ok(Some(to_json(table, &map)?));
    }
    Ok(None)
}

/// A `LIKE` pattern matching JSON text that may name `field` as a key.
fn naming(field: &str) -> String {
    format!("%\"{field}\"%")
}

/// Moves what is stored under fields renamed since the last open. Returns how many stored
/// items (operations, rows, waiting states) changed.
pub(crate) fn move_renamed_fields(conn: &mut SqliteConnection) -> StoreResult<u64> {
    use local_settings::dsl::{key, value};
    let current = renames();
    conn.immediate_transaction(|conn| {
        let last: Option<String> = local_settings::table.find(MOVED).select(value).first(conn).optional()?;
        if last.as_deref().unwrap_or_default() == current {
            return Ok(0);
        }
        let mut changed = 0;
        for &entity_type in Registry::global().types() {
            for rename in entity_type.renamed() {
                changed += move_outbox(conn, entity_type, rename.from)?;
                changed += move_row_readings(conn, entity_type, rename.from)?;
                changed += move_waiting(conn, entity_type, rename.from)?;
                changed += move_conflicts(conn, entity_type, rename.from)?;
            }
        }
        diesel::replace_into(local_settings::table)
            .values((key.eq(MOVED), value.eq(&current)))
            .execute(conn)?;
        if changed > 0 {
            tracing::info!(changed, "moved what was stored under renamed fields");
        }
        Ok(changed)
    })
}

/// The queued operations on `entity_type` naming `from`.
fn move_outbox(conn: &mut SqliteConnection, entity_type: EntityType, from: &str) -> StoreResult<u64> {
    use pending_operations::dsl as op;
    const TABLE: &str = "pending_operations";
    let pattern = naming(from);
    let naming_it: Vec<(i32, String, String)> = pending_operations::table
        .filter(op::entity_type.eq(entity_type.as_str()))
        .filter(op::changed_fields.like(&pattern).or(op::field_hlc.like(&pattern)))
        .select((op::seq, op::changed_fields, op::field_hlc))
        .load(conn)?;
    let mut changed = 0;
    for (seq, fields, readings) in naming_it {
        let fields = moved::<Value>(TABLE, entity_type, &fields)?.unwrap_or(fields);
        let readings = moved::<Value>(TABLE, entity_type, &readings)?.unwrap_or(readings);
        diesel::update(pending_operations::table.find(seq))
            .set((op::changed_fields.eq(fields), op::field_hlc.eq(readings)))
            .execute(conn)?;
        changed += 1;
    }
    Ok(changed)
}

/// The rows of `entity_type` with a reading of their own under `from` (most rows keep one
/// reading for all fields, under `"*"`, and have none).
fn move_row_readings(conn: &mut SqliteConnection, entity_type: EntityType, from: &str) -> StoreResult<u64> {
    #[derive(QueryableByName)]
    struct Readings {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        field_hlc: String,
    }
    let table = entity_type.table();
    let naming_it: Vec<Readings> =
        sql_query(format!("SELECT id, field_hlc FROM {table} WHERE field_hlc LIKE ?"))
            .bind::<Text, _>(naming(from))
            .load(conn)?;
    let mut changed = 0;
    for row in naming_it {
        if let Some(readings) = moved::<Value>(table, entity_type, &row.field_hlc)? {
            sql_query(format!("UPDATE {table} SET field_hlc = ? WHERE id = ?"))
                .bind::<Text, _>(readings)
                .bind::<Text, _>(row.id)
                .execute(conn)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// The pulled states of rows of `entity_type` waiting for their parent that name `from`.
fn move_waiting(conn: &mut SqliteConnection, entity_type: EntityType, from: &str) -> StoreResult<u64> {
    use sync_deferred::dsl as deferred;
    const TABLE: &str = "sync_deferred";
    let naming_it: Vec<(String, String)> = sync_deferred::table
        .filter(deferred::entity_type.eq(entity_type.as_str()))
        .filter(deferred::state.like(naming(from)))
        .select((deferred::entity_id, deferred::state))
        .load(conn)?;
    let mut changed = 0;
    for (id, text) in naming_it {
        let mut state: EntityState = from_json(TABLE, &text)?;
        if entity_type.row_to_current(&mut state.fields, &mut state.field_hlc) {
            diesel::update(sync_deferred::table.find((entity_type.as_str(), id)))
                .set(deferred::state.eq(to_json(TABLE, &state)?))
                .execute(conn)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// The conflicts recorded on rows of `entity_type` that name `from`: their two sides and the
/// list of fields that lost.
fn move_conflicts(conn: &mut SqliteConnection, entity_type: EntityType, from: &str) -> StoreResult<u64> {
    use sync_conflicts::dsl as conflict;
    const TABLE: &str = "sync_conflicts";
    let pattern = naming(from);
    let naming_it: Vec<(String, String, String, String)> = sync_conflicts::table
        .filter(conflict::entity_type.eq(entity_type.as_str()))
        .filter(
            conflict::local_fields
                .like(&pattern)
                .or(conflict::remote_fields.like(&pattern))
                .or(conflict::fields.like(&pattern)),
        )
        .select((conflict::id, conflict::local_fields, conflict::remote_fields, conflict::fields))
        .load(conn)?;
    let mut changed = 0;
    for (id, local, remote, fields) in naming_it {
        let local = moved::<Value>(TABLE, entity_type, &local)?.unwrap_or(local);
        let remote = moved::<Value>(TABLE, entity_type, &remote)?.unwrap_or(remote);
        let mut names: Vec<String> = from_json(TABLE, &fields)?;
        entity_type.names_to_current(&mut names);
        diesel::update(sync_conflicts::table.find(id))
            .set((
                conflict::local_fields.eq(local),
                conflict::remote_fields.eq(remote),
                conflict::fields.eq(to_json(TABLE, &names)?),
            ))
            .execute(conn)?;
        changed += 1;
    }
    Ok(changed)
}
