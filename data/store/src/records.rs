//! Entity writes and reads written once for every entity type. Each write is one SQLite
//! `BEGIN IMMEDIATE` transaction that changes the row and appends its outbox operation, so
//! either both exist afterwards or neither does.

use super::{
    feed::Changes,
    outbox,
    rows::{parse, to_json, Record},
    schema,
    tables::{Bind, EncodedRow, Statement, StoredRow, TableSql},
};
use diesel::prelude::*;
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    authorization::{authorize, authorize_author, Access, Relation},
    entities::{changed_values, AnyEntity, Scope},
    ports::{Clock, IdentifiedFields, ServerClock, WriteContext},
    sync::{ChangeKind, ChangeOrigin},
    CollaboratorRole, EntityRef, EntityType, Hlc, HybridLogicalClock, NodeId, OperationId, OperationKind,
    RepositoryError, ScopeId, SyncEntity, SyncMeta, SyncOperation, Timestamp, UserId, ValidationError,
};
use uuid::Uuid;

/// The replica's clocks: wall time for `created_at` and the hybrid logical clock for write
/// ordering.
///
/// Several processes may write to one database (an app and the CLI, say) and share its replica
/// id, so an in-memory clock alone could hand two of them the same reading. Each write therefore
/// starts from the highest reading issued so far in the database, read inside its transaction
/// (SQLite runs write transactions one at a time): the newest outbox operation carries it, since
/// every local write appends one. Code that removes operations from the outbox must first store
/// the largest reading it removes with [`raise_high_water`], so the floor survives an emptied
/// queue.
///
/// Readings are taken from the device's clock corrected by the server's ([`ServerClock`]), whose
/// offset is saved here when it moves, so a process that has not heard the server yet starts
/// from the last estimate.
pub(crate) struct WriteClock {
    hlc: HybridLogicalClock,
    clock: Arc<ServerClock>,
}

/// The `local_settings` key of the stored clock floor (see [`WriteClock`]).
const HLC_HIGH_WATER: &str = "hlc_high_water";

/// The `local_settings` key of the latest reading the server holds that this device knows of
/// (see [`raise_received`]).
const HLC_RECEIVED: &str = "hlc_received";

/// The `local_settings` key of the server clock's offset from the device's, in milliseconds.
const SERVER_CLOCK_OFFSET: &str = "server_clock_offset_ms";

/// A `local_settings` value, parsed.
fn setting<T>(conn: &mut SqliteConnection, name: &str) -> StoreResult<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    use schema::local_settings::dsl::{local_settings, value};
    let stored: Option<String> = local_settings.find(name).select(value).get_result(conn).optional()?;
    stored.map(|text| parse("local_settings", &text)).transpose()
}

/// Stores a `local_settings` value, replacing the one there.
fn set_setting(conn: &mut SqliteConnection, name: &str, text: &str) -> StoreResult<()> {
    use schema::local_settings::dsl::{key, local_settings, value};
    diesel::replace_into(local_settings).values((key.eq(name), value.eq(text))).execute(conn)?;
    Ok(())
}

/// The saved offset of the server's clock from the device's (see [`ServerClock`]).
pub(crate) fn saved_offset(conn: &mut SqliteConnection) -> StoreResult<Option<i64>> {
    setting(conn, SERVER_CLOCK_OFFSET)
}

/// Stores `reading` as the clock floor, even below the stored one. Lowering it is for
/// re-stamping alone, which removes every reading above it (see [`HybridLogicalClock::rewind`]);
/// everything else raises it ([`raise_high_water`]).
pub(crate) fn set_high_water(conn: &mut SqliteConnection, reading: Hlc) -> StoreResult<()> {
    set_setting(conn, HLC_HIGH_WATER, &reading.to_string())
}

/// The stored clock floor.
pub(crate) fn high_water(conn: &mut SqliteConnection) -> StoreResult<Option<Hlc>> {
    setting(conn, HLC_HIGH_WATER)
}

/// The highest reading issued in the database: the newest outbox operation's or the stored
/// floor, whichever is later. Both count: acknowledgements may remove the newest operation while
/// older ones stay queued, and then only the stored floor remembers its reading. One statement
/// (a reading's text sorts as the clock does), since every local write asks.
fn floor(conn: &mut SqliteConnection) -> StoreResult<Option<Hlc>> {
    #[derive(QueryableByName)]
    struct Floor {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        hlc: Option<String>,
    }
    const SQL: &str = "SELECT max(h) AS hlc FROM (\
        SELECT hlc AS h FROM pending_operations WHERE seq = (SELECT max(seq) FROM pending_operations) \
        UNION ALL SELECT value FROM local_settings WHERE key = ?)";
    let rows: Vec<Floor> = Statement::new(SQL, vec![Bind::Text(HLC_HIGH_WATER)]).load(conn)?;
    rows.into_iter().next().and_then(|row| row.hlc).map(|text| parse("local_settings", &text)).transpose()
}

/// Stores `reading` as the clock floor if it is higher than the stored one. Call it before
/// removing outbox operations, with the largest reading removed.
pub(crate) fn raise_high_water(conn: &mut SqliteConnection, reading: Hlc) -> StoreResult<()> {
    if high_water(conn)?.is_some_and(|stored| stored >= reading) {
        return Ok(());
    }
    set_high_water(conn, reading)
}

/// Stores `reading` as the latest reading the server holds that this device knows of, if it is
/// later than the stored one: readings pulled, and those of operations the server
/// acknowledged. Re-stamping never goes below it: a queued write was made after everything
/// it had received, and must stay later than it to win on the server.
pub(crate) fn raise_received(conn: &mut SqliteConnection, reading: Hlc) -> StoreResult<()> {
    if received(conn)?.is_some_and(|stored| stored >= reading) {
        return Ok(());
    }
    set_setting(conn, HLC_RECEIVED, &reading.to_string())
}

/// The latest reading the server holds that this device knows of (see [`raise_received`]).
pub(crate) fn received(conn: &mut SqliteConnection) -> StoreResult<Option<Hlc>> {
    setting(conn, HLC_RECEIVED)
}

/// The `local_settings` key of the count of events after which someone may have left the
/// people this user may read (see [`people_may_have_left`]).
const PEOPLE_LEFT: &str = "people_left";

/// Records that someone may have left the people this user may read: a membership record or a
/// shared root was deleted, or a shared scope was lost. Their records (a profile) stay on the
/// server and are never sent again as deleted, so the next sync pulls the user's records from
/// the start and forgets those it no longer receives.
pub(crate) fn people_may_have_left(conn: &mut SqliteConnection) -> StoreResult<()> {
    let seen: u64 = setting(conn, PEOPLE_LEFT)?.unwrap_or(0);
    set_setting(conn, PEOPLE_LEFT, &(seen + 1).to_string())
}

/// The count recorded by [`people_may_have_left`] since the last time it was settled.
pub(crate) fn people_left(conn: &mut SqliteConnection) -> StoreResult<Option<u64>> {
    setting(conn, PEOPLE_LEFT)
}

/// Settles the count `seen`, unless more events came since.
pub(crate) fn settle_people_left(conn: &mut SqliteConnection, seen: u64) -> StoreResult<()> {
    use schema::local_settings::dsl::{key, local_settings, value};
    diesel::delete(local_settings.filter(key.eq(PEOPLE_LEFT)).filter(value.eq(seen.to_string())))
        .execute(conn)?;
    Ok(())
}

impl WriteClock {
    pub fn new(replica: NodeId, clock: Arc<ServerClock>) -> Self {
        Self { hlc: HybridLogicalClock::new(replica), clock }
    }

    /// The corrected clock readings are taken from.
    pub fn server_clock(&self) -> &Arc<ServerClock> {
        &self.clock
    }

    pub fn replica(&self) -> NodeId {
        self.hlc.node()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock past every reading the row carries, including readings written by
    /// other replicas and pulled here, so an edit always wins over the value it replaces.
    pub fn follow(&self, meta: &SyncMeta) {
        if let Some(latest) = meta.field_hlc.values().max() {
            self.hlc.advance_to(*latest);
        }
    }

    /// A reading later than every reading issued in this database by any process. Call it
    /// inside the write transaction that uses the reading.
    pub fn tick(&self, conn: &mut SqliteConnection) -> StoreResult<Hlc> {
        if let Some(floor) = floor(conn)? {
            self.hlc.advance_to(floor);
        }
        self.save_offset(conn)?;
        Ok(self.next())
    }

    /// The next reading of the in-memory clock, without reading the database's floor.
    fn next(&self) -> Hlc {
        self.hlc.now(u64::try_from(self.now().as_millis()).unwrap_or(0))
    }

    /// Gives `count` new readings, in order, after `floor`, setting the clock back to `floor`
    /// first: for re-stamping readings that are too far ahead (see [`set_high_water`]).
    pub fn restamp(&self, floor: Hlc, count: usize) -> Vec<Hlc> {
        self.hlc.rewind(floor);
        (0..count).map(|_| self.next()).collect()
    }

    /// Saves the server clock's offset if it moved since it was last saved.
    pub fn save_offset(&self, conn: &mut SqliteConnection) -> StoreResult<()> {
        match self.clock.unsaved() {
            Some(offset) => set_setting(conn, SERVER_CLOCK_OFFSET, &offset.to_string()),
            None => Ok(()),
        }
    }
}

/// The row of `entity_type` with `id`, tombstone or not, decoded through the type's
/// validation. The store works on every type through its table ([`TableSql`]) and
/// [`AnyEntity`]: it holds no code of its own per type.
pub(crate) fn find(
    conn: &mut SqliteConnection,
    entity_type: EntityType,
    id: Uuid,
) -> StoreResult<Option<Record<AnyEntity>>> {
    TableSql::of(entity_type).find(conn, id)?.map(|row| row.decode(entity_type)).transpose()
}

/// Inserts a new row: `record`, whose entity's wire fields are in `create`.
pub(crate) fn insert(
    conn: &mut SqliteConnection,
    record: &Record<AnyEntity>,
    create: &SyncOperation,
) -> StoreResult<()> {
    let row = EncodedRow::with_fields(record, |name| create.changed_fields.get(name).map(|c| &c.value))?;
    TableSql::of(record.entity.entity_type()).insert(conn, &[row])
}

/// Overwrites an existing row.
pub(crate) fn save(conn: &mut SqliteConnection, record: &Record<AnyEntity>) -> StoreResult<()> {
    TableSql::of(record.entity.entity_type()).save(conn, &EncodedRow::encode(record)?)
}

/// `entity` as the type `E` the caller holds it as.
pub(crate) fn typed<E: SyncEntity>(entity: AnyEntity) -> StoreResult<E> {
    entity.downcast().map_err(|other| {
        StoreError::corrupt(E::TABLE, format!("expected a {}, found a {}", E::NAME, other.entity_type()))
    })
}

/// New rows of every entity type, gathered to be inserted many to a statement.
#[derive(Default)]
pub(crate) struct NewRows {
    rows: HashMap<EntityType, Vec<EncodedRow>>,
}

impl NewRows {
    /// Queues `record` for insertion. Its entity was built from the wire `fields` through its
    /// type's validation (a pulled row): the columns take those fields as they are, without
    /// serialising the entity again. Reads decode the columns through the same validation.
    pub fn push(&mut self, record: &Record<AnyEntity>, fields: &BTreeMap<String, Value>) -> StoreResult<()> {
        let row = EncodedRow::with_fields(record, |name| fields.get(name))?;
        self.rows.entry(record.entity.entity_type()).or_default().push(row);
        Ok(())
    }

    /// Inserts every queued row, parents' types first ([`EntityType::all`]), as the tables'
    /// foreign keys need.
    pub fn insert(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        for &entity_type in EntityType::all() {
            if let Some(rows) = self.rows.remove(&entity_type) {
                TableSql::of(entity_type).insert(conn, &rows)?;
            }
        }
        Ok(())
    }
}

/// A row's tombstone flag, queued create and parent.
pub(crate) struct Presence {
    deleted: bool,
    pending_create: Option<OperationId>,
    parent: Option<EntityRef>,
}

/// Decodes loaded rows of `E` into entities.
pub(crate) fn decode_all<E: SyncEntity>(rows: Vec<StoredRow>) -> StoreResult<Vec<E>> {
    rows.into_iter().map(|row| typed(row.decode(E::ENTITY_TYPE)?.entity)).collect()
}

/// The record with `id` if it is visible: not a tombstone, inside a visible parent (a track
/// of a deleted project is hidden with it, without being written to).
pub(crate) fn find_visible(
    conn: &mut SqliteConnection,
    entity_type: EntityType,
    id: Uuid,
) -> StoreResult<Option<Record<AnyEntity>>> {
    let Some(record) = find(conn, entity_type, id)?.filter(|r| !r.meta.deleted) else {
        return Ok(None);
    };
    match record.entity.parent() {
        Some(parent) if visible(conn, parent)?.is_none() => Ok(None),
        _ => Ok(Some(record)),
    }
}

/// The visible record with `id`, or [`StoreError::NotFound`].
pub(crate) fn require_visible(
    conn: &mut SqliteConnection,
    entity_type: EntityType,
    id: Uuid,
) -> StoreResult<Record<AnyEntity>> {
    find_visible(conn, entity_type, id)?.ok_or(StoreError::NotFound(EntityRef::new(entity_type, id)))
}

/// The queued create of a visible entity of any type (`Some(None)`: visible, acknowledged);
/// `None` if it is missing, a tombstone, or inside a hidden parent. Reads no more than the
/// rows' flags, however deep the parents go.
pub(crate) fn visible(
    conn: &mut SqliteConnection,
    entity: EntityRef,
) -> StoreResult<Option<Option<OperationId>>> {
    match presence(conn, entity)? {
        Some(p) if !p.deleted => match p.parent {
            Some(parent) if visible(conn, parent)?.is_none() => Ok(None),
            _ => Ok(Some(p.pending_create)),
        },
        _ => Ok(None),
    }
}

/// Which of `ids` of `entity_type` have a row here (tombstones included): one query for many
/// lookups.
pub(crate) fn existing(
    conn: &mut SqliteConnection,
    entity_type: EntityType,
    ids: &[Uuid],
) -> StoreResult<Vec<Uuid>> {
    // The ids go in as one JSON array, not an `IN` list of a parameter each: the statement's
    // text is then the same however many there are, so it is prepared once and cached.
    let table = TableSql::of(entity_type);
    let found = table.existing(conn, &to_json(table.table, &ids)?)?;
    found.iter().map(|id| parse(table.table, id)).collect()
}

/// The flags of `entity`'s row of any type, tombstone or not; `None` if no row is stored.
pub(crate) fn presence(conn: &mut SqliteConnection, entity: EntityRef) -> StoreResult<Option<Presence>> {
    let table = TableSql::of(entity.entity_type);
    let Some(row) = table.presence(conn, entity.id)? else {
        return Ok(None);
    };
    let pending_create = row.pending_create.map(|id| parse(table.table, &id)).transpose()?;
    let parent = match (entity.entity_type.parent_type(), row.parent) {
        (Some(parent_type), Some(id)) => Some(EntityRef::new(parent_type, parse(table.table, &id)?)),
        _ => None,
    };
    Ok(Some(Presence { deleted: row.deleted, pending_create, parent }))
}

/// Checks that what `entity` references is visible, and returns the queued creates of those
/// references that the server has not acknowledged yet: the new operation waits for them.
/// A reference the entity already had (`before`) stays acceptable after its target is deleted —
/// a playlist can still be renamed after one of its tracks is gone.
fn check_references(
    conn: &mut SqliteConnection,
    entity: &AnyEntity,
    before: Option<&AnyEntity>,
) -> StoreResult<Vec<OperationId>> {
    let kept = before.map(AnyEntity::references).unwrap_or_default();
    let mut depends_on = Vec::new();
    for reference in entity.references() {
        match visible(conn, reference)? {
            Some(pending_create) => depends_on.extend(pending_create),
            None if kept.contains(&reference) => {}
            None => return Err(StoreError::NotFound(reference)),
        }
    }
    Ok(depends_on)
}

/// The checks a write of `entity` passes inside its transaction beyond its references: its
/// type's own (`SyncEntity::check_write`), and for a type that names a file, that the file is
/// in the local cache, with its upload queued. Returns the operations the write waits for.
fn declared_checks(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity: (&AnyEntity, &BTreeMap<String, Value>),
    before: Option<(&AnyEntity, &BTreeMap<String, Value>)>,
) -> StoreResult<Vec<OperationId>> {
    let mut context = StoreContext { conn, failure: None };
    if let Err(refused) = entity.0.check_write(before.map(|(b, _)| b), &mut context) {
        return Err(context.failure.take().unwrap_or_else(|| refusal(refused)));
    }
    let Some(field) = entity.0.entity_type().blob_field() else { return Ok(Vec::new()) };
    fn hash_of<'f>(fields: &'f BTreeMap<String, Value>, field: &str) -> Option<&'f str> {
        fields.get(field).and_then(Value::as_str)
    }
    match hash_of(entity.1, field) {
        Some(hash) if before.and_then(|(_, fields)| hash_of(fields, field)) != Some(hash) => {
            super::blobs::queue_upload(conn, clock, entity.0.entity_ref(), field, hash)
        }
        _ => Ok(Vec::new()),
    }
}

/// Refuses a write that the signed-in user's role, as this device knows it, forbids: the rules
/// the server applies ([`authorize`], [`authorize_author`]), judged on the memberships stored
/// here, so that a write the server would refuse is never made locally. A write this device
/// cannot judge goes ahead and the server decides: nobody is signed in, no grant of the scope to
/// the user is stored, or it creates a new scope root (the server checks that it names its
/// creator as the owner).
fn check_role(
    conn: &mut SqliteConnection,
    entity: &AnyEntity,
    before: Option<&AnyEntity>,
    kind: OperationKind,
) -> StoreResult<()> {
    let Some(session) = super::session::load(conn)? else { return Ok(()) };
    let user = session.user_id;
    let entity_type = entity.entity_type();
    let relation = match entity.scope() {
        Scope::User(owner) => Relation::Profile { own: owner == user, shares_project: false },
        Scope::Shared(_) if entity_type.is_scope_root() && before.is_none() => return Ok(()),
        Scope::Shared(scope) => match role_in(conn, scope, user)? {
            Some(role) => Relation::Member(Some(role)),
            None => return Ok(()),
        },
    };
    let author = before.and_then(AnyEntity::author);
    authorize(entity_type, Access::Write(kind), relation)
        .and_then(|()| match relation {
            Relation::Member(role) => authorize_author(entity_type, kind, author, user, role),
            Relation::Profile { .. } => Ok(()),
        })
        .map_err(|denied| StoreError::Forbidden(denied.message))
}

/// The best role `user` holds in shared scope `root` by the grants stored here, if any.
fn role_in(
    conn: &mut SqliteConnection,
    root: ScopeId,
    user: UserId,
) -> StoreResult<Option<CollaboratorRole>> {
    let (root_id, user_id) = (root.to_string(), user.to_string());
    let mut best = None;
    for &entity_type in EntityType::all() {
        let Some(rows) = TableSql::of(entity_type).grants(conn, &root_id, &user_id) else { continue };
        for row in rows? {
            let grant = row.decode(entity_type)?.entity.membership();
            if let Some(grant) = grant.filter(|g| g.scope == root && g.user_id == user) {
                best = Some(best.map_or(grant.role, |role: CollaboratorRole| role.min(grant.role)));
            }
        }
    }
    Ok(best)
}

/// A write check's refusal as a store error.
fn refusal(error: RepositoryError) -> StoreError {
    match error {
        RepositoryError::NotFound(entity) => StoreError::NotFound(entity),
        RepositoryError::Validation(invalid) => StoreError::Validation(invalid),
        RepositoryError::Forbidden(message) => StoreError::Forbidden(message),
        other => StoreError::Conflict(other.to_string()),
    }
}

/// The store as a write check reads it. A failure of the store itself is kept, so the write
/// fails with it rather than with its description.
struct StoreContext<'c> {
    conn: &'c mut SqliteConnection,
    failure: Option<StoreError>,
}

impl StoreContext<'_> {
    fn keep<T>(&mut self, result: StoreResult<T>) -> Result<T, RepositoryError> {
        result.map_err(|failure| {
            let reported =
                RepositoryError::Storage { transient: failure.is_transient(), message: failure.to_string() };
            self.failure = Some(failure);
            reported
        })
    }
}

impl WriteContext for StoreContext<'_> {
    fn visible(&mut self, entity: EntityRef) -> Result<Option<BTreeMap<String, Value>>, RepositoryError> {
        let found = visible(self.conn, entity).and_then(|shown| match shown {
            Some(_) => TableSql::of(entity.entity_type)
                .find(self.conn, entity.id)?
                .map(|row| row.fields(entity.entity_type.table()))
                .transpose(),
            None => Ok(None),
        });
        self.keep(found)
    }

    fn children(
        &mut self,
        entity_type: EntityType,
        parent: Uuid,
    ) -> Result<Vec<IdentifiedFields>, RepositoryError> {
        let table = TableSql::of(entity_type);
        let rows = match table.list_inside(self.conn, parent) {
            Some(rows) => rows.and_then(|rows| {
                rows.into_iter()
                    .map(|row| Ok((parse(table.table, &row.id)?, row.fields(table.table)?)))
                    .collect()
            }),
            None => Ok(Vec::new()),
        };
        self.keep(rows)
    }
}

/// Stores a new entity and queues its create.
pub(crate) fn create(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity: AnyEntity,
    changes: &mut Changes,
) -> StoreResult<AnyEntity> {
    conn.immediate_transaction(|conn| {
        let entity_ref = entity.entity_ref();
        check_role(conn, &entity, None, OperationKind::Create)?;
        let fields = entity.fields();
        changes.entity_with(&entity, &[&fields], ChangeKind::Created, ChangeOrigin::Local);
        let mut depends_on = check_references(conn, &entity, None)?;
        depends_on.extend(declared_checks(conn, clock, (&entity, &fields), None)?);
        let hlc = clock.tick(conn)?;
        let op =
            SyncOperation::new(entity_ref, OperationKind::Create, fields, hlc, 0, depends_on, clock.now());
        let meta = SyncMeta::created_locally(op.changed_fields.keys(), hlc, op.id);
        let record = Record { entity, meta };
        // The primary key catches a duplicate id without a lookup of its own.
        insert(conn, &record, &op).map_err(|e| match e {
            StoreError::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => StoreError::Conflict(format!("{entity_ref} already exists")),
            other => other,
        })?;
        outbox::insert(conn, &op)?;
        Ok(record.entity)
    })
}

/// Applies `change` to a visible entity and queues an update carrying only the fields that
/// changed. A change that changes nothing writes nothing and queues nothing.
pub(crate) fn update(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity_type: EntityType,
    id: Uuid,
    change: impl FnOnce(&AnyEntity) -> StoreResult<AnyEntity>,
    changes: &mut Changes,
) -> StoreResult<AnyEntity> {
    conn.immediate_transaction(|conn| {
        let record = require_visible(conn, entity_type, id)?;
        clock.follow(&record.meta);
        let after = change(&record.entity)?;
        let before_fields = record.entity.fields();
        let after_fields = after.fields();
        let changed = changed_values(&before_fields, &after_fields);
        if changed.is_empty() {
            return Ok(after);
        }
        check_role(conn, &after, Some(&record.entity), OperationKind::Update)?;
        let mut depends_on = check_references(conn, &after, Some(&record.entity))?;
        let checked =
            declared_checks(conn, clock, (&after, &after_fields), Some((&record.entity, &before_fields)))?;
        depends_on.extend(checked);
        changes.entity_with(
            &after,
            &[&before_fields, &after_fields],
            ChangeKind::Updated,
            ChangeOrigin::Local,
        );
        queue_update(conn, clock, record, after, changed, depends_on)
    })
}

/// Writes `values` over fields of a visible entity and queues an update carrying every one of
/// them, changed or not, at a new clock reading: the write wins over every earlier write of
/// those fields on every replica (a resolved conflict). Runs inside the caller's transaction.
pub(crate) fn overwrite(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity_type: EntityType,
    id: Uuid,
    values: &BTreeMap<String, Value>,
    changes: &mut Changes,
) -> StoreResult<AnyEntity> {
    let record = require_visible(conn, entity_type, id)?;
    clock.follow(&record.meta);
    let mut fields = record.entity.fields();
    for (name, value) in values {
        let Some(current) = fields.get_mut(name) else {
            return Err(ValidationError::new("fields", format!("{entity_type} has no field '{name}'")).into());
        };
        if entity_type.immutable_fields().contains(&name.as_str()) && current != value {
            let reason = format!("'{name}' is set when the entity is created and never changes");
            return Err(ValidationError::new("fields", reason).into());
        }
        *current = value.clone();
    }
    let after = AnyEntity::from_fields(entity_type, id, &fields)?;
    check_role(conn, &after, Some(&record.entity), OperationKind::Update)?;
    let depends_on = check_references(conn, &after, Some(&record.entity))?;
    changes.entity(&after, Some(&record.entity), ChangeKind::Updated, ChangeOrigin::Resolution);
    queue_update(conn, clock, record, after, values.clone(), depends_on)
}

/// Stores `after` as `record`'s entity with `fields` written at a new reading, and queues the
/// update that carries them.
fn queue_update(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    mut record: Record<AnyEntity>,
    after: AnyEntity,
    fields: BTreeMap<String, Value>,
    depends_on: Vec<OperationId>,
) -> StoreResult<AnyEntity> {
    let hlc = clock.tick(conn)?;
    record.meta.touch(fields.keys(), hlc);
    record.entity = after.clone();
    save(conn, &record)?;
    let op = SyncOperation::new(
        after.entity_ref(),
        OperationKind::Update,
        fields,
        hlc,
        record.meta.version,
        depends_on,
        clock.now(),
    );
    outbox::insert(conn, &op)?;
    Ok(after)
}

/// Tombstones a visible entity and queues its delete. What lies inside it (a project's tracks,
/// a track's comments) is hidden by [`find_visible`] without being written: the server cascades
/// the delete, and if it refuses it, reverting the one tombstone brings everything back.
pub(crate) fn delete(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity_type: EntityType,
    id: Uuid,
    changes: &mut Changes,
) -> StoreResult<()> {
    conn.immediate_transaction(|conn| {
        let mut record = require_visible(conn, entity_type, id)?;
        check_role(conn, &record.entity, Some(&record.entity), OperationKind::Delete)?;
        clock.follow(&record.meta);
        let hlc = clock.tick(conn)?;
        record.meta.deleted = true;
        record.meta.queued += 1;
        save(conn, &record)?;
        let op = SyncOperation::new(
            record.entity.entity_ref(),
            OperationKind::Delete,
            Default::default(),
            hlc,
            record.meta.version,
            record.meta.pending_create.into_iter().collect(),
            clock.now(),
        );
        outbox::insert(conn, &op)?;
        changes.entity(&record.entity, None, ChangeKind::Deleted, ChangeOrigin::Local);
        changes.inside(conn, record.entity.entity_ref(), ChangeKind::HiddenWithParent, ChangeOrigin::Local)
    })
}

/// The shared write path as async calls over typed entities, so each repository method is one
/// line.
impl super::LocalStore {
    /// [`create`] on the blocking path.
    pub(crate) async fn create_entity<E: SyncEntity>(&self, entity: E) -> Result<E, RepositoryError> {
        self.write(move |conn, clock, changes| typed(create(conn, clock, AnyEntity::new(entity), changes)?))
            .await
    }

    /// [`update`] on the blocking path.
    pub(crate) async fn update_entity<E, F>(&self, id: Uuid, change: F) -> Result<E, RepositoryError>
    where
        E: SyncEntity,
        F: FnOnce(&E) -> Result<E, ValidationError> + Send + 'static,
    {
        self.write(move |conn, clock, changes| {
            let change = |before: &AnyEntity| {
                let before = before
                    .downcast_ref::<E>()
                    .ok_or_else(|| StoreError::corrupt(E::TABLE, "another type"))?;
                Ok(AnyEntity::new(change(before)?))
            };
            let changed = update(conn, clock, E::ENTITY_TYPE, id, change, changes)?;
            typed(changed)
        })
        .await
    }

    /// [`delete`] on the blocking path.
    pub(crate) async fn delete_entity<E: SyncEntity>(&self, id: Uuid) -> Result<(), RepositoryError> {
        self.write(move |conn, clock, changes| delete(conn, clock, E::ENTITY_TYPE, id, changes)).await
    }

    /// The visible entity with `id`, if any.
    pub(crate) async fn get_visible<E: SyncEntity>(&self, id: Uuid) -> Result<Option<E>, RepositoryError> {
        self.read(move |conn| find_visible(conn, E::ENTITY_TYPE, id)?.map(|r| typed(r.entity)).transpose())
            .await
    }

    /// Runs a list query for the children of `parent` and decodes its rows; a hidden or
    /// missing parent has no visible children. The query filters out tombstones itself.
    pub(crate) async fn list<E, Q>(
        &self,
        parent: Option<EntityRef>,
        query: Q,
    ) -> Result<Vec<E>, RepositoryError>
    where
        E: SyncEntity,
        Q: FnOnce(&mut SqliteConnection) -> StoreResult<Vec<StoredRow>> + Send + 'static,
    {
        self.read(move |conn| match parent {
            Some(parent) if visible(conn, parent)?.is_none() => Ok(Vec::new()),
            _ => decode_all(query(conn)?),
        })
        .await
    }
}
