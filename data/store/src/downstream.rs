//! Downstream sync on the client: pulled pages merged into the local tables, each page in one
//! `BEGIN IMMEDIATE` transaction together with the scope's new cursor, and the per-scope sync
//! metadata and statistics.
//!
//! A pulled row meets the local one through [`resolve`]: fields without an unacknowledged local
//! edit follow the merge rule (the later clock reading wins), fields with one follow the entity
//! type's [`ConflictPolicy`], as the page's [`ApplyPlan`] says. A row at or below the version the last pull brought
//! (`pulled_version`) is skipped. A row whose parent is not stored yet (a comment whose track
//! comes on a later page) is deferred in `sync_deferred` and applied, in the same transaction as
//! its parent, when the parent arrives: no row ever lands before what it lives inside. Within a
//! page, rows go in the plan's order of entity types, which the per-entity sync use cases derive
//! from what each type depends on.

use super::{
    conflicts,
    feed::Changes,
    kept,
    records::{
        existing, find, find_visible, people_left, people_may_have_left, presence, raise_high_water,
        raise_received, save, settle_people_left, NewRows,
    },
    reverts::{self, Pending},
    rows::{from_json, parse, to_json, Record},
    schema::{pending_operations, sync_deferred, sync_metadata, sync_statistics},
    tables::TableSql,
    LocalStore,
};
use async_trait::async_trait;
use diesel::prelude::*;
use serde_json::Value;
use shaku::Component;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::Duration,
};
use trackflow_db::error::StoreResult;
use trackflow_domain::{
    entities::{AnyEntity, Scope, ScopeKind},
    ports::{ApplyCounts, ApplyPlan, DownstreamRepository, ScopeSync, SyncStatistics, DEFAULT_PULL_INTERVAL},
    protocol::{EntityState, UnknownTypeState, PEOPLE_SCOPE},
    sync::{
        field_merge::FieldState, resolve, ChangeKind, ChangeOrigin, ConflictKind, ConflictPolicy, LocalRow,
    },
    ConflictId, EntityRef, EntityType, OperationKind, RepositoryError, ScopeId, SyncConflict, SyncMeta,
    Timestamp, UserId,
};
use uuid::Uuid;

/// Unacknowledged local edits of one entity: the fields queued operations change, whether a
/// delete is queued, and how many writes are (uploads aside: the row's count, `SyncMeta::queued`).
#[derive(Debug, Default)]
struct Edits {
    fields: BTreeSet<String>,
    delete: bool,
    queued: u32,
}

/// The unacknowledged edits of the entities in `changes`: one filtered scan of the outbox.
fn edits(conn: &mut SqliteConnection, changes: &[EntityState]) -> StoreResult<HashMap<EntityRef, Edits>> {
    use pending_operations::dsl;
    let mut edits: HashMap<EntityRef, Edits> = HashMap::new();
    // An empty outbox (a first sync, or everything pushed) needs no per-row search.
    if !diesel::select(diesel::dsl::exists(dsl::pending_operations.select(dsl::id)))
        .get_result::<bool>(conn)?
    {
        return Ok(edits);
    }
    let ids: Vec<String> = changes.iter().map(|c| c.entity_id.to_string()).collect();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, String, String, String)> = dsl::pending_operations
            .filter(dsl::entity_id.eq_any(chunk))
            .select((dsl::entity_type, dsl::entity_id, dsl::kind, dsl::changed_fields))
            .load(conn)?;
        for (entity_type, entity_id, kind, fields) in rows {
            let entity = EntityRef::new(parse(TABLE, &entity_type)?, parse(TABLE, &entity_id)?);
            let entry = edits.entry(entity).or_default();
            match parse::<OperationKind>(TABLE, &kind)? {
                OperationKind::Upload => {}
                OperationKind::Delete => {
                    entry.delete = true;
                    entry.queued += 1;
                }
                _ => entry.queued += 1,
            }
            let fields: BTreeMap<String, Value> = from_json(TABLE, &fields)?;
            entry.fields.extend(fields.into_keys());
        }
    }
    Ok(edits)
}

const TABLE: &str = "pending_operations";

/// Applies one page and stores the cursor, in one transaction. What the page carries that this
/// build's types do not declare (`unknown` rows, undeclared fields of the others) is kept aside
/// ([`kept`](super::kept)).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_page(
    conn: &mut SqliteConnection,
    scope: &str,
    changes: &[EntityState],
    unknown: &[UnknownTypeState],
    next_cursor: &str,
    plan: &ApplyPlan,
    now: Timestamp,
    report: &mut Changes,
) -> StoreResult<BTreeMap<EntityType, ApplyCounts>> {
    conn.immediate_transaction(|conn| {
        // The clock's receive rule: a local write made after this page wins over everything
        // in it, including fields a policy kept local (their remote readings are not stored).
        let readings = changes.iter().flat_map(|c| c.field_hlc.values());
        if let Some(newest) = readings.chain(unknown.iter().flat_map(|c| c.field_hlc.values())).max() {
            raise_high_water(conn, *newest)?;
            raise_received(conn, *newest)?;
        }
        let (changes, undeclared) = kept::sort_out(changes);
        let unknown = unknown.iter().map(|state| kept::Kept { state: state.clone(), whole: true });
        kept::keep(conn, scope, undeclared.into_iter().chain(unknown))?;
        let counts = apply_rows(conn, &changes, plan, now, report)?;
        diesel::insert_into(sync_metadata::table)
            .values((sync_metadata::scope.eq(scope), sync_metadata::cursor.eq(next_cursor)))
            .on_conflict(sync_metadata::scope)
            .do_update()
            .set(sync_metadata::cursor.eq(next_cursor))
            .execute(conn)?;
        Ok(counts)
    })
}

/// Applies pulled rows of declared types and fields as `plan` says, inside the caller's
/// transaction.
pub(crate) fn apply_rows(
    conn: &mut SqliteConnection,
    changes: &[EntityState],
    plan: &ApplyPlan,
    now: Timestamp,
    report: &mut Changes,
) -> StoreResult<BTreeMap<EntityType, ApplyCounts>> {
    let grants = |c: &&EntityState| c.entity_type.member_field().is_some() || c.entity_type.is_scope_root();
    if changes.iter().filter(grants).any(|c| c.deleted) {
        people_may_have_left(conn)?;
    }
    let edits = edits(conn, changes)?;
    let mut ordered: Vec<&EntityState> = changes.iter().collect();
    ordered.sort_by_key(|c| plan.rank(c.entity_type));
    let waiting = diesel::select(diesel::dsl::exists(sync_deferred::table.select(sync_deferred::entity_id)))
        .get_result(conn)?;
    let mut pass = Pass {
        plan,
        now,
        counts: BTreeMap::new(),
        stored: HashSet::new(),
        looked_up: HashSet::new(),
        waiting,
        new_rows: NewRows::default(),
        reverts: Pending::load(conn)?,
        me: super::session::load(conn)?.map(|session| session.user_id),
        report: &mut *report,
    };
    pass.look_up(conn, changes)?;
    let none = Edits::default();
    for state in ordered {
        let entity = EntityRef::new(state.entity_type, state.entity_id);
        let edits = edits.get(&entity).unwrap_or(&none);
        apply_row(conn, state, edits, &mut pass)?;
    }
    pass.insert_new_rows(conn)?;
    Ok(pass.counts)
}

/// One page's application: its settings, what it did, and what it learned on the way.
struct Pass<'a> {
    plan: &'a ApplyPlan,
    now: Timestamp,
    counts: BTreeMap<EntityType, ApplyCounts>,
    /// Rows known to be stored (tombstones included): parents need not be looked up twice.
    stored: HashSet<EntityRef>,
    /// Rows whose presence was looked up for the whole page at once: stored if in `stored`,
    /// absent otherwise.
    looked_up: HashSet<EntityRef>,
    /// Whether any row may be waiting in `sync_deferred` for one of this page's rows.
    waiting: bool,
    /// Rows this replica never held, not inserted yet: they go in many to a statement, before
    /// anything reads or overwrites a stored row.
    new_rows: NewRows,
    /// Rows to bring back to the server's state, whose pulled state replaces the local one.
    reverts: Pending,
    /// The signed-in user, told when what they wrote was deleted with its parent.
    me: Option<UserId>,
    /// What readers see change, for the change feed.
    report: &'a mut Changes,
}

impl Pass<'_> {
    /// Looks up which of the page's rows, and of the parents they name, are stored: one query
    /// per entity type instead of one per row. A first sync brings nothing but new rows, whose
    /// parents mostly came on earlier pages.
    fn look_up(&mut self, conn: &mut SqliteConnection, changes: &[EntityState]) -> StoreResult<()> {
        let rows = changes.iter().map(|c| EntityRef::new(c.entity_type, c.entity_id));
        let parents = changes.iter().filter_map(|c| c.entity_type.parent_in(&c.fields));
        self.looked_up.extend(rows.chain(parents));
        for &entity_type in EntityType::all() {
            let ids: Vec<Uuid> =
                self.looked_up.iter().filter(|e| e.entity_type == entity_type).map(|e| e.id).collect();
            if ids.is_empty() {
                continue;
            }
            for id in existing(conn, entity_type, &ids)? {
                self.stored.insert(EntityRef::new(entity_type, id));
            }
        }
        Ok(())
    }

    /// Whether `entity` is known to have no row, without asking the database.
    fn absent(&self, entity: &EntityRef) -> bool {
        self.looked_up.contains(entity) && !self.stored.contains(entity)
    }

    /// Whether `parent` is stored (tombstones included).
    fn stored(&mut self, conn: &mut SqliteConnection, parent: EntityRef) -> StoreResult<bool> {
        if self.stored.contains(&parent) {
            return Ok(true);
        }
        if self.absent(&parent) {
            return Ok(false);
        }
        let stored = presence(conn, parent)?.is_some();
        if stored {
            self.stored.insert(parent);
        }
        Ok(stored)
    }

    /// Inserts the new rows gathered so far.
    fn insert_new_rows(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        self.new_rows.insert(conn)
    }
}

/// Applies one pulled row of any type, then what was deferred until it arrived.
fn apply_row(
    conn: &mut SqliteConnection,
    state: &EntityState,
    edits: &Edits,
    pass: &mut Pass<'_>,
) -> StoreResult<()> {
    let outcome = apply(conn, state, edits, pass)?;
    pass.counts.entry(state.entity_type).or_default().add(outcome);
    if outcome.applied > 0 && pass.waiting {
        // Children that arrived before this row: theirs is the state last pulled, and they have
        // no local edits (they were never stored here).
        let waiting: Vec<(String, String, String)> = sync_deferred::table
            .filter(sync_deferred::parent_type.eq(state.entity_type.as_str()))
            .filter(sync_deferred::parent_id.eq(state.entity_id.to_string()))
            .select((sync_deferred::entity_type, sync_deferred::entity_id, sync_deferred::state))
            .load(conn)?;
        for (entity_type, entity_id, child) in waiting {
            diesel::delete(sync_deferred::table.find((&entity_type, &entity_id))).execute(conn)?;
            let child: EntityState = from_json("sync_deferred", &child)?;
            apply_row(conn, &child, &Edits::default(), pass)?;
        }
    }
    Ok(())
}

/// Merges one pulled row into the local row of its type.
fn apply(
    conn: &mut SqliteConnection,
    state: &EntityState,
    edits: &Edits,
    pass: &mut Pass<'_>,
) -> StoreResult<ApplyCounts> {
    let policy = pass.plan.policy(state.entity_type);
    let applied = ApplyCounts { applied: 1, ..ApplyCounts::default() };
    let entity_ref = EntityRef::new(state.entity_type, state.entity_id);
    let found = if pass.absent(&entity_ref) {
        None
    } else {
        pass.insert_new_rows(conn)?;
        find(conn, state.entity_type, state.entity_id)?
    };
    let Some(mut record) = found else {
        // A row this replica never held. A tombstone is stored too, hidden, so that an older
        // state of the row arriving later (two pulls of one scope overlapping) meets it and
        // stays deleted. A tombstone without whole fields cannot be stored: nothing of the row
        // may wait any longer, then.
        let entity = match AnyEntity::from_fields(state.entity_type, state.entity_id, &state.fields) {
            Ok(entity) => entity,
            Err(_) if state.deleted => {
                diesel::delete(
                    sync_deferred::table.find((state.entity_type.as_str(), state.entity_id.to_string())),
                )
                .execute(conn)?;
                return Ok(applied);
            }
            Err(invalid) => return Err(invalid.into()),
        };
        if let Some(parent) = entity.parent() {
            if !pass.stored(conn, parent)? {
                defer(conn, state, parent)?;
                pass.waiting = true;
                return Ok(ApplyCounts { deferred: 1, ..ApplyCounts::default() });
            }
        }
        let meta = SyncMeta {
            version: state.version,
            field_hlc: state.field_hlc.clone(),
            deleted: state.deleted,
            // Writes of a row this device does not hold may still be queued: a row shown
            // again after its scope was forgotten, or the database rebuilt.
            queued: edits.queued,
            pending_create: None,
            pulled_version: state.version,
        };
        let record = Record { entity, meta };
        pass.new_rows.push(&record, &state.fields)?;
        pass.stored.insert(entity_ref);
        let origin =
            if pass.reverts.take(conn, entity_ref)? { ChangeOrigin::Rollback } else { ChangeOrigin::Pull };
        if !state.deleted {
            pass.report.entity(&record.entity, None, ChangeKind::Created, origin);
        }
        return Ok(applied);
    };
    // What readers saw before, for the change feed.
    let before = pass.report.wanted().then(|| (record.entity.clone(), record.meta.deleted));
    pass.stored.insert(entity_ref);
    if pass.reverts.take(conn, entity_ref)? {
        // The server refused a write of this row for good: its state replaces the local one
        // whole, local clock readings or not.
        if !state.deleted {
            record.entity = AnyEntity::from_fields(state.entity_type, state.entity_id, &state.fields)?;
        }
        record.meta.field_hlc = state.field_hlc.clone();
        record.meta.deleted = state.deleted;
        record.meta.version = record.meta.version.max(state.version);
        record.meta.pulled_version = state.version;
        save(conn, &record)?;
        report_merge(conn, pass.report, before, &record, ChangeOrigin::Rollback)?;
        return Ok(ApplyCounts { reverted: 1, ..applied });
    }
    if state.version <= record.meta.pulled_version {
        return Ok(ApplyCounts { skipped: 1, ..ApplyCounts::default() });
    }
    let told = tell_author(conn, state, &record, edits, pass)?;
    let remote = FieldState {
        fields: state.fields.clone(),
        field_hlc: state.field_hlc.clone(),
        deleted: state.deleted,
    };
    let local = FieldState {
        fields: record.entity.fields(),
        field_hlc: record.meta.field_hlc.clone(),
        deleted: record.meta.deleted,
    };
    let resolution = resolve(
        Some(LocalRow { state: &local, unacknowledged: &edits.fields, delete_unacknowledged: edits.delete }),
        &remote,
        policy,
    );
    if !resolution.state.deleted {
        record.entity = AnyEntity::from_fields(state.entity_type, state.entity_id, &resolution.state.fields)?;
    }
    record.meta.field_hlc = resolution.state.field_hlc;
    record.meta.deleted = resolution.state.deleted;
    record.meta.version = record.meta.version.max(state.version);
    record.meta.pulled_version = state.version;
    save(conn, &record)?;
    report_merge(conn, pass.report, before, &record, ChangeOrigin::Pull)?;
    if told {
        return Ok(ApplyCounts { conflicts: 1, ..applied });
    }
    let conflicts = resolution.conflicts.len() as u64;
    if policy == ConflictPolicy::Manual && !resolution.conflicts.is_empty() {
        conflicts::record(
            conn,
            &SyncConflict {
                id: ConflictId::new(),
                entity: EntityRef::new(state.entity_type, state.entity_id),
                local: resolution.conflicts.iter().map(|c| (c.field.clone(), c.local.clone())).collect(),
                remote: resolution.conflicts.iter().map(|c| (c.field.clone(), c.remote.clone())).collect(),
                fields: resolution.conflicts.iter().map(|c| c.field.clone()).collect(),
                detected_at: pass.now,
                resolution: None,
                kind: ConflictKind::Fields,
            },
        )?;
    }
    Ok(ApplyCounts { conflicts, ..applied })
}

/// Reports what a merge into a stored row changed for its readers: it appeared, disappeared
/// (and what lives inside it with it) or changed fields; `before` is what they saw before.
fn report_merge(
    conn: &mut SqliteConnection,
    report: &mut Changes,
    before: Option<(AnyEntity, bool)>,
    after: &Record<AnyEntity>,
    origin: ChangeOrigin,
) -> StoreResult<()> {
    let Some((entity, was_deleted)) = before else { return Ok(()) };
    let entity_ref = after.entity.entity_ref();
    match (was_deleted, after.meta.deleted) {
        (true, true) => {}
        (false, false) if entity.fields() == after.entity.fields() => {}
        (false, false) => report.entity(&after.entity, Some(&entity), ChangeKind::Updated, origin),
        (false, true) => {
            report.entity(&entity, None, ChangeKind::Deleted, origin);
            report.inside(conn, entity_ref, ChangeKind::HiddenWithParent, origin)?;
        }
        (true, false) => {
            report.entity(&after.entity, None, ChangeKind::Created, origin);
            report.inside(conn, entity_ref, ChangeKind::ShownWithParent, origin)?;
        }
    }
    Ok(())
}

/// When `state` is the tombstone of `record`, a live row the signed-in user wrote, deleted by
/// someone else's delete of what it lived inside, records a conflict of kind "parent deleted"
/// keeping what they wrote. Returns whether it did. A row with queued edits is left to its
/// push, whose answer records the conflict once.
fn tell_author(
    conn: &mut SqliteConnection,
    state: &EntityState,
    record: &Record<AnyEntity>,
    edits: &Edits,
    pass: &Pass<'_>,
) -> StoreResult<bool> {
    let (Some(with), Some(me)) = (state.deleted_with, pass.me) else { return Ok(false) };
    let someone_else = with.by.is_some_and(|by| by != me);
    let mine = record.entity.author() == Some(me);
    if !state.deleted
        || record.meta.deleted
        || !someone_else
        || !mine
        || !edits.fields.is_empty()
        || edits.delete
    {
        return Ok(false);
    }
    conflicts::record(
        conn,
        &SyncConflict {
            // One per row: a row is deleted with its parent once.
            id: ConflictId::from_uuid(state.entity_id),
            entity: EntityRef::new(state.entity_type, state.entity_id),
            local: record.entity.fields(),
            remote: BTreeMap::new(),
            fields: Vec::new(),
            detected_at: pass.now,
            resolution: None,
            kind: ConflictKind::ParentDeleted,
        },
    )?;
    Ok(true)
}

/// Keeps `state` until `parent` arrives. A state of the same row already waiting is merged
/// with it by the clock, as a stored row would be: two pulls of one scope may overlap, and the
/// older page may come second.
fn defer(conn: &mut SqliteConnection, state: &EntityState, parent: EntityRef) -> StoreResult<()> {
    let key = (state.entity_type.as_str(), state.entity_id.to_string());
    let waiting: Option<String> =
        sync_deferred::table.find(key).select(sync_deferred::state).get_result(conn).optional()?;
    let merged = match waiting {
        Some(waiting) => merged(&from_json("sync_deferred", &waiting)?, state),
        None => state.clone(),
    };
    let row = (
        sync_deferred::entity_type.eq(state.entity_type.as_str()),
        sync_deferred::entity_id.eq(state.entity_id.to_string()),
        sync_deferred::parent_type.eq(parent.entity_type.as_str()),
        sync_deferred::parent_id.eq(parent.id.to_string()),
        sync_deferred::state.eq(to_json("sync_deferred", &merged)?),
    );
    diesel::replace_into(sync_deferred::table).values(row).execute(conn)?;
    Ok(())
}

/// Two pulled states of one row merged field by field, the later clock reading winning, as the
/// server merges writes.
pub(crate) fn merged<T: Clone>(earlier: &EntityState<T>, later: &EntityState<T>) -> EntityState<T> {
    let state = |s: &EntityState<T>| FieldState {
        fields: s.fields.clone(),
        field_hlc: s.field_hlc.clone(),
        deleted: s.deleted,
    };
    let (earlier_state, unacknowledged) = (state(earlier), BTreeSet::new());
    let local =
        LocalRow { state: &earlier_state, unacknowledged: &unacknowledged, delete_unacknowledged: false };
    let merged = resolve(Some(local), &state(later), ConflictPolicy::LastWriterWins).state;
    EntityState {
        version: earlier.version.max(later.version),
        deleted: merged.deleted,
        fields: merged.fields,
        field_hlc: merged.field_hlc,
        ..later.clone()
    }
}

/// Reports the shared scope `root` going from this device (its user lost access): its root
/// deleted, what lives inside it hidden with it. A root already hidden here was reported then.
fn report_forgotten(conn: &mut SqliteConnection, root: Uuid, report: &mut Changes) -> StoreResult<()> {
    if !report.wanted() {
        return Ok(());
    }
    let roots =
        EntityType::all().iter().filter(|t| t.scope_kind() == ScopeKind::Shared && t.parent().is_none());
    for &root_type in roots {
        if let Some(record) = find_visible(conn, root_type, root)? {
            report.entity(&record.entity, None, ChangeKind::Deleted, ChangeOrigin::Pull);
            report.inside(
                conn,
                record.entity.entity_ref(),
                ChangeKind::HiddenWithParent,
                ChangeOrigin::Pull,
            )?;
        }
    }
    Ok(())
}

fn scope_sync(conn: &mut SqliteConnection, scope: &str) -> StoreResult<ScopeSync> {
    // Rows waiting to go back to the server's state: this pull starts from the beginning.
    reverts::request(conn, scope)?;
    /// cursor, last sync, minimum interval, head
    type MetadataRow = (Option<String>, Option<i64>, i64, Option<i64>);
    let row: Option<MetadataRow> = sync_metadata::table
        .find(scope)
        .select((
            sync_metadata::cursor,
            sync_metadata::last_sync_at,
            sync_metadata::min_interval_ms,
            sync_metadata::head,
        ))
        .get_result(conn)
        .optional()?;
    Ok(match row {
        Some((cursor, last, interval, head)) => ScopeSync {
            scope: scope.to_owned(),
            cursor,
            last_sync_at: last.map(Timestamp),
            min_interval: Duration::from_millis(u64::try_from(interval).unwrap_or(0)),
            head,
        },
        None => ScopeSync {
            scope: scope.to_owned(),
            cursor: None,
            last_sync_at: None,
            min_interval: DEFAULT_PULL_INTERVAL,
            head: None,
        },
    })
}

type StatisticsRow = (String, String, i64, i64, i64, i64, i64, i64);

fn decode_statistics(row: StatisticsRow) -> StoreResult<SyncStatistics> {
    let (scope, entity_type, last_sync_at, duration_ms, applied, skipped, conflicts, errors) = row;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(SyncStatistics {
        scope,
        entity_type: parse("sync_statistics", &entity_type)?,
        last_sync_at: Timestamp(last_sync_at),
        duration_ms: count(duration_ms),
        counts: ApplyCounts {
            applied: count(applied),
            skipped: count(skipped),
            conflicts: count(conflicts),
            deferred: 0,
            reverted: 0,
        },
        errors: count(errors),
    })
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Per-scope sync metadata, statistics, and pulled pages applied to the local tables.
#[derive(Component)]
#[shaku(interface = DownstreamRepository)]
pub struct SqliteDownstreamRepository {
    /// The local database.
    store: LocalStore,
}

impl SqliteDownstreamRepository {
    /// The downstream side of `store`.
    pub fn new(store: LocalStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl DownstreamRepository for SqliteDownstreamRepository {
    async fn scope(&self, scope: &str) -> Result<ScopeSync, RepositoryError> {
        let scope = scope.to_owned();
        self.store.read(move |conn| scope_sync(conn, &scope)).await
    }

    #[tracing::instrument(skip_all, fields(scope, changes = changes.len()))]
    async fn apply_page(
        &self,
        scope: &str,
        changes: Vec<EntityState>,
        unknown: Vec<UnknownTypeState>,
        next_cursor: String,
        plan: &ApplyPlan,
    ) -> Result<BTreeMap<EntityType, ApplyCounts>, RepositoryError> {
        let (scope, plan) = (scope.to_owned(), plan.clone());
        let now = self.store.now();
        let store = self.store.clone();
        self.store
            .read(move |conn| {
                store.publishing(conn, |conn, report| {
                    apply_page(conn, &scope, &changes, &unknown, &next_cursor, &plan, now, report)
                })
            })
            .await
    }

    async fn reset(&self, scope: &str) -> Result<(), RepositoryError> {
        let scope = scope.to_owned();
        self.store
            .read(move |conn| {
                conn.immediate_transaction(|conn| {
                    diesel::update(sync_metadata::table.find(&scope))
                        .set(sync_metadata::cursor.eq(None::<String>))
                        .execute(conn)?;
                    // A reset may come from another database, whose versions do not compare
                    // with the ones stored: nothing pulled from the start may be skipped. Rows
                    // still merge by clock reading, so pulling them again changes nothing that
                    // is newer here.
                    for &entity_type in EntityType::all() {
                        TableSql::of(entity_type).reset_pulled(conn)?;
                    }
                    StoreResult::Ok(())
                })
            })
            .await
    }

    async fn finish(
        &self,
        scope: &str,
        at: Timestamp,
        head: Option<i64>,
        stats: Vec<SyncStatistics>,
    ) -> Result<(), RepositoryError> {
        let scope = scope.to_owned();
        self.store
            .read(move |conn| {
                conn.immediate_transaction(|conn| {
                    diesel::insert_into(sync_metadata::table)
                        .values((
                            sync_metadata::scope.eq(&scope),
                            sync_metadata::last_sync_at.eq(at.as_millis()),
                            sync_metadata::head.eq(head),
                        ))
                        .on_conflict(sync_metadata::scope)
                        .do_update()
                        .set((sync_metadata::last_sync_at.eq(at.as_millis()), sync_metadata::head.eq(head)))
                        .execute(conn)?;
                    for s in &stats {
                        let row = (
                            sync_statistics::scope.eq(&s.scope),
                            sync_statistics::entity_type.eq(s.entity_type.as_str()),
                            sync_statistics::last_sync_at.eq(s.last_sync_at.as_millis()),
                            sync_statistics::duration_ms.eq(signed(s.duration_ms)),
                            sync_statistics::applied.eq(signed(s.counts.applied)),
                            sync_statistics::skipped.eq(signed(s.counts.skipped)),
                            sync_statistics::conflicts.eq(signed(s.counts.conflicts)),
                            sync_statistics::errors.eq(signed(s.errors)),
                        );
                        diesel::replace_into(sync_statistics::table).values(row).execute(conn)?;
                    }
                    StoreResult::Ok(())
                })
            })
            .await
    }

    async fn failed(&self, scope: &str) -> Result<(), RepositoryError> {
        let scope = scope.to_owned();
        let now = self.store.now();
        self.store
            .read(move |conn| {
                conn.immediate_transaction(|conn| {
                    for &entity_type in EntityType::all() {
                        diesel::insert_into(sync_statistics::table)
                            .values((
                                sync_statistics::scope.eq(&scope),
                                sync_statistics::entity_type.eq(entity_type.as_str()),
                                sync_statistics::last_sync_at.eq(now.as_millis()),
                                sync_statistics::duration_ms.eq(0),
                                sync_statistics::applied.eq(0),
                                sync_statistics::skipped.eq(0),
                                sync_statistics::conflicts.eq(0),
                                sync_statistics::errors.eq(1),
                            ))
                            .on_conflict((sync_statistics::scope, sync_statistics::entity_type))
                            .do_update()
                            .set(sync_statistics::errors.eq(sync_statistics::errors + 1))
                            .execute(conn)?;
                    }
                    StoreResult::Ok(())
                })
            })
            .await
    }

    async fn statistics(&self) -> Result<Vec<SyncStatistics>, RepositoryError> {
        self.store
            .read(|conn| {
                let rows: Vec<StatisticsRow> = sync_statistics::table
                    .order((sync_statistics::scope, sync_statistics::entity_type))
                    .load(conn)?;
                rows.into_iter().map(decode_statistics).collect()
            })
            .await
    }

    async fn pulled_scopes(&self) -> Result<Vec<String>, RepositoryError> {
        self.store.read(|conn| Ok(sync_metadata::table.select(sync_metadata::scope).load(conn)?)).await
    }

    async fn forget_scope(&self, root: ScopeId) -> Result<u64, RepositoryError> {
        let scope = Scope::Shared(root).to_string();
        let id = root.to_string();
        let store = self.store.clone();
        self.store
            .read(move |conn| {
                store.publishing(conn, |conn, report| {
                    conn.immediate_transaction(|conn| {
                        report_forgotten(conn, root.as_uuid(), report)?;
                        people_may_have_left(conn)?;
                        // Children before what they live inside, for the foreign keys; with each
                        // table, the pulled rows waiting for one of its rows, never wanted now.
                        let mut removed = 0;
                        for entity_type in EntityType::all().iter().rev() {
                            if entity_type.scope_kind() == ScopeKind::Shared {
                                removed += TableSql::of(*entity_type).forget(conn, &id)?;
                            }
                        }
                        diesel::delete(sync_metadata::table.find(&scope)).execute(conn)?;
                        kept::forget(conn, &scope)?;
                        diesel::delete(sync_statistics::table.filter(sync_statistics::scope.eq(&scope)))
                            .execute(conn)?;
                        StoreResult::Ok(removed as u64)
                    })
                })
            })
            .await
    }

    async fn listed(&self, scopes: Vec<String>) -> Result<(), RepositoryError> {
        self.store
            .read(move |conn| {
                conn.immediate_transaction(|conn| {
                    for scope in &scopes {
                        diesel::insert_into(sync_metadata::table)
                            .values(sync_metadata::scope.eq(scope))
                            .on_conflict_do_nothing()
                            .execute(conn)?;
                    }
                    StoreResult::Ok(())
                })
            })
            .await
    }

    async fn people_left(&self) -> Result<Option<u64>, RepositoryError> {
        self.store.read(people_left).await
    }

    async fn restart_people(&self) -> Result<(), RepositoryError> {
        self.store
            .read(|conn| {
                conn.immediate_transaction(|conn| {
                    diesel::update(sync_metadata::table.find(PEOPLE_SCOPE))
                        .set(sync_metadata::cursor.eq(None::<String>))
                        .execute(conn)?;
                    for entity_type in EntityType::all().iter().filter(|t| t.scope_kind() == ScopeKind::User)
                    {
                        TableSql::of(*entity_type).reset_pulled(conn)?;
                    }
                    StoreResult::Ok(())
                })
            })
            .await
    }

    async fn forget_unpulled_people(&self, mark: u64) -> Result<u64, RepositoryError> {
        let store = self.store.clone();
        self.store
            .read(move |conn| {
                store.publishing(conn, |conn, report| {
                    conn.immediate_transaction(|conn| {
                        let mut removed = 0;
                        // What lives inside first.
                        for &entity_type in EntityType::all().iter().rev() {
                            if entity_type.scope_kind() != ScopeKind::User {
                                continue;
                            }
                            let table = TableSql::of(entity_type);
                            for id in table.unpulled(conn)? {
                                if let Some(record) =
                                    find_visible(conn, entity_type, parse(entity_type.table(), &id)?)?
                                {
                                    report.entity(
                                        &record.entity,
                                        None,
                                        ChangeKind::Deleted,
                                        ChangeOrigin::Pull,
                                    );
                                }
                                table.remove(conn, &id)?;
                                removed += 1;
                            }
                        }
                        settle_people_left(conn, mark)?;
                        StoreResult::Ok(removed)
                    })
                })
            })
            .await
    }
}
