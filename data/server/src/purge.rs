//! Purging: history older than the retention horizon is forgotten, so the database grows with
//! what exists, not with every change ever made.
//!
//! - A tombstone at or below the horizon keeps its row (id, type, scope, version, why it was
//!   deleted) and loses its fields and clock readings (but a scope root's: see below). The row is what makes a write sent
//!   again long after still meet the delete (delete wins), and what tells a client pulling
//!   from the start, after a reset, that the entity is gone.
//! - Dedupe records at or below the horizon are dropped. A mutation sent again after that is
//!   merged by its clock readings like any other write: it changes nothing that a later write
//!   changed, and a delete still wins. Its answer is then `applied` or `conflict` instead of
//!   `duplicate`.
//! - `purged_through` moves to the horizon: cursors below it are answered with reset.
//!
//! Both scans (tombstones, dedupe records) read their whole table: an index on the records'
//! version would cost every push one more b-tree insert per mutation, for a purge that runs
//! once an hour.

use super::{
    locks,
    rows::meta,
    schema::{applied_mutations, entities, server_meta, version_marks},
};
use crate::connection::{on_each_backend, ServerConnection};
use diesel::prelude::*;
use trackflow_db::error::StoreError;
use trackflow_domain::{
    ports::{Purged, Retention},
    EntityType, Timestamp,
};

/// Purges at `now` what `retention` lets go. Call inside a write transaction.
pub(super) fn purge(
    conn: &mut ServerConnection,
    now: Timestamp,
    retention: Retention,
) -> Result<Purged, StoreError> {
    // Purges take turns on the meta row (pushes no longer touch it on PostgreSQL).
    diesel::update(server_meta::table.find(1))
        .set(server_meta::purged_through.eq(server_meta::purged_through))
        .execute(conn)?;
    let newest = locks::newest(conn)?;
    let at = now.as_millis();
    on_each_backend!(conn, |c| diesel::insert_into(version_marks::table)
        .values((version_marks::at_ms.eq(at), version_marks::version.eq(newest)))
        .on_conflict_do_nothing()
        .execute(c))?;
    let horizon = match retention {
        Retention::Versions(keep) => newest - keep.max(0),
        Retention::Age(age) => {
            let before = at.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            version_marks::table
                .filter(version_marks::at_ms.le(before))
                .select(diesel::dsl::max(version_marks::version))
                .get_result::<Option<i64>>(conn)?
                .unwrap_or(0)
        }
    };
    let purged_through = meta(conn)?.purged_through;
    if horizon <= purged_through {
        return Ok(Purged { horizon: purged_through, ..Purged::default() });
    }
    // Scope roots (projects) keep their fields: their collaborator records stay alive after a
    // delete (the members must receive it), and a device pulling from the start stores those
    // only under a root it can store.
    let roots: Vec<&str> =
        EntityType::all().iter().filter(|t| t.is_scope_root()).map(|t| t.as_str()).collect();
    let tombstones = diesel::update(
        entities::table
            .filter(entities::deleted.eq(true))
            .filter(entities::version.le(horizon))
            .filter(entities::fields.ne("{}"))
            .filter(entities::entity_type.ne_all(roots)),
    )
    .set((entities::fields.eq("{}"), entities::field_hlc.eq("{}")))
    .execute(conn)?;
    let records = diesel::delete(applied_mutations::table.filter(applied_mutations::version.le(horizon)))
        .execute(conn)?;
    diesel::delete(version_marks::table.filter(version_marks::version.lt(horizon))).execute(conn)?;
    diesel::update(server_meta::table.find(1)).set(server_meta::purged_through.eq(horizon)).execute(conn)?;
    Ok(Purged { horizon, tombstones: tombstones as u64, records: records as u64 })
}
