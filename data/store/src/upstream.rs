//! Outbox writes of upstream sync: applying a coalescing plan, marking operations sent, and
//! settling what the server answered. Each is one `BEGIN IMMEDIATE` transaction; whenever
//! operations leave the outbox, the rows they changed get their version, count of queued
//! operations and `pending_create` brought up to date in the same transaction.

use super::{
    feed::Changes,
    outbox::OperationRow,
    records::{
        find, find_visible, high_water, raise_high_water, raise_received, received, save, set_high_water,
        WriteClock,
    },
    rows::parse,
    schema::pending_operations::dsl,
    tables::TableSql,
};
use diesel::dsl::max;
use diesel::prelude::*;
use diesel::{sql_types::Bool, sqlite::Sqlite};
use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    entities::Registry,
    protocol::CLOCK_SKEW,
    sync::{upstream::cascade, ChangeKind, ChangeOrigin, CoalescePlan, Settlement},
    EntityRef, Hlc, NodeId, OperationId, OperationKind, OperationStatus, QueuedOperation, SyncOperation,
    Timestamp,
};

const TABLE: &str = "pending_operations";

/// Most ids bound in one statement: SQLite allows 32,766 variables; lists longer than this are
/// handled in chunks inside the caller's transaction.
const CHUNK: usize = 500;

fn id_texts(ids: &[OperationId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// The outbox keys (`seq`) of operations listed through one store, by operation id.
///
/// The outbox has no index on `id`: every local write would pay for one. So a statement naming
/// operations by id scans the whole outbox, and the upstream processor names a batch of them
/// twice per request (marking it sent, settling it). It lists the queue first, so the keys are
/// known: statements find those rows by key, and still require the id to match, so a key gone
/// stale (its operation removed, the key reused by a later one) matches nothing. Operations
/// whose key is unknown are found by id, as before.
#[derive(Debug, Default)]
pub(crate) struct Keys(Mutex<HashMap<OperationId, i32>>);

impl Keys {
    /// Records listed keys; a listing of the whole outbox replaces what was known.
    pub(crate) fn remember(&self, listed: impl Iterator<Item = (OperationId, i32)>, whole: bool) {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if whole {
            keys.clear();
        }
        keys.extend(listed);
    }

    /// `ids` split into those with a known key (with it) and the rest.
    fn split(&self, ids: &[OperationId]) -> (Vec<(i32, String)>, Vec<OperationId>) {
        let keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = Vec::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for id in ids {
            match keys.get(id) {
                Some(seq) => known.push((*seq, id.to_string())),
                None => unknown.push(*id),
            }
        }
        (known, unknown)
    }
}

/// The queued operations with these ids, in queue order.
fn load(conn: &mut SqliteConnection, ids: &[OperationId]) -> StoreResult<Vec<SyncOperation>> {
    let mut ops = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<OperationRow> = dsl::pending_operations
            .filter(dsl::id.eq_any(id_texts(chunk)))
            .select(OperationRow::as_select())
            .load(conn)?;
        ops.extend(rows);
    }
    ops.sort_by_key(|row| row.seq);
    ops.into_iter().map(OperationRow::decode).collect()
}

/// What removing an operation needs to know of it.
struct Removed {
    id: OperationId,
    /// The row's key, when it was read: statements by key find the row without scanning the
    /// outbox (which has no index on `id`, see the migration).
    seq: Option<i32>,
    entity: EntityRef,
    kind: OperationKind,
    hlc: Hlc,
}

impl From<&SyncOperation> for Removed {
    fn from(op: &SyncOperation) -> Self {
        Self { id: op.id, seq: None, entity: op.entity, kind: op.kind, hlc: op.hlc }
    }
}

/// A condition on outbox rows, built for one chunk of ids.
type Filter = Box<dyn BoxableExpression<dsl::pending_operations, Sqlite, SqlType = Bool>>;

/// The rows `select` reads for the queued operations with these ids, in chunks: those whose key
/// is known found by key (and id, see [`Keys`]), the rest by id.
fn by_ids<T>(
    conn: &mut SqliteConnection,
    known: &Keys,
    ids: &[OperationId],
    mut select: impl FnMut(&mut SqliteConnection, Filter) -> QueryResult<Vec<T>>,
) -> StoreResult<Vec<T>> {
    let (by_key, by_id) = known.split(ids);
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in by_key.chunks(CHUNK) {
        let (seqs, ids): (Vec<i32>, Vec<String>) = chunk.iter().cloned().unzip();
        rows.extend(select(conn, Box::new(dsl::seq.eq_any(seqs).and(dsl::id.eq_any(ids))))?);
    }
    for chunk in by_id.chunks(CHUNK) {
        rows.extend(select(conn, Box::new(dsl::id.eq_any(id_texts(chunk))))?);
    }
    Ok(rows)
}

/// The queued operations with these ids, whole, in queue order.
pub(crate) fn load_known(
    conn: &mut SqliteConnection,
    known: &Keys,
    ids: &[OperationId],
) -> StoreResult<Vec<SyncOperation>> {
    let mut rows = by_ids(conn, known, ids, |conn, filter| {
        dsl::pending_operations.filter(filter).select(OperationRow::as_select()).load(conn)
    })?;
    rows.sort_unstable_by_key(|row| row.seq);
    rows.into_iter().map(OperationRow::decode).collect()
}

/// The queued operations with these ids, reading only what [`remove`] needs (no field JSON).
fn load_keys(
    conn: &mut SqliteConnection,
    known: &Keys,
    ids: &[OperationId],
) -> StoreResult<HashMap<OperationId, Removed>> {
    type KeyRow = (i32, String, String, String, String, String);
    let rows = by_ids(conn, known, ids, |conn, filter| {
        dsl::pending_operations
            .filter(filter)
            .select((dsl::seq, dsl::id, dsl::entity_type, dsl::entity_id, dsl::kind, dsl::hlc))
            .load::<KeyRow>(conn)
    })?;
    let mut keys = HashMap::with_capacity(rows.len());
    for (seq, id, entity_type, entity_id, kind, hlc) in rows {
        let id: OperationId = parse(TABLE, &id)?;
        let entity = EntityRef::new(parse(TABLE, &entity_type)?, parse(TABLE, &entity_id)?);
        let (kind, hlc) = (parse(TABLE, &kind)?, parse(TABLE, &hlc)?);
        keys.insert(id, Removed { id, seq: Some(seq), entity, kind, hlc });
    }
    Ok(keys)
}

/// The whole queue, in queue order.
fn load_all(conn: &mut SqliteConnection) -> StoreResult<Vec<SyncOperation>> {
    dsl::pending_operations
        .order(dsl::seq)
        .select(OperationRow::as_select())
        .load(conn)?
        .into_iter()
        .map(OperationRow::decode)
        .collect()
}

/// Removes `removed` from the outbox (storing the clock floor first, see
/// [`raise_high_water`]) and brings the rows they changed up to date: `versions` holds the
/// server version of entities the server acknowledged.
fn remove(
    conn: &mut SqliteConnection,
    removed: &[Removed],
    versions: &HashMap<EntityRef, i64>,
) -> StoreResult<()> {
    let Some(newest) = removed.iter().map(|op| op.hlc).max() else {
        return Ok(());
    };
    raise_high_water(conn, newest)?;
    let (by_key, by_id): (Vec<&Removed>, Vec<&Removed>) = removed.iter().partition(|op| op.seq.is_some());
    let seqs: Vec<i32> = by_key.iter().filter_map(|op| op.seq).collect();
    for chunk in seqs.chunks(CHUNK) {
        diesel::delete(dsl::pending_operations.filter(dsl::seq.eq_any(chunk))).execute(conn)?;
    }
    let unkeyed: Vec<OperationId> = by_id.iter().map(|op| op.id).collect();
    for chunk in unkeyed.chunks(CHUNK) {
        diesel::delete(dsl::pending_operations.filter(dsl::id.eq_any(id_texts(chunk)))).execute(conn)?;
    }

    // Each row counts its queued writes (`SyncMeta::queued`), so no search of the outbox tells
    // which still wait: the count goes down by the ones removed. An upload changes no field of
    // the row and is not counted (see `recount_queued`).
    let mut by_entity: HashMap<EntityRef, Vec<String>> = HashMap::new();
    for op in removed.iter().filter(|op| op.kind != OperationKind::Upload) {
        by_entity.entry(op.entity).or_default().push(op.id.to_string());
    }
    for (entity, ids) in by_entity {
        let version = versions.get(&entity).copied().unwrap_or(0);
        TableSql::of(entity.entity_type).settle(conn, &entity.id.to_string(), version, &ids)?;
    }
    Ok(())
}

/// The `local_settings` key by which a file asks for its counts of queued writes to be made
/// from the outbox (set by the migration that made `dirty` a count).
const RECOUNT_QUEUED: &str = "recount_queued";

/// Makes every row's count of queued writes from the outbox if the file asks for it: once,
/// after the migration that turned the `dirty` flag into that count, when the program's tables
/// are in place.
pub(crate) fn recount_queued_if_asked(conn: &mut SqliteConnection) -> StoreResult<()> {
    use super::schema::local_settings::dsl::{key, local_settings};
    conn.immediate_transaction(|conn| {
        let asked: i64 = local_settings.filter(key.eq(RECOUNT_QUEUED)).count().get_result(conn)?;
        if asked == 0 {
            return Ok(());
        }
        for entity_type in Registry::global().types() {
            TableSql::of(*entity_type).recount_queued(conn, entity_type.as_str())?;
        }
        diesel::delete(local_settings.filter(key.eq(RECOUNT_QUEUED))).execute(conn)?;
        Ok(())
    })
}

/// Applies `plan` unless an operation it names was sent or removed since the queue was read.
pub(crate) fn apply_coalescing(conn: &mut SqliteConnection, plan: &CoalescePlan) -> StoreResult<bool> {
    conn.immediate_transaction(|conn| {
        let named: Vec<OperationId> =
            plan.rewrite.iter().map(|op| op.id).chain(plan.remove.iter().copied()).collect();
        let current = load(conn, &named)?;
        let untouched = current.len() == named.len() && current.iter().all(SyncOperation::is_unsent);
        if !untouched {
            return Ok(false);
        }
        for op in &plan.rewrite {
            let row = OperationRow::encode(op)?;
            diesel::update(dsl::pending_operations.filter(dsl::id.eq(&row.id)))
                .set((
                    dsl::kind.eq(&row.kind),
                    dsl::changed_fields.eq(&row.changed_fields),
                    dsl::field_hlc.eq(&row.field_hlc),
                    dsl::hlc.eq(&row.hlc),
                    dsl::priority.eq(row.priority),
                    dsl::depends_on.eq(&row.depends_on),
                ))
                .execute(conn)?;
        }
        let removed: HashSet<OperationId> = plan.remove.iter().copied().collect();
        let removed: Vec<Removed> =
            current.iter().filter(|op| removed.contains(&op.id)).map(Removed::from).collect();
        remove(conn, &removed, &HashMap::new())?;
        Ok(true)
    })
}

/// Marks operations as going out in a request.
pub(crate) fn mark_sent(conn: &mut SqliteConnection, known: &Keys, ids: &[OperationId]) -> StoreResult<()> {
    let sent = (dsl::status.eq(OperationStatus::InFlight.as_str()), dsl::sent.eq(true));
    let (by_key, by_id) = known.split(ids);
    conn.immediate_transaction(|conn| {
        for chunk in by_key.chunks(CHUNK) {
            let (seqs, ids): (Vec<i32>, Vec<&String>) = chunk.iter().map(|(seq, id)| (*seq, id)).unzip();
            diesel::update(dsl::pending_operations.filter(dsl::seq.eq_any(seqs)).filter(dsl::id.eq_any(ids)))
                .set(sent)
                .execute(conn)?;
        }
        for chunk in by_id.chunks(CHUNK) {
            diesel::update(dsl::pending_operations.filter(dsl::id.eq_any(id_texts(chunk))))
                .set(sent)
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Records what became of sent operations. Settlements of operations no longer queued (a
/// concurrent discard) are ignored.
pub(crate) fn settle(
    conn: &mut SqliteConnection,
    known: &Keys,
    settlements: &[(OperationId, Settlement)],
    report: &mut Changes,
) -> StoreResult<()> {
    conn.immediate_transaction(|conn| {
        let ids: Vec<OperationId> = settlements.iter().map(|(id, _)| *id).collect();
        let mut ops = load_keys(conn, known, &ids)?;
        let mut removed = Vec::new();
        let mut versions: HashMap<EntityRef, i64> = HashMap::new();
        for (id, settlement) in settlements {
            let Some(op) = ops.remove(id) else { continue };
            // `load_keys` read every row's key.
            let target = dsl::pending_operations.filter(dsl::seq.eq(op.seq.unwrap_or_default()));
            let acknowledged = match settlement {
                Settlement::Applied { version } => Some(*version),
                Settlement::Conflict { server } => Some(server.version),
                Settlement::Failed { .. } | Settlement::Retry { .. } => None,
            };
            if let Some(version) = acknowledged {
                // The server holds this reading now (or, for a conflict, the ones it answered).
                raise_received(conn, op.hlc)?;
                if let Settlement::Conflict { server } = settlement {
                    if let Some(newest) = server.field_hlc.values().max() {
                        raise_received(conn, *newest)?;
                    }
                }
                let entry = versions.entry(op.entity).or_insert(version);
                *entry = (*entry).max(version);
                removed.push(op);
                continue;
            }
            match settlement {
                Settlement::Applied { .. } | Settlement::Conflict { .. } => {}
                Settlement::Failed { reason } => {
                    diesel::update(target)
                        .set((
                            dsl::status.eq(OperationStatus::Failed.as_str()),
                            dsl::next_attempt_at.eq(None::<i64>),
                            dsl::last_error.eq(reason),
                        ))
                        .execute(conn)?;
                    // Parked: the write will not reach the server as it is, so the row goes
                    // back to what the server holds.
                    super::reverts::mark(conn, op.entity, op.kind, reason, report)?;
                }
                Settlement::Retry { attempts, not_before, error } => {
                    diesel::update(target)
                        .set((
                            dsl::status.eq(OperationStatus::Pending.as_str()),
                            dsl::attempts.eq(i32::try_from(*attempts).unwrap_or(i32::MAX)),
                            dsl::next_attempt_at.eq(not_before.map(Timestamp::as_millis)),
                            dsl::last_error.eq(error),
                        ))
                        .execute(conn)?;
                }
            }
        }
        remove(conn, &removed, &versions)
    })
}

/// Returns in-flight operations to pending.
pub(crate) fn release_in_flight(conn: &mut SqliteConnection) -> StoreResult<u64> {
    let n =
        diesel::update(dsl::pending_operations.filter(dsl::status.eq(OperationStatus::InFlight.as_str())))
            .set(dsl::status.eq(OperationStatus::Pending.as_str()))
            .execute(conn)?;
    Ok(n as u64)
}

/// Sends failed operations again, from a fresh attempt count: `ids` (each must be failed), or
/// every failed operation.
pub(crate) fn retry_failed(conn: &mut SqliteConnection, ids: Option<&[OperationId]>) -> StoreResult<u64> {
    conn.immediate_transaction(|conn| {
        let failed: Vec<OperationId> = match ids {
            Some(ids) => {
                let ops = load(conn, ids)?;
                require_failed(ids, &ops)?;
                ids.to_vec()
            }
            None => load_all(conn)?
                .into_iter()
                .filter(|op| op.status == OperationStatus::Failed)
                .map(|op| op.id)
                .collect(),
        };
        for chunk in failed.chunks(CHUNK) {
            diesel::update(dsl::pending_operations.filter(dsl::id.eq_any(id_texts(chunk))))
                .set((
                    dsl::status.eq(OperationStatus::Pending.as_str()),
                    dsl::attempts.eq(0),
                    dsl::next_attempt_at.eq(None::<i64>),
                    dsl::last_error.eq(None::<String>),
                ))
                .execute(conn)?;
        }
        Ok(failed.len() as u64)
    })
}

/// Refuses unless every one of `ids` is queued (in `ops`) and failed.
fn require_failed(ids: &[OperationId], ops: &[SyncOperation]) -> StoreResult<()> {
    for id in ids {
        match ops.iter().find(|op| op.id == *id) {
            Some(op) if op.status == OperationStatus::Failed => {}
            Some(op) => {
                return Err(StoreError::Conflict(format!(
                    "operation {id} is {}, not failed: only failed operations can be retried or discarded",
                    op.status
                )))
            }
            None => return Err(StoreError::Conflict(format!("operation {id} is not queued"))),
        }
    }
    Ok(())
}

/// Drops failed operations and what goes with them ([`cascade`]): later operations on an
/// entity whose create is dropped, and everything created inside it.
pub(crate) fn discard_failed(
    conn: &mut SqliteConnection,
    ids: &[OperationId],
    report: &mut Changes,
) -> StoreResult<Vec<OperationId>> {
    conn.immediate_transaction(|conn| {
        let queue = load_all(conn)?;
        require_failed(ids, &queue)?;
        let dropped: HashSet<OperationId> = cascade(
            &queue.iter().map(QueuedOperation::from).collect::<Vec<_>>(),
            &ids.iter().copied().collect(),
        )
        .into_iter()
        .collect();
        let removed: Vec<Removed> =
            queue.iter().filter(|op| dropped.contains(&op.id)).map(Removed::from).collect();
        remove(conn, &removed, &HashMap::new())?;
        // A discarded create the server never acknowledged leaves no row behind (it was hidden,
        // or is a child of one that was). Should the server hold it after all (an answer lost),
        // the pull the refusal asked for brings it back.
        // Children first (their creates came later), so no row is left pointing at a removed
        // parent; a row something else still points at stays, hidden, as before.
        for op in queue.iter().rev().filter(|op| dropped.contains(&op.id) && op.kind == OperationKind::Create)
        {
            // Usually hidden already; shown if the server brought back what it lived inside.
            let shown =
                if report.wanted() { find_visible(conn, op.entity.entity_type, op.entity.id)? } else { None };
            match TableSql::of(op.entity.entity_type).drop_unacknowledged(conn, &op.entity.id.to_string()) {
                Err(StoreError::Database(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _,
                ))) => tracing::debug!(entity = %op.entity, "a discarded create's row is still referred to"),
                Ok(true) => {
                    if let Some(record) = shown {
                        report.entity(&record.entity, None, ChangeKind::Deleted, ChangeOrigin::Rollback);
                    }
                }
                other => {
                    other?;
                }
            }
        }
        Ok(removed.into_iter().map(|op| op.id).collect())
    })
}

/// How far ahead of the corrected clock a queued operation's reading may be before it is
/// stamped again. Well inside the server's tolerance (a minute by default), and well outside
/// the error of the clock correction (half a round trip).
pub(crate) const RESTAMP_LEAD_MS: i64 = 5_000;

/// Gives new clock readings to the waiting operations whose readings are too far ahead of the
/// corrected clock (stamped before the device knew its clock was fast), in queue order, all
/// later than every reading kept and every reading the server holds that the device knows of
/// (its writes followed them; see [`raise_received`]). The rows they
/// changed take the new readings too, where they still hold the old ones. Returns how many were
/// stamped again.
///
/// Only operations no server holds are stamped again: those never sent, and those whose last
/// push was refused whole for its clock ([`CLOCK_SKEW`]). One that went out and may have been
/// applied (its answer lost) keeps its content, since the server accepts readings up to its
/// lead (a minute by default), well past [`RESTAMP_LEAD_MS`]: sent again changed, it would be
/// refused as `id_reused`. Operations in flight or parked as failed keep theirs too, and the
/// new readings stay later than theirs.
pub(crate) fn restamp(conn: &mut SqliteConnection, clock: &WriteClock) -> StoreResult<u64> {
    let limit_ms = clock.now().as_millis().saturating_add(RESTAMP_LEAD_MS);
    let limit = Hlc {
        wall_ms: u64::try_from(limit_ms).unwrap_or(0),
        counter: u32::MAX,
        node: NodeId::from_uuid(uuid::Uuid::max()),
    };
    let bound = limit.to_string();
    clock.save_offset(conn)?;
    // Waiting, too far ahead, and held by no server: never sent, or last refused as a whole
    // for its clock (nothing of such a push is stored). One the server may hold keeps its
    // content: sent again changed, it would be refused as `id_reused`.
    let refused_for_clock = format!("{CLOCK_SKEW}:%");
    let ahead = dsl::pending_operations
        .filter(dsl::status.eq(OperationStatus::Pending.as_str()))
        .filter(dsl::hlc.gt(&bound))
        .filter(dsl::sent.eq(false).or(dsl::last_error.like(&refused_for_clock).assume_not_null()));
    // Asked before every round of sending: a read, unless there is something to do.
    if !diesel::select(diesel::dsl::exists(ahead)).get_result::<bool>(conn)? {
        return Ok(0);
    }
    conn.immediate_transaction(|conn| {
        let rows: Vec<OperationRow> = ahead.order(dsl::seq).select(OperationRow::as_select()).load(conn)?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Later than every reading kept: every other operation's, those in flight or failed
        // however far ahead (an operation on the same entity may be in flight with a reading
        // from before the device knew its clock was fast: one re-stamped below it would lose
        // to it on the server although written after it), and, up to the limit, the stored
        // floor (which may hold pulled readings).
        let kept: Option<String> = dsl::pending_operations
            .filter(
                dsl::hlc
                    .le(&bound)
                    .or(dsl::status.ne(OperationStatus::Pending.as_str()))
                    .or(dsl::sent.eq(true).and(dsl::last_error.is_null()))
                    .or(dsl::sent
                        .eq(true)
                        .and(dsl::last_error.not_like(&refused_for_clock).assume_not_null())),
            )
            .select(max(dsl::hlc))
            .get_result(conn)?;
        let kept = kept.map(|text| parse::<Hlc>(TABLE, &text)).transpose()?;
        // The stored floor is capped: it may hold this device's own readings from before it
        // knew its clock was fast (the queue's newest, kept when the queue empties). What the
        // server holds is not: a queued write was made after what it had received.
        let floor = [kept, high_water(conn)?.map(|stored| stored.min(limit)), received(conn)?]
            .into_iter()
            .flatten()
            .max();
        let readings = clock.restamp(floor.unwrap_or(Hlc::ZERO), rows.len());
        for (row, reading) in rows.into_iter().zip(&readings) {
            restamp_one(conn, row, *reading, limit)?;
        }
        if let Some(last) = readings.last() {
            set_high_water(conn, *last)?;
        }
        Ok(readings.len() as u64)
    })
}

/// Gives one operation `reading`, on itself and on each field reading past `limit`, and its
/// row the same where the row still holds the old reading.
fn restamp_one(conn: &mut SqliteConnection, row: OperationRow, reading: Hlc, limit: Hlc) -> StoreResult<()> {
    let seq = row.seq;
    let mut op = row.decode()?;
    let mut moved: Vec<(String, Hlc)> = Vec::new();
    for (field, change) in &mut op.changed_fields {
        if change.hlc > limit {
            moved.push((field.clone(), change.hlc));
            change.hlc = reading;
        }
    }
    op.hlc = reading;
    let encoded = OperationRow::encode(&op)?;
    diesel::update(dsl::pending_operations.find(seq))
        .set((dsl::hlc.eq(encoded.hlc), dsl::field_hlc.eq(encoded.field_hlc)))
        .execute(conn)?;
    let Some(mut record) = find(conn, op.entity.entity_type, op.entity.id)? else { return Ok(()) };
    let mut changed = false;
    for (field, old) in moved {
        if let Some(held) = record.meta.field_hlc.get_mut(&field).filter(|held| **held == old) {
            *held = reading;
            changed = true;
        }
    }
    if changed {
        save(conn, &record)?;
    }
    Ok(())
}
