//! Any entity, chosen by its type name at run time: what the sync server works with, since a
//! push carries entities of every type in one batch.
//!
//! Adding an entity type means adding one line to the `any_entity!` list and one arm to
//! [`AnyEntity::scope`] and [`AnyEntity::membership`].

use super::{
    AudioComment, AudioTrack, CollaboratorRole, EntityRef, EntityType, Playlist, Project,
    ProjectCollaborator, SyncEntity, UserProfile,
};
use crate::{
    error::ValidationError,
    ids::{ProjectId, UserId},
};
use serde_json::Value;
use std::{collections::BTreeMap, fmt, str::FromStr};
use uuid::Uuid;

/// The unit of read access on the server: a user's own records, or one project and everything
/// inside it. Every stored row belongs to exactly one scope, and pulls are computed per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// A user's profile.
    User(UserId),
    /// A project, its tracks, comments, playlists and collaborators.
    Project(ProjectId),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::User(id) => write!(f, "user:{id}"),
            Scope::Project(id) => write!(f, "project:{id}"),
        }
    }
}

/// A scope name that is not `user:<uuid>` or `project:<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope '{0}'")]
pub struct ParseScopeError(pub String);

impl FromStr for Scope {
    type Err = ParseScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseScopeError(s.to_owned());
        let (kind, id) = s.split_once(':').ok_or_else(error)?;
        let id = Uuid::parse_str(id).map_err(|_| error())?;
        match kind {
            "user" => Ok(Scope::User(UserId::from_uuid(id))),
            "project" => Ok(Scope::Project(ProjectId::from_uuid(id))),
            _ => Err(error()),
        }
    }
}

/// A grant of access to a project that an entity carries: a project grants its owner, a
/// collaborator record grants its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The project.
    pub project_id: ProjectId,
    /// The member.
    pub user_id: UserId,
    /// Their role.
    pub role: CollaboratorRole,
}

macro_rules! any_entity {
    ($($variant:ident),+ $(,)?) => {
        /// One entity of any type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyEntity {
            $(
                #[doc = concat!("A [`", stringify!($variant), "`].")]
                $variant($variant),
            )+
        }

        impl AnyEntity {
            /// Rebuilds an entity of `entity_type` from wire fields, through its validation.
            pub fn from_fields(
                entity_type: EntityType,
                id: Uuid,
                fields: &BTreeMap<String, Value>,
            ) -> Result<Self, ValidationError> {
                match entity_type {
                    $(EntityType::$variant => $variant::from_fields(id, fields).map(AnyEntity::$variant),)+
                }
            }

            /// The fields of `entity_type` that only a create may set.
            pub fn immutable_fields(entity_type: EntityType) -> &'static [&'static str] {
                match entity_type {
                    $(EntityType::$variant => $variant::IMMUTABLE,)+
                }
            }

            /// The fields of `entity_type` that may be set once, while null.
            pub fn set_once_fields(entity_type: EntityType) -> &'static [&'static str] {
                match entity_type {
                    $(EntityType::$variant => $variant::SET_ONCE,)+
                }
            }

            /// The entity's type.
            pub fn entity_type(&self) -> EntityType {
                match self {
                    $(AnyEntity::$variant(_) => EntityType::$variant,)+
                }
            }

            /// The entities this one refers to.
            pub fn references(&self) -> Vec<EntityRef> {
                match self {
                    $(AnyEntity::$variant(e) => e.references(),)+
                }
            }

            /// The entity's fields in wire form.
            pub fn fields(&self) -> BTreeMap<String, Value> {
                match self {
                    $(AnyEntity::$variant(e) => e.fields(),)+
                }
            }
        }
    };
}

any_entity!(UserProfile, Project, ProjectCollaborator, AudioTrack, AudioComment, Playlist);

impl AnyEntity {
    /// The scope the entity belongs to.
    pub fn scope(&self) -> Scope {
        match self {
            AnyEntity::UserProfile(e) => Scope::User(e.id()),
            AnyEntity::Project(e) => Scope::Project(e.id()),
            AnyEntity::ProjectCollaborator(e) => Scope::Project(e.project_id()),
            AnyEntity::AudioTrack(e) => Scope::Project(e.project_id()),
            AnyEntity::AudioComment(e) => Scope::Project(e.project_id()),
            AnyEntity::Playlist(e) => Scope::Project(e.project_id()),
        }
    }

    /// The user a create must be made by, for entities that record their author: a comment's
    /// author, a track's uploader. (A project's owner is checked as its grant.)
    pub fn author(&self) -> Option<UserId> {
        match self {
            AnyEntity::AudioComment(e) => Some(e.author_id()),
            AnyEntity::AudioTrack(e) => Some(e.uploaded_by()),
            AnyEntity::UserProfile(_)
            | AnyEntity::Project(_)
            | AnyEntity::ProjectCollaborator(_)
            | AnyEntity::Playlist(_) => None,
        }
    }

    /// The project access this entity grants, if any.
    pub fn membership(&self) -> Option<Membership> {
        match self {
            AnyEntity::Project(e) => {
                Some(Membership { project_id: e.id(), user_id: e.owner_id(), role: CollaboratorRole::Owner })
            }
            AnyEntity::ProjectCollaborator(e) => {
                Some(Membership { project_id: e.project_id(), user_id: e.user_id(), role: e.role() })
            }
            AnyEntity::UserProfile(_)
            | AnyEntity::AudioTrack(_)
            | AnyEntity::AudioComment(_)
            | AnyEntity::Playlist(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn scopes_round_trip_through_their_names() {
        let user = Scope::User(UserId::new());
        let project = Scope::Project(ProjectId::new());
        for scope in [user, project] {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
        for bad in ["", "user", "user:x", "team:0190f1f4-8d6e-7a00-8000-000000000000"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entities_inside_a_project_share_its_scope_and_grants_follow_the_records() {
        let owner = UserId::new();
        let project = Project::new(owner, "P", None, Timestamp(0)).expect("valid");
        let track = AudioTrack::new(project.id(), owner, "T", 1, None, Timestamp(0)).expect("valid");
        let member =
            ProjectCollaborator::new(project.id(), UserId::new(), CollaboratorRole::Editor, Timestamp(0))
                .expect("valid");
        let any_track = AnyEntity::from_fields(EntityType::AudioTrack, track.entity_id(), &track.fields())
            .expect("round trip");
        assert_eq!(any_track, AnyEntity::AudioTrack(track));
        assert_eq!(any_track.scope(), Scope::Project(project.id()));
        assert_eq!(any_track.membership(), None);
        let grant = AnyEntity::Project(project.clone()).membership().expect("owner");
        assert_eq!((grant.user_id, grant.role), (owner, CollaboratorRole::Owner));
        let grant = AnyEntity::ProjectCollaborator(member.clone()).membership().expect("member");
        assert_eq!(
            (grant.project_id, grant.user_id, grant.role),
            (project.id(), member.user_id(), member.role())
        );
    }
}
