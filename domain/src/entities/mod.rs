//! The music-collaboration entities and what they have in common as synced records.

mod audio_comment;
mod audio_track;
mod collaborator;
mod playlist;
mod project;
mod user_profile;

pub use audio_comment::{AudioComment, AudioCommentPatch};
pub use audio_track::{AudioTrack, AudioTrackPatch};
pub use collaborator::{CollaboratorRole, ProjectCollaborator, ProjectCollaboratorPatch};
pub use playlist::{Playlist, PlaylistPatch};
pub use project::{Project, ProjectPatch};
pub use user_profile::{UserProfile, UserProfilePatch};

use crate::sync::{OperationKind, Priority};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{collections::BTreeMap, fmt, str::FromStr};
use uuid::Uuid;

/// The kinds of synced entity. The string form (`project`, `audio_track`, ...) is stable: it is
/// stored in the outbox, sent on the wire and used as the executor registry key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    /// [`UserProfile`]
    UserProfile,
    /// [`Project`]
    Project,
    /// [`ProjectCollaborator`]
    ProjectCollaborator,
    /// [`AudioTrack`]
    AudioTrack,
    /// [`AudioComment`]
    AudioComment,
    /// [`Playlist`]
    Playlist,
}

impl EntityType {
    /// Every entity type, parents before children.
    pub const ALL: [EntityType; 6] = [
        EntityType::UserProfile,
        EntityType::Project,
        EntityType::ProjectCollaborator,
        EntityType::AudioTrack,
        EntityType::AudioComment,
        EntityType::Playlist,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntityType::UserProfile => "user_profile",
            EntityType::Project => "project",
            EntityType::ProjectCollaborator => "project_collaborator",
            EntityType::AudioTrack => "audio_track",
            EntityType::AudioComment => "audio_comment",
            EntityType::Playlist => "playlist",
        }
    }

    /// The upstream priority of an operation on this entity type.
    ///
    /// Deletes and access changes go first (they revoke or remove data others may be looking
    /// at); projects and profiles next because other work waits on them; tracks and comments
    /// are the bulk of the traffic; playlists are cosmetic. Causality still overrides priority:
    /// a child never overtakes its parent's create.
    pub const fn default_priority(self, kind: OperationKind) -> Priority {
        match (self, kind) {
            (_, OperationKind::Delete) | (EntityType::ProjectCollaborator, _) => Priority::Critical,
            (EntityType::Project | EntityType::UserProfile, _) => Priority::High,
            (EntityType::AudioTrack | EntityType::AudioComment, _) => Priority::Medium,
            (EntityType::Playlist, _) => Priority::Low,
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error for an unknown entity type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity type '{0}'")]
pub struct UnknownEntityType(pub String);

impl FromStr for EntityType {
    type Err = UnknownEntityType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownEntityType(s.to_owned()))
    }
}

/// A reference to one entity of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// The entity's type.
    pub entity_type: EntityType,
    /// The entity's id.
    pub id: Uuid,
}

impl EntityRef {
    /// A reference to entity `id` of type `entity_type`.
    pub const fn new(entity_type: EntityType, id: Uuid) -> Self {
        Self { entity_type, id }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.entity_type.as_str().replace('_', " "), self.id)
    }
}

/// What every synced entity offers the sync engine, so repositories, the outbox and merge code
/// can be written once for all entity types.
pub trait SyncEntity: Serialize + Clone + Send + Sync + 'static {
    /// This entity's type.
    const ENTITY_TYPE: EntityType;

    /// The entity's id.
    fn entity_id(&self) -> Uuid;

    /// Entities that must exist (and whose creates must reach the server first) for this one
    /// to be valid: a track's project, a comment's track, a playlist's project and tracks, ...
    fn references(&self) -> Vec<EntityRef>;

    /// The entity this one lives inside, if any: a track's project, a comment's track. An
    /// entity is visible only while its parent is; deleting a project hides what it contains.
    fn parent(&self) -> Option<EntityRef>;

    /// A reference to this entity.
    fn entity_ref(&self) -> EntityRef {
        EntityRef::new(Self::ENTITY_TYPE, self.entity_id())
    }

    /// The synced fields by wire name, without `id`. Field-level merge and "record only the
    /// fields that changed" both work on this map.
    fn fields(&self) -> BTreeMap<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.into_iter().filter(|(k, _)| k != "id").collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// The fields of `after` whose values differ from `before`, with their new values.
pub fn changed_fields<E: SyncEntity>(before: &E, after: &E) -> BTreeMap<String, Value> {
    let old = before.fields();
    after.fields().into_iter().filter(|(name, value)| old.get(name) != Some(value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_type_names_round_trip() {
        for t in EntityType::ALL {
            assert_eq!(t.as_str().parse::<EntityType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).ok(), Some(Value::from(t.as_str())));
        }
        assert_eq!("track".parse::<EntityType>().unwrap_err().to_string(), "unknown entity type 'track'");
    }

    #[test]
    fn priorities_follow_the_documented_table() {
        use EntityType as T;
        use OperationKind as K;
        let table = [
            ("any delete is critical", T::Playlist, K::Delete, Priority::Critical),
            ("access changes are critical", T::ProjectCollaborator, K::Create, Priority::Critical),
            ("projects are high", T::Project, K::Update, Priority::High),
            ("profiles are high", T::UserProfile, K::Create, Priority::High),
            ("tracks are medium", T::AudioTrack, K::Create, Priority::Medium),
            ("comments are medium", T::AudioComment, K::Update, Priority::Medium),
            ("playlists are low", T::Playlist, K::Create, Priority::Low),
        ];
        for (name, entity, kind, expected) in table {
            assert_eq!(entity.default_priority(kind), expected, "{name}");
        }
    }
}
