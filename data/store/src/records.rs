//! Entity writes and reads written once for every entity type. Each write is one SQLite
//! `BEGIN IMMEDIATE` transaction that changes the row and appends its outbox operation, so
//! either both exist afterwards or neither does.

use super::{
    outbox,
    rows::{
        parse, to_json, AudioCommentRow, AudioTrackRow, CollaboratorRow, EntityRow, PlaylistRow, ProjectRow,
        Record, UserProfileRow,
    },
    schema,
};
use diesel::prelude::*;
use serde_json::Value;
use std::{collections::BTreeMap, sync::Arc};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    entities::changed_fields, ports::Clock, AudioComment, AudioTrack, EntityRef, EntityType, Hlc,
    HybridLogicalClock, NodeId, OperationId, OperationKind, Playlist, Project, ProjectCollaborator,
    RepositoryError, SyncEntity, SyncMeta, SyncOperation, Timestamp, UserProfile, ValidationError,
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
pub(crate) struct WriteClock {
    hlc: HybridLogicalClock,
    clock: Arc<dyn Clock>,
}

/// The `local_settings` key of the stored clock floor (see [`WriteClock`]).
const HLC_HIGH_WATER: &str = "hlc_high_water";

fn high_water(conn: &mut SqliteConnection) -> StoreResult<Option<Hlc>> {
    use schema::local_settings::dsl::{local_settings, value};
    let stored: Option<String> =
        local_settings.find(HLC_HIGH_WATER).select(value).get_result(conn).optional()?;
    stored.map(|text| parse("local_settings", &text)).transpose()
}

/// Stores `reading` as the clock floor if it is higher than the stored one. Call it before
/// removing outbox operations, with the largest reading removed.
pub(crate) fn raise_high_water(conn: &mut SqliteConnection, reading: Hlc) -> StoreResult<()> {
    use schema::local_settings::dsl::{key, local_settings, value};
    if high_water(conn)?.is_some_and(|stored| stored >= reading) {
        return Ok(());
    }
    diesel::replace_into(local_settings)
        .values((key.eq(HLC_HIGH_WATER), value.eq(reading.to_string())))
        .execute(conn)?;
    Ok(())
}

impl WriteClock {
    pub fn new(replica: NodeId, clock: Arc<dyn Clock>) -> Self {
        Self { hlc: HybridLogicalClock::new(replica), clock }
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
        // Both: acknowledgements may remove the newest operation while older ones stay queued,
        // and then only the stored floor remembers its reading.
        for floor in [outbox::newest_hlc(conn)?, high_water(conn)?].into_iter().flatten() {
            self.hlc.advance_to(floor);
        }
        Ok(self.hlc.now(u64::try_from(self.now().as_millis()).unwrap_or(0)))
    }
}

/// An entity type with a table in the local store.
pub(crate) trait LocalEntity: SyncEntity {
    /// The row type.
    type Row: EntityRow<Entity = Self> + Send + 'static;

    /// The row with `id`, tombstone or not.
    fn find(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<Record<Self>>>;
    /// Inserts a new row.
    fn insert(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()>;
    /// Inserts new rows, many to a statement.
    fn insert_all(conn: &mut SqliteConnection, rows: &[Self::Row]) -> StoreResult<()>;
    /// This type's rows in `rows`.
    fn new_rows(rows: &mut NewRows) -> &mut Vec<Self::Row>;
    /// Overwrites an existing row.
    fn save(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()>;

    /// What visibility and dependency checks need, read without decoding the row: whether it is
    /// a tombstone, its queued create, and its parent.
    fn presence(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<Presence>>;
}

/// New rows of every entity type, gathered to be inserted many to a statement
/// ([`LocalEntity::insert_all`]).
#[derive(Default)]
pub(crate) struct NewRows {
    profiles: Vec<UserProfileRow>,
    projects: Vec<ProjectRow>,
    collaborators: Vec<CollaboratorRow>,
    tracks: Vec<AudioTrackRow>,
    comments: Vec<AudioCommentRow>,
    playlists: Vec<PlaylistRow>,
}

impl NewRows {
    /// Queues `record` for insertion.
    pub fn push<E: LocalEntity>(&mut self, record: &Record<E>) -> StoreResult<()> {
        E::new_rows(self).push(E::Row::encode(record)?);
        Ok(())
    }

    /// Inserts every queued row, parents' types first ([`EntityType::ALL`]), as the tables'
    /// foreign keys need.
    pub fn insert(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        fn insert<E: LocalEntity>(conn: &mut SqliteConnection, rows: &mut NewRows) -> StoreResult<()> {
            let rows = std::mem::take(E::new_rows(rows));
            E::insert_all(conn, &rows)
        }
        for entity_type in EntityType::ALL {
            match entity_type {
                EntityType::UserProfile => insert::<UserProfile>(conn, self)?,
                EntityType::Project => insert::<Project>(conn, self)?,
                EntityType::ProjectCollaborator => insert::<ProjectCollaborator>(conn, self)?,
                EntityType::AudioTrack => insert::<AudioTrack>(conn, self)?,
                EntityType::AudioComment => insert::<AudioComment>(conn, self)?,
                EntityType::Playlist => insert::<Playlist>(conn, self)?,
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

impl Presence {
    fn new(deleted: bool, pending_create: Option<String>, parent: Option<EntityRef>) -> StoreResult<Self> {
        let pending_create = pending_create.map(|id| parse("pending_create", &id)).transpose()?;
        Ok(Self { deleted, pending_create, parent })
    }
}

/// Implements [`LocalEntity`] for an entity over its table; `parent: column => type` names the
/// column holding the id of the entity it lives inside.
macro_rules! local_entity {
    ($entity:ty, $row:ty, $table:ident, $rows:ident) => {
        local_entity!(@impl $entity, $row, $table, $rows, |conn, id| {
            let row: Option<(bool, Option<String>)> = schema::$table::table
                .find(id.to_string())
                .select((schema::$table::deleted, schema::$table::pending_create))
                .get_result(conn)
                .optional()?;
            row.map(|(deleted, pending)| Presence::new(deleted, pending, None)).transpose()
        });
    };
    ($entity:ty, $row:ty, $table:ident, $rows:ident, parent: $column:ident => $parent:expr) => {
        local_entity!(@impl $entity, $row, $table, $rows, |conn, id| {
            let row: Option<(bool, Option<String>, String)> = schema::$table::table
                .find(id.to_string())
                .select((schema::$table::deleted, schema::$table::pending_create, schema::$table::$column))
                .get_result(conn)
                .optional()?;
            row.map(|(deleted, pending, parent)| {
                let parent = EntityRef::new($parent, parse(stringify!($table), &parent)?);
                Presence::new(deleted, pending, Some(parent))
            })
            .transpose()
        });
    };
    (@impl $entity:ty, $row:ty, $table:ident, $rows:ident, |$conn:ident, $id:ident| $presence:block) => {
        impl LocalEntity for $entity {
            type Row = $row;

            fn find(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<Record<Self>>> {
                // `get_result`, not `first`: `first` adds `LIMIT ?`, and SQLite re-prepares a
                // statement with a bound LIMIT every time the parameter is bound again, which
                // defeats Diesel's statement cache on the hottest lookup.
                schema::$table::table
                    .find(id.to_string())
                    .select(<$row>::as_select())
                    .get_result(conn)
                    .optional()?
                    .map(EntityRow::decode)
                    .transpose()
            }

            fn insert(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()> {
                diesel::insert_into(schema::$table::table).values(<$row>::encode(record)?).execute(conn)?;
                Ok(())
            }

            fn insert_all(conn: &mut SqliteConnection, rows: &[$row]) -> StoreResult<()> {
                /// Inserts `rows` N to a statement and returns the rest (fewer than N). Each N
                /// is one prepared statement, kept in Diesel's statement cache.
                fn by<'r, const N: usize>(
                    conn: &mut SqliteConnection,
                    rows: &'r [$row],
                ) -> StoreResult<&'r [$row]> {
                    let mut chunks = rows.chunks_exact(N);
                    for chunk in &mut chunks {
                        let chunk: &[$row; N] = chunk.try_into().expect("chunks_exact yields N rows");
                        diesel::insert_into(schema::$table::table).values(chunk).execute(conn)?;
                    }
                    Ok(chunks.remainder())
                }
                let rest = by::<64>(conn, rows)?;
                let rest = by::<8>(conn, rest)?;
                by::<1>(conn, rest)?;
                Ok(())
            }

            fn new_rows(rows: &mut NewRows) -> &mut Vec<$row> {
                &mut rows.$rows
            }

            fn save(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()> {
                let id = record.entity.entity_id().to_string();
                diesel::update(schema::$table::table.find(id)).set(<$row>::encode(record)?).execute(conn)?;
                Ok(())
            }

            fn presence($conn: &mut SqliteConnection, $id: Uuid) -> StoreResult<Option<Presence>> $presence
        }
    };
}

local_entity!(Project, ProjectRow, projects, projects);
local_entity!(UserProfile, UserProfileRow, user_profiles, profiles);
local_entity!(ProjectCollaborator, CollaboratorRow, project_collaborators, collaborators, parent: project_id => EntityType::Project);
local_entity!(AudioTrack, AudioTrackRow, audio_tracks, tracks, parent: project_id => EntityType::Project);
local_entity!(AudioComment, AudioCommentRow, audio_comments, comments, parent: track_id => EntityType::AudioTrack);
local_entity!(Playlist, PlaylistRow, playlists, playlists, parent: project_id => EntityType::Project);

/// Decodes loaded rows into entities.
pub(crate) fn decode_all<R: EntityRow>(rows: Vec<R>) -> StoreResult<Vec<R::Entity>> {
    rows.into_iter().map(|row| row.decode().map(|r| r.entity)).collect()
}

/// The record with `id` if it is visible: not a tombstone, inside a visible parent (a track
/// of a deleted project is hidden with it, without being written to).
pub(crate) fn find_visible<E: LocalEntity>(
    conn: &mut SqliteConnection,
    id: Uuid,
) -> StoreResult<Option<Record<E>>> {
    let Some(record) = E::find(conn, id)?.filter(|r| !r.meta.deleted) else {
        return Ok(None);
    };
    match record.entity.parent() {
        Some(parent) if visible(conn, parent)?.is_none() => Ok(None),
        _ => Ok(Some(record)),
    }
}

/// The visible record with `id`, or [`StoreError::NotFound`].
pub(crate) fn require_visible<E: LocalEntity>(
    conn: &mut SqliteConnection,
    id: Uuid,
) -> StoreResult<Record<E>> {
    find_visible(conn, id)?.ok_or(StoreError::NotFound(EntityRef::new(E::ENTITY_TYPE, id)))
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
    let ids = to_json(entity_type.as_str(), &ids)?;
    let listed = diesel::dsl::sql::<diesel::sql_types::Bool>("id IN (SELECT value FROM json_each(")
        .bind::<diesel::sql_types::Text, _>(ids)
        .sql("))");
    let found: Vec<String> =
        with_entity_table!(entity_type, t => t::table.filter(listed).select(t::id).load(conn))?;
    found.iter().map(|id| parse(entity_type.as_str(), id)).collect()
}

/// The flags of `entity`'s row of any type, tombstone or not; `None` if no row is stored.
pub(crate) fn presence(conn: &mut SqliteConnection, entity: EntityRef) -> StoreResult<Option<Presence>> {
    match entity.entity_type {
        EntityType::Project => Project::presence(conn, entity.id),
        EntityType::UserProfile => UserProfile::presence(conn, entity.id),
        EntityType::ProjectCollaborator => ProjectCollaborator::presence(conn, entity.id),
        EntityType::AudioTrack => AudioTrack::presence(conn, entity.id),
        EntityType::AudioComment => AudioComment::presence(conn, entity.id),
        EntityType::Playlist => Playlist::presence(conn, entity.id),
    }
}

/// Checks that what `entity` references is visible, and returns the queued creates of those
/// references that the server has not acknowledged yet: the new operation waits for them.
/// A reference the entity already had (`before`) stays acceptable after its target is deleted —
/// a playlist can still be renamed after one of its tracks is gone.
fn check_references<E: SyncEntity>(
    conn: &mut SqliteConnection,
    entity: &E,
    before: Option<&E>,
) -> StoreResult<Vec<OperationId>> {
    let kept = before.map(SyncEntity::references).unwrap_or_default();
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

/// An extra, entity-specific check run inside the write transaction, given the new state and,
/// for an update, the state before it. It may queue operations the write needs first (a
/// track's audio upload) and returns them: the write's operation depends on them.
pub(crate) type Check<E> =
    fn(&mut SqliteConnection, &WriteClock, &E, Option<&E>) -> StoreResult<Vec<OperationId>>;

/// A check that accepts everything and needs nothing first.
pub(crate) fn no_check<E>(
    _: &mut SqliteConnection,
    _: &WriteClock,
    _: &E,
    _: Option<&E>,
) -> StoreResult<Vec<OperationId>> {
    Ok(Vec::new())
}

/// Stores a new entity and queues its create.
pub(crate) fn create<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity: E,
    check: Check<E>,
) -> StoreResult<E> {
    conn.immediate_transaction(|conn| {
        let entity_ref = entity.entity_ref();
        let mut depends_on = check_references(conn, &entity, None)?;
        depends_on.extend(check(conn, clock, &entity, None)?);
        let hlc = clock.tick(conn)?;
        let op = SyncOperation::new(
            entity_ref,
            OperationKind::Create,
            entity.fields(),
            hlc,
            0,
            depends_on,
            clock.now(),
        );
        let meta = SyncMeta::created_locally(op.changed_fields.keys(), hlc, op.id);
        let record = Record { entity, meta };
        // The primary key catches a duplicate id without a lookup of its own.
        E::insert(conn, &record).map_err(|e| match e {
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
pub(crate) fn update<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    id: Uuid,
    change: impl FnOnce(&E) -> Result<E, ValidationError>,
    check: Check<E>,
) -> StoreResult<E> {
    conn.immediate_transaction(|conn| {
        let record = require_visible::<E>(conn, id)?;
        clock.follow(&record.meta);
        let after = change(&record.entity)?;
        let changed = changed_fields(&record.entity, &after);
        if changed.is_empty() {
            return Ok(after);
        }
        let mut depends_on = check_references(conn, &after, Some(&record.entity))?;
        depends_on.extend(check(conn, clock, &after, Some(&record.entity))?);
        queue_update(conn, clock, record, after, changed, depends_on)
    })
}

/// Writes `values` over fields of a visible entity and queues an update carrying every one of
/// them, changed or not, at a new clock reading: the write wins over every earlier write of
/// those fields on every replica (a resolved conflict). Runs inside the caller's transaction.
pub(crate) fn overwrite<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    id: Uuid,
    values: &BTreeMap<String, Value>,
) -> StoreResult<E> {
    let record = require_visible::<E>(conn, id)?;
    clock.follow(&record.meta);
    let mut fields = record.entity.fields();
    for (name, value) in values {
        let Some(current) = fields.get_mut(name) else {
            return Err(
                ValidationError::new("fields", format!("{} has no field '{name}'", E::ENTITY_TYPE)).into()
            );
        };
        if E::IMMUTABLE.contains(&name.as_str()) && current != value {
            let reason = format!("'{name}' is set when the entity is created and never changes");
            return Err(ValidationError::new("fields", reason).into());
        }
        *current = value.clone();
    }
    let after = E::from_fields(id, &fields)?;
    let depends_on = check_references(conn, &after, Some(&record.entity))?;
    queue_update(conn, clock, record, after, values.clone(), depends_on)
}

/// Stores `after` as `record`'s entity with `fields` written at a new reading, and queues the
/// update that carries them.
fn queue_update<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    mut record: Record<E>,
    after: E,
    fields: BTreeMap<String, Value>,
    depends_on: Vec<OperationId>,
) -> StoreResult<E> {
    let hlc = clock.tick(conn)?;
    record.meta.touch(fields.keys(), hlc);
    record.entity = after.clone();
    E::save(conn, &record)?;
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
pub(crate) fn delete<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    id: Uuid,
) -> StoreResult<()> {
    conn.immediate_transaction(|conn| {
        let mut record = require_visible::<E>(conn, id)?;
        clock.follow(&record.meta);
        let hlc = clock.tick(conn)?;
        record.meta.deleted = true;
        record.meta.dirty = true;
        E::save(conn, &record)?;
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
        Ok(())
    })
}

/// The shared write path as async calls, so each repository method is one line.
impl super::LocalStore {
    /// [`create`] on the blocking path.
    pub(crate) async fn create_entity<E: LocalEntity>(
        &self,
        entity: E,
        check: Check<E>,
    ) -> Result<E, RepositoryError> {
        self.write(move |conn, clock| create(conn, clock, entity, check)).await
    }

    /// [`update`] on the blocking path.
    pub(crate) async fn update_entity<E, F>(
        &self,
        id: Uuid,
        change: F,
        check: Check<E>,
    ) -> Result<E, RepositoryError>
    where
        E: LocalEntity,
        F: FnOnce(&E) -> Result<E, ValidationError> + Send + 'static,
    {
        self.write(move |conn, clock| update(conn, clock, id, change, check)).await
    }

    /// [`delete`] on the blocking path.
    pub(crate) async fn delete_entity<E: LocalEntity>(&self, id: Uuid) -> Result<(), RepositoryError> {
        self.write(move |conn, clock| delete::<E>(conn, clock, id)).await
    }

    /// The visible entity with `id`, if any.
    pub(crate) async fn get_visible<E: LocalEntity>(&self, id: Uuid) -> Result<Option<E>, RepositoryError> {
        self.read(move |conn| Ok(find_visible::<E>(conn, id)?.map(|r| r.entity))).await
    }

    /// Runs a list query for the children of `parent` and decodes its rows; a hidden or
    /// missing parent has no visible children. The query filters out tombstones itself.
    pub(crate) async fn list<R, Q>(
        &self,
        parent: Option<EntityRef>,
        query: Q,
    ) -> Result<Vec<R::Entity>, RepositoryError>
    where
        R: EntityRow + Send + 'static,
        Q: FnOnce(&mut SqliteConnection) -> QueryResult<Vec<R>> + Send + 'static,
    {
        self.read(move |conn| match parent {
            Some(parent) if visible(conn, parent)?.is_none() => Ok(Vec::new()),
            _ => decode_all(query(conn)?),
        })
        .await
    }
}
