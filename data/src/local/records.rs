//! Entity writes and reads written once for every entity type. Each write is one SQLite
//! `BEGIN IMMEDIATE` transaction that changes the row and appends its outbox operation, so
//! either both exist afterwards or neither does.

use super::{
    outbox,
    rows::{
        AudioCommentRow, AudioTrackRow, CollaboratorRow, EntityRow, PlaylistRow, ProjectRow, Record,
        UserProfileRow,
    },
    schema,
};
use crate::error::{StoreError, StoreResult};
use diesel::prelude::*;
use std::sync::Arc;
use trackflow_domain::{
    entities::changed_fields, ports::Clock, AudioComment, AudioTrack, EntityRef, EntityType, Hlc,
    HybridLogicalClock, NodeId, OperationId, OperationKind, Playlist, Project, ProjectCollaborator,
    RepositoryError, SyncEntity, SyncMeta, SyncOperation, Timestamp, UserProfile, ValidationError,
};
use uuid::Uuid;

/// The replica's clocks: wall time for `created_at` and the hybrid logical clock for write
/// ordering.
pub(crate) struct WriteClock {
    hlc: HybridLogicalClock,
    clock: Arc<dyn Clock>,
}

impl WriteClock {
    pub fn new(replica: NodeId, floor: Option<Hlc>, clock: Arc<dyn Clock>) -> Self {
        let hlc = HybridLogicalClock::new(replica);
        if let Some(floor) = floor {
            hlc.advance_to(floor);
        }
        Self { hlc, clock }
    }

    pub fn replica(&self) -> NodeId {
        self.hlc.node()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn tick(&self) -> Hlc {
        self.hlc.now(u64::try_from(self.now().as_millis()).unwrap_or(0))
    }
}

/// An entity type with a table in the local store.
pub(crate) trait LocalEntity: SyncEntity {
    /// The row type.
    type Row: EntityRow<Entity = Self>;

    /// The row with `id`, tombstone or not.
    fn find(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<Record<Self>>>;
    /// Inserts a new row.
    fn insert(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()>;
    /// Overwrites an existing row.
    fn save(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()>;
}

macro_rules! local_entity {
    ($entity:ty, $row:ty, $table:ident) => {
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

            fn save(conn: &mut SqliteConnection, record: &Record<Self>) -> StoreResult<()> {
                let id = record.entity.entity_id().to_string();
                diesel::update(schema::$table::table.find(id)).set(<$row>::encode(record)?).execute(conn)?;
                Ok(())
            }
        }
    };
}

local_entity!(Project, ProjectRow, projects);
local_entity!(UserProfile, UserProfileRow, user_profiles);
local_entity!(ProjectCollaborator, CollaboratorRow, project_collaborators);
local_entity!(AudioTrack, AudioTrackRow, audio_tracks);
local_entity!(AudioComment, AudioCommentRow, audio_comments);
local_entity!(Playlist, PlaylistRow, playlists);

/// Decodes loaded rows into entities.
pub(crate) fn decode_all<R: EntityRow>(rows: Vec<R>) -> StoreResult<Vec<R::Entity>> {
    rows.into_iter().map(|row| row.decode().map(|r| r.entity)).collect()
}

/// The live (not tombstoned) entity with `id`, if any.
pub(crate) fn find_live<E: LocalEntity>(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<E>> {
    Ok(E::find(conn, id)?.filter(|r| !r.meta.deleted).map(|r| r.entity))
}

/// The live record with `id`, or [`StoreError::NotFound`].
pub(crate) fn require_live<E: LocalEntity>(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Record<E>> {
    E::find(conn, id)?
        .filter(|r| !r.meta.deleted)
        .ok_or(StoreError::NotFound(EntityRef::new(E::ENTITY_TYPE, id)))
}

/// The sync metadata of a live entity, or `None` if it does not exist or is a tombstone.
fn live_meta(conn: &mut SqliteConnection, entity: EntityRef) -> StoreResult<Option<SyncMeta>> {
    fn meta<E: LocalEntity>(conn: &mut SqliteConnection, id: Uuid) -> StoreResult<Option<SyncMeta>> {
        Ok(E::find(conn, id)?.filter(|r| !r.meta.deleted).map(|r| r.meta))
    }
    match entity.entity_type {
        EntityType::Project => meta::<Project>(conn, entity.id),
        EntityType::UserProfile => meta::<UserProfile>(conn, entity.id),
        EntityType::ProjectCollaborator => meta::<ProjectCollaborator>(conn, entity.id),
        EntityType::AudioTrack => meta::<AudioTrack>(conn, entity.id),
        EntityType::AudioComment => meta::<AudioComment>(conn, entity.id),
        EntityType::Playlist => meta::<Playlist>(conn, entity.id),
    }
}

/// Checks that everything `entity` references exists and is live, and returns the queued
/// creates of those references that the server has not acknowledged yet: the new operation
/// must wait for them.
fn check_references<E: SyncEntity>(conn: &mut SqliteConnection, entity: &E) -> StoreResult<Vec<OperationId>> {
    let mut depends_on = Vec::new();
    for reference in entity.references() {
        let meta = live_meta(conn, reference)?.ok_or(StoreError::NotFound(reference))?;
        depends_on.extend(meta.pending_create);
    }
    Ok(depends_on)
}

/// An extra, entity-specific check run inside the write transaction.
pub(crate) type Check<E> = fn(&mut SqliteConnection, &E) -> StoreResult<()>;

/// What a delete also hides locally, run inside its transaction.
pub(crate) type Cascade<E> = fn(&mut SqliteConnection, &E) -> StoreResult<()>;

/// A check that accepts everything.
pub(crate) fn no_check<E>(_: &mut SqliteConnection, _: &E) -> StoreResult<()> {
    Ok(())
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
        let depends_on = check_references(conn, &entity)?;
        check(conn, &entity)?;
        let hlc = clock.tick();
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

/// Applies `change` to a live entity and queues an update carrying only the fields that
/// changed. A change that changes nothing writes nothing and queues nothing.
pub(crate) fn update<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    id: Uuid,
    change: impl FnOnce(&E) -> Result<E, ValidationError>,
    check: Check<E>,
) -> StoreResult<E> {
    conn.immediate_transaction(|conn| {
        let mut record = require_live::<E>(conn, id)?;
        let after = change(&record.entity)?;
        let changed = changed_fields(&record.entity, &after);
        if changed.is_empty() {
            return Ok(after);
        }
        let depends_on = check_references(conn, &after)?;
        check(conn, &after)?;
        let hlc = clock.tick();
        record.meta.touch(changed.keys(), hlc);
        record.entity = after.clone();
        E::save(conn, &record)?;
        let op = SyncOperation::new(
            after.entity_ref(),
            OperationKind::Update,
            changed,
            hlc,
            record.meta.version,
            depends_on,
            clock.now(),
        );
        outbox::insert(conn, &op)?;
        Ok(after)
    })
}

/// Tombstones a live entity, runs `cascade` (local tombstones of what lies inside it; the
/// server cascades on its own, so those queue nothing), and queues the delete.
pub(crate) fn delete<E: LocalEntity>(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    id: Uuid,
    cascade: Cascade<E>,
) -> StoreResult<()> {
    conn.immediate_transaction(|conn| {
        let mut record = require_live::<E>(conn, id)?;
        let hlc = clock.tick();
        record.meta.deleted = true;
        record.meta.dirty = true;
        E::save(conn, &record)?;
        cascade(conn, &record.entity)?;
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

/// A delete that hides nothing else.
pub(crate) fn no_cascade<E>(_: &mut SqliteConnection, _: &E) -> StoreResult<()> {
    Ok(())
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
    pub(crate) async fn delete_entity<E: LocalEntity>(
        &self,
        id: Uuid,
        cascade: Cascade<E>,
    ) -> Result<(), RepositoryError> {
        self.write(move |conn, clock| delete(conn, clock, id, cascade)).await
    }

    /// The live entity with `id`, if any.
    pub(crate) async fn get_live<E: LocalEntity>(&self, id: Uuid) -> Result<Option<E>, RepositoryError> {
        self.read(move |conn| find_live(conn, id)).await
    }

    /// Runs a list query and decodes its rows.
    pub(crate) async fn list<R, Q>(&self, query: Q) -> Result<Vec<R::Entity>, RepositoryError>
    where
        R: EntityRow + Send + 'static,
        Q: FnOnce(&mut SqliteConnection) -> QueryResult<Vec<R>> + Send + 'static,
    {
        self.read(move |conn| decode_all(query(conn)?)).await
    }
}
