//! Row types of the entity tables and their conversion to and from domain records. Decoding
//! goes through each entity's validating `restore`, so a row that breaks a domain rule surfaces
//! as [`StoreError::Corrupt`] instead of an invalid entity.

use super::field_clock;
use super::schema::{
    audio_comments, audio_tracks, playlists, project_collaborators, projects, user_profiles,
};
use diesel::prelude::*;
use std::{fmt::Display, str::FromStr};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    AudioComment, AudioTrack, Playlist, Project, ProjectCollaborator, SyncEntity, SyncMeta, Timestamp,
    UserProfile,
};

/// An entity with its sync metadata, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<E> {
    pub entity: E,
    pub meta: SyncMeta,
}

/// A Diesel row type of one entity table.
pub(crate) trait EntityRow: Sized {
    type Entity: SyncEntity;
    const TABLE: &'static str;

    fn encode(record: &Record<Self::Entity>) -> StoreResult<Self>;
    fn decode(self) -> StoreResult<Record<Self::Entity>>;
}

pub(crate) fn parse<T>(table: &'static str, text: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(|e| StoreError::corrupt(table, e))
}

pub(crate) fn to_json<T: serde::Serialize>(table: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(table, e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(table: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(table, e))
}

fn meta<E: SyncEntity>(
    table: &'static str,
    version: i64,
    field_hlc: &str,
    deleted: bool,
    dirty: bool,
    pending_create: Option<&str>,
) -> StoreResult<SyncMeta> {
    Ok(SyncMeta {
        version,
        // The declared field names, not `entity.fields()`: no serialising the entity on every read.
        field_hlc: field_clock::decode_row(table, field_hlc, E::FIELDS)?,
        deleted,
        dirty,
        pending_create: pending_create.map(|id| parse(table, id)).transpose()?,
        pulled_version: 0,
    })
}

/// Declares a row struct for `$table` with the entity's own columns followed by the four sync
/// metadata columns every entity table shares, and implements [`EntityRow`] from the given
/// encode and decode bodies.
macro_rules! entity_row {
    (
        $row:ident for $entity:ident in $table:ident {
            $($field:ident: $ty:ty),+ $(,)?
        }
        encode($e:ident) { $($enc:ident: $enc_expr:expr),+ $(,)? }
        decode($r:ident) $decode:expr
    ) => {
        #[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
        #[diesel(table_name = $table, check_for_backend(diesel::sqlite::Sqlite))]
        #[diesel(treat_none_as_null = true, treat_none_as_default_value = false)]
        pub(crate) struct $row {
            $(pub $field: $ty,)+
            pub version: i64,
            pub field_hlc: String,
            pub deleted: bool,
            pub dirty: bool,
            pub pending_create: Option<String>,
            pub pulled_version: i64,
        }

        impl EntityRow for $row {
            type Entity = $entity;
            const TABLE: &'static str = stringify!($table);

            fn encode(record: &Record<$entity>) -> StoreResult<Self> {
                let $e = &record.entity;
                Ok(Self {
                    $($enc: $enc_expr,)+
                    version: record.meta.version,
                    field_hlc: field_clock::encode_row(Self::TABLE, &record.meta.field_hlc)?,
                    deleted: record.meta.deleted,
                    dirty: record.meta.dirty,
                    pending_create: record.meta.pending_create.map(|id| id.to_string()),
                    pulled_version: record.meta.pulled_version,
                })
            }

            fn decode(self) -> StoreResult<Record<$entity>> {
                const TABLE: &str = stringify!($table);
                let $r = &self;
                let entity = $decode.map_err(|e| StoreError::corrupt(TABLE, e))?;
                let mut meta = meta::<$entity>(
                    TABLE, self.version, &self.field_hlc, self.deleted, self.dirty,
                    self.pending_create.as_deref(),
                )?;
                meta.pulled_version = self.pulled_version;
                Ok(Record { entity, meta })
            }
        }
    };
}

entity_row! {
    ProjectRow for Project in projects {
        id: String, owner_id: String, name: String, description: Option<String>, created_at: i64,
    }
    encode(p) {
        id: p.id().to_string(),
        owner_id: p.owner_id().to_string(),
        name: p.name().to_owned(),
        description: p.description().map(str::to_owned),
        created_at: p.created_at().as_millis(),
    }
    decode(r) Project::restore(
        parse(TABLE, &r.id)?, parse(TABLE, &r.owner_id)?, &r.name, r.description.as_deref(),
        Timestamp(r.created_at),
    )
}

entity_row! {
    UserProfileRow for UserProfile in user_profiles {
        id: String, name: String, email: String, avatar_url: Option<String>,
        creative_role: Option<String>, created_at: i64,
    }
    encode(p) {
        id: p.id().to_string(),
        name: p.name().to_owned(),
        email: p.email().to_owned(),
        avatar_url: p.avatar_url().map(str::to_owned),
        creative_role: p.creative_role().map(str::to_owned),
        created_at: p.created_at().as_millis(),
    }
    decode(r) UserProfile::restore(
        parse(TABLE, &r.id)?, &r.name, &r.email, r.avatar_url.as_deref(),
        r.creative_role.as_deref(), Timestamp(r.created_at),
    )
}

entity_row! {
    CollaboratorRow for ProjectCollaborator in project_collaborators {
        id: String, project_id: String, user_id: String, role: String, created_at: i64,
    }
    encode(c) {
        id: c.id().to_string(),
        project_id: c.project_id().to_string(),
        user_id: c.user_id().to_string(),
        role: c.role().as_str().to_owned(),
        created_at: c.created_at().as_millis(),
    }
    decode(r) ProjectCollaborator::restore(
        parse(TABLE, &r.id)?, parse(TABLE, &r.project_id)?, parse(TABLE, &r.user_id)?,
        parse(TABLE, &r.role)?, Timestamp(r.created_at),
    )
}

entity_row! {
    AudioTrackRow for AudioTrack in audio_tracks {
        id: String, project_id: String, name: String, duration_ms: i64,
        audio_sha256: Option<String>, uploaded_by: String, created_at: i64,
    }
    encode(t) {
        id: t.id().to_string(),
        project_id: t.project_id().to_string(),
        name: t.name().to_owned(),
        duration_ms: t.duration_ms(),
        audio_sha256: t.audio_sha256().map(str::to_owned),
        uploaded_by: t.uploaded_by().to_string(),
        created_at: t.created_at().as_millis(),
    }
    decode(r) AudioTrack::restore(
        parse(TABLE, &r.id)?, parse(TABLE, &r.project_id)?, parse(TABLE, &r.uploaded_by)?,
        &r.name, r.duration_ms, r.audio_sha256.as_deref(), Timestamp(r.created_at),
    )
}

entity_row! {
    AudioCommentRow for AudioComment in audio_comments {
        id: String, project_id: String, track_id: String, author_id: String, content: String,
        timestamp_ms: i64, created_at: i64,
    }
    encode(c) {
        id: c.id().to_string(),
        project_id: c.project_id().to_string(),
        track_id: c.track_id().to_string(),
        author_id: c.author_id().to_string(),
        content: c.content().to_owned(),
        timestamp_ms: c.timestamp_ms(),
        created_at: c.created_at().as_millis(),
    }
    decode(r) AudioComment::restore(
        parse(TABLE, &r.id)?, parse(TABLE, &r.project_id)?, parse(TABLE, &r.track_id)?,
        parse(TABLE, &r.author_id)?, &r.content, r.timestamp_ms, Timestamp(r.created_at),
    )
}

entity_row! {
    PlaylistRow for Playlist in playlists {
        id: String, project_id: String, name: String, track_ids: String, created_at: i64,
    }
    encode(p) {
        id: p.id().to_string(),
        project_id: p.project_id().to_string(),
        name: p.name().to_owned(),
        track_ids: to_json("playlists", &p.track_ids())?,
        created_at: p.created_at().as_millis(),
    }
    decode(r) Playlist::restore(
        parse(TABLE, &r.id)?, parse(TABLE, &r.project_id)?, &r.name,
        from_json(TABLE, &r.track_ids)?, Timestamp(r.created_at),
    )
}
