//! The `sync_conflicts` table as a [`ConflictRepository`].

use super::feed::Changes;
use super::records::{overwrite, WriteClock};
use super::{
    rows::{from_json, parse, to_json},
    schema::sync_conflicts::dsl,
    LocalStore,
};
use async_trait::async_trait;
use diesel::prelude::*;
use serde_json::Value;
use shaku::Component;
use std::collections::BTreeMap;
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    ports::ConflictRepository,
    sync::{ConflictKind, ConflictResolution},
    ConflictId, EntityRef, RepositoryError, SyncConflict, Timestamp, ValidationError,
};

const TABLE: &str = "sync_conflicts";

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::sync_conflicts, check_for_backend(diesel::sqlite::Sqlite))]
struct ConflictRow {
    id: String,
    entity_type: String,
    entity_id: String,
    local_fields: String,
    remote_fields: String,
    fields: String,
    detected_at: i64,
    resolution: Option<String>,
    resolved_at: Option<i64>,
    kind: String,
}

impl ConflictRow {
    fn encode(conflict: &SyncConflict) -> StoreResult<Self> {
        Ok(Self {
            id: conflict.id.to_string(),
            entity_type: conflict.entity.entity_type.as_str().to_owned(),
            entity_id: conflict.entity.id.to_string(),
            local_fields: to_json(TABLE, &conflict.local)?,
            remote_fields: to_json(TABLE, &conflict.remote)?,
            fields: to_json(TABLE, &conflict.fields)?,
            detected_at: conflict.detected_at.as_millis(),
            resolution: conflict.resolution.as_ref().map(|r| to_json(TABLE, r)).transpose()?,
            resolved_at: None,
            kind: kind_name(conflict.kind).to_owned(),
        })
    }

    fn decode(self) -> StoreResult<SyncConflict> {
        Ok(SyncConflict {
            id: parse(TABLE, &self.id)?,
            entity: EntityRef::new(parse(TABLE, &self.entity_type)?, parse(TABLE, &self.entity_id)?),
            local: from_json(TABLE, &self.local_fields)?,
            remote: from_json(TABLE, &self.remote_fields)?,
            fields: from_json(TABLE, &self.fields)?,
            detected_at: Timestamp(self.detected_at),
            resolution: self.resolution.map(|r| from_json(TABLE, &r)).transpose()?,
            kind: match self.kind.as_str() {
                "fields" => ConflictKind::Fields,
                "parent_deleted" => ConflictKind::ParentDeleted,
                other => return Err(StoreError::corrupt(TABLE, format!("conflict kind '{other}'"))),
            },
        })
    }
}

fn kind_name(kind: ConflictKind) -> &'static str {
    match kind {
        ConflictKind::Fields => "fields",
        ConflictKind::ParentDeleted => "parent_deleted",
    }
}

/// The values `resolution` writes for `conflict`.
fn chosen(conflict: &SyncConflict, resolution: &ConflictResolution) -> StoreResult<BTreeMap<String, Value>> {
    // Only the fields in conflict: a conflict recorded by a push holds the whole server row,
    // and writing its other fields again would override later edits of them.
    let side = |values: &BTreeMap<String, Value>| {
        values
            .iter()
            .filter(|(k, _)| conflict.fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    Ok(match resolution {
        ConflictResolution::Mine => side(&conflict.local),
        ConflictResolution::Theirs => side(&conflict.remote),
        ConflictResolution::Merged(values) => {
            if let Some(other) = values.keys().find(|k| !conflict.fields.contains(k)) {
                let reason = format!(
                    "'{other}' is not in conflict (the conflict is on {})",
                    conflict.fields.join(", ")
                );
                return Err(ValidationError::new("fields", reason).into());
            }
            values.clone()
        }
    })
}

/// Resolves conflict `id` (see [`ConflictRepository::resolve`]).
fn resolve(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    id: ConflictId,
    resolution: &ConflictResolution,
    changes: &mut Changes,
) -> StoreResult<SyncConflict> {
    conn.immediate_transaction(|conn| {
        let row: Option<ConflictRow> = dsl::sync_conflicts
            .find(id.to_string())
            .select(ConflictRow::as_select())
            .get_result(conn)
            .optional()?;
        let mut conflict =
            row.ok_or_else(|| StoreError::Conflict(format!("conflict {id} does not exist")))?.decode()?;
        if conflict.resolution.is_some() {
            return Err(StoreError::Conflict(format!("conflict {id} is resolved already")));
        }
        match (conflict.kind, resolution) {
            (ConflictKind::Fields, _) => {
                let values = chosen(&conflict, resolution)?;
                overwrite(conn, clock, conflict.entity.entity_type, conflict.entity.id, &values, changes)?;
            }
            // The deletion stands; taking it writes nothing.
            (ConflictKind::ParentDeleted, ConflictResolution::Theirs) => {}
            (ConflictKind::ParentDeleted, _) => {
                let reason = format!(
                    "this {} was deleted with what it was in; nothing can keep it: copy what you \
                     need from the conflict and resolve it with theirs",
                    conflict.entity.entity_type.display_name()
                );
                return Err(ValidationError::new("resolution", reason).into());
            }
        }
        diesel::update(dsl::sync_conflicts.find(id.to_string()))
            .set((
                dsl::resolution.eq(to_json(TABLE, resolution)?),
                dsl::resolved_at.eq(clock.now().as_millis()),
            ))
            .execute(conn)?;
        conflict.resolution = Some(resolution.clone());
        Ok(conflict)
    })
}

/// Stores `conflict` unless its id is stored already.
pub(crate) fn record(conn: &mut SqliteConnection, conflict: &SyncConflict) -> StoreResult<()> {
    diesel::insert_or_ignore_into(dsl::sync_conflicts)
        .values(ConflictRow::encode(conflict)?)
        .execute(conn)?;
    Ok(())
}

/// Stored conflicts.
#[derive(Component)]
#[shaku(interface = ConflictRepository)]
pub struct SqliteConflictRepository {
    /// The local database.
    store: LocalStore,
}

impl SqliteConflictRepository {
    /// The conflicts of `store`.
    pub fn new(store: LocalStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ConflictRepository for SqliteConflictRepository {
    #[tracing::instrument(skip_all, fields(id = %conflict.id))]
    async fn record(&self, conflict: SyncConflict) -> Result<(), RepositoryError> {
        self.store.read(move |conn| record(conn, &conflict)).await
    }

    #[tracing::instrument(skip_all)]
    async fn list(&self, unresolved_only: bool) -> Result<Vec<SyncConflict>, RepositoryError> {
        self.store
            .read(move |conn| {
                let mut query = dsl::sync_conflicts.order((dsl::detected_at, dsl::id)).into_boxed();
                if unresolved_only {
                    query = query.filter(dsl::resolution.is_null());
                }
                query
                    .select(ConflictRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(ConflictRow::decode)
                    .collect()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn resolve(
        &self,
        id: ConflictId,
        resolution: ConflictResolution,
    ) -> Result<SyncConflict, RepositoryError> {
        self.store.write(move |conn, clock, changes| resolve(conn, clock, id, &resolution, changes)).await
    }
}
