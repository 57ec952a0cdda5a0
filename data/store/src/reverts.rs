//! Bringing a row back to the server's state after the server refused a write of it for good.
//!
//! A device must never keep showing what the server refused. Parking a refused operation lists
//! its row ([`mark`]); the next pull of the row's scope starts from the beginning ([`request`]),
//! so the server's state of the row comes down, and applying it takes that state whole
//! ([`Pending::take`]), whatever the clock readings of the local edits. Until then, a row the
//! server never accepted (a refused create) is hidden; it stays hidden if the server does not
//! hold it. The refused operation itself stays parked, to be retried or discarded: a retry that
//! the server accepts comes back down like any change.

use super::{feed::Changes, rows::parse, schema::sync_reverts, tables::TableSql};
use diesel::prelude::*;
use std::collections::HashSet;
use trackflow_db::error::StoreResult;
use trackflow_domain::{
    entities::Scope,
    protocol::PEOPLE_SCOPE,
    sync::{ChangeKind, ChangeOrigin},
    EntityRef, EntityType, OperationKind,
};

const TABLE: &str = "sync_reverts";

/// The scope a pull of `scope`'s rows asks for: a shared scope by its name, a user's own rows
/// in the people scope.
fn pull_scope(scope: Scope) -> String {
    match scope {
        Scope::Shared(_) => scope.to_string(),
        Scope::User(_) => PEOPLE_SCOPE.to_owned(),
    }
}

/// Lists `entity`'s row to be brought back to the server's state: an operation of `kind` on it
/// was refused for `reason`. A refused create hides the row meanwhile. An upload is no write of
/// the row (its entity's own operation waits behind it), so it lists nothing.
pub(crate) fn mark(
    conn: &mut SqliteConnection,
    entity: EntityRef,
    kind: OperationKind,
    reason: &str,
    report: &mut Changes,
) -> StoreResult<()> {
    if kind == OperationKind::Upload {
        return Ok(());
    }
    let Some(record) = super::records::find(conn, entity.entity_type, entity.id)? else {
        return Ok(());
    };
    let scope = pull_scope(record.entity.scope());
    let hide = kind == OperationKind::Create;
    TableSql::of(entity.entity_type).unpull(conn, &entity.id.to_string(), hide)?;
    if hide && !record.meta.deleted {
        // A refused create: what the server never held disappears here at once.
        report.entity(&record.entity, None, ChangeKind::Deleted, ChangeOrigin::Rollback);
        report.inside(conn, entity, ChangeKind::HiddenWithParent, ChangeOrigin::Rollback)?;
    }
    diesel::replace_into(sync_reverts::table)
        .values((
            sync_reverts::entity_type.eq(entity.entity_type.as_str()),
            sync_reverts::entity_id.eq(entity.id.to_string()),
            sync_reverts::scope.eq(&scope),
            sync_reverts::reason.eq(reason),
            sync_reverts::requested.eq(false),
        ))
        .execute(conn)?;
    tracing::info!(%entity, %scope, reason, "refused for good: the row goes back to the server's state");
    Ok(())
}

/// Whether the next pull of `scope` must start from the beginning because rows wait to be
/// brought back: if so, forgets the scope's cursor and head and counts the rows as asked for,
/// in one transaction, so that a pull failing midway still starts over next time.
pub(crate) fn request(conn: &mut SqliteConnection, scope: &str) -> StoreResult<bool> {
    use super::schema::sync_metadata;
    let waiting = sync_reverts::table
        .filter(sync_reverts::scope.eq(scope).and(sync_reverts::requested.eq(false)))
        .select(sync_reverts::entity_id);
    if !diesel::select(diesel::dsl::exists(waiting)).get_result::<bool>(conn)? {
        return Ok(false);
    }
    conn.immediate_transaction(|conn| {
        diesel::update(sync_metadata::table.find(scope))
            .set((sync_metadata::cursor.eq(None::<String>), sync_metadata::head.eq(None::<i64>)))
            .execute(conn)?;
        diesel::update(sync_reverts::table.filter(sync_reverts::scope.eq(scope)))
            .set(sync_reverts::requested.eq(true))
            .execute(conn)?;
        Ok(true)
    })
}

/// The rows waiting to be brought back, as a pull applies a page.
#[derive(Debug, Default)]
pub(crate) struct Pending(HashSet<EntityRef>);

impl Pending {
    /// Every listed row (a handful at most: refusals are rare).
    pub fn load(conn: &mut SqliteConnection) -> StoreResult<Self> {
        let rows: Vec<(String, String)> =
            sync_reverts::table.select((sync_reverts::entity_type, sync_reverts::entity_id)).load(conn)?;
        rows.into_iter()
            .map(|(entity_type, id)| {
                Ok(EntityRef::new(parse::<EntityType>(TABLE, &entity_type)?, parse(TABLE, &id)?))
            })
            .collect::<StoreResult<_>>()
            .map(Self)
    }

    /// Whether `entity` is listed; if so it is no longer, and the caller stores the server's
    /// state of it whole.
    pub fn take(&mut self, conn: &mut SqliteConnection, entity: EntityRef) -> StoreResult<bool> {
        if !self.0.remove(&entity) {
            return Ok(false);
        }
        diesel::delete(sync_reverts::table.find((entity.entity_type.as_str(), entity.id.to_string())))
            .execute(conn)?;
        Ok(true)
    }
}
