//! Server-store rows and the lookups push and pull share.

use super::{
    connection::ServerConnection,
    schema::{entities, memberships, server_meta},
};
use diesel::prelude::*;
use std::collections::BTreeMap;
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    protocol::EntityState,
    sync::{field_merge::FieldState, mutation_plan::StoredEntity, Hlc},
    CollaboratorRole, EntityType, ScopeId, UserId,
};
use uuid::Uuid;

/// One row of `entities`.
#[derive(Debug, Clone, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = entities)]
pub(super) struct EntityRow {
    pub entity_id: String,
    pub entity_type: String,
    pub scope: String,
    pub version: i64,
    pub deleted: bool,
    pub fields: String,
    pub field_hlc: String,
    /// JSON of [`DeletedWith`](trackflow_domain::protocol::DeletedWith), on a tombstone made by its parent's delete.
    pub deleted_with: Option<String>,
}

impl EntityRow {
    pub fn new(entity_id: Uuid, stored: &StoredEntity) -> StoreResult<Self> {
        let encode = |e: serde_json::Error| StoreError::corrupt("entities", e);
        Ok(Self {
            entity_id: entity_id.to_string(),
            entity_type: stored.entity_type.as_str().to_owned(),
            scope: stored.scope.to_string(),
            version: stored.version,
            deleted: stored.state.deleted,
            fields: serde_json::to_string(&stored.state.fields).map_err(encode)?,
            field_hlc: serde_json::to_string(&stored.state.field_hlc).map_err(encode)?,
            deleted_with: stored
                .deleted_with
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(encode)?,
        })
    }

    pub fn decode(&self) -> StoreResult<StoredEntity> {
        let corrupt = |e: String| StoreError::corrupt("entities", format!("{}: {e}", self.entity_id));
        let entity_type: EntityType = self.entity_type.parse().map_err(|e| corrupt(format!("{e}")))?;
        let mut fields: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&self.fields).map_err(|e| corrupt(e.to_string()))?;
        let mut field_hlc: BTreeMap<String, Hlc> =
            serde_json::from_str(&self.field_hlc).map_err(|e| corrupt(e.to_string()))?;
        // Written before a field was renamed: read under its name now (and stored so at the
        // row's next write).
        entity_type.row_to_current(&mut fields, &mut field_hlc);
        Ok(StoredEntity {
            entity_type,
            scope: self.scope.parse().map_err(|e| corrupt(format!("{e}")))?,
            version: self.version,
            state: FieldState { fields, field_hlc, deleted: self.deleted },
            deleted_with: self
                .deleted_with
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
        })
    }

    pub fn to_wire(&self) -> StoreResult<EntityState> {
        let entity_id = self.entity_id.parse().map_err(|e| StoreError::corrupt("entities", e))?;
        // Moved, not cloned: a pull page decodes a thousand of these.
        let StoredEntity { entity_type, version, state, deleted_with, .. } = self.decode()?;
        Ok(EntityState {
            entity_type,
            entity_id,
            version,
            deleted: state.deleted,
            fields: state.fields,
            field_hlc: state.field_hlc,
            deleted_with,
        })
    }
}

/// An entity as the protocol shows it.
pub(super) fn wire_state(entity_id: Uuid, stored: &StoredEntity) -> EntityState {
    EntityState {
        entity_type: stored.entity_type,
        entity_id,
        version: stored.version,
        deleted: stored.state.deleted,
        fields: stored.state.fields.clone(),
        field_hlc: stored.state.field_hlc.clone(),
        deleted_with: stored.deleted_with,
    }
}

/// The stored entity with this id.
pub(super) fn find_entity(conn: &mut ServerConnection, id: Uuid) -> StoreResult<Option<StoredEntity>> {
    let row: Option<EntityRow> = entities::table.find(id.to_string()).get_result(conn).optional()?;
    row.as_ref().map(EntityRow::decode).transpose()
}

/// The user's role in a shared scope, `None` if they are not a member.
pub(super) fn role_in(
    conn: &mut ServerConnection,
    scope: ScopeId,
    user: UserId,
) -> StoreResult<Option<CollaboratorRole>> {
    let role: Option<String> = memberships::table
        .find((scope.to_string(), user.to_string()))
        .select(memberships::role)
        .get_result(conn)
        .optional()?;
    role.map(|r| r.parse().map_err(|e| StoreError::corrupt("memberships", e))).transpose()
}

/// The server's identity and version counters.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    pub epoch: String,
    /// The newest version handed out, committed or not.
    pub last_version: i64,
    pub purged_through: i64,
}

pub(super) fn meta(conn: &mut ServerConnection) -> StoreResult<Meta> {
    let (epoch, purged_through) = server_meta::table
        .find(1)
        .select((server_meta::epoch, server_meta::purged_through))
        .get_result(conn)?;
    Ok(Meta { epoch, last_version: super::locks::newest(conn)?, purged_through })
}
