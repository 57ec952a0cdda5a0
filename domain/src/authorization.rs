//! Who may read and write what: the rules the sync server enforces on every push and pull.
//!
//! Pure decisions over the facts a store looks up (the user's role in the entity's project, or
//! whether a profile is the user's own), so one table-driven test covers every entity type
//! against every role.

use crate::{
    entities::{CollaboratorRole, EntityType},
    sync::OperationKind,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a user wants to do with an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// See it (pull).
    Read,
    /// Change it (push).
    Write(OperationKind),
}

/// How the user relates to the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// For a user profile: whether it is the user's own, or that of someone who shares a
    /// project with them.
    Profile {
        /// The profile is the user's.
        own: bool,
        /// The profile's user and this user are both members of some project.
        shares_project: bool,
    },
    /// For a project or anything inside it: the user's role there, `None` for a stranger.
    /// Creating a project is judged as its owner (the server checks `owner_id` is the user).
    Project(Option<CollaboratorRole>),
}

/// A refused access, with the reason code the server returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// Stable reason code: `forbidden` (the user may not do this) or `not_found` (the user may
    /// not even know the entity exists).
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl Denied {
    fn hidden(entity_type: EntityType) -> Self {
        Self { code: "not_found", message: format!("no such {}", Pretty(entity_type)) }
    }

    fn forbidden(what: impl Into<String>) -> Self {
        Self { code: "forbidden", message: what.into() }
    }
}

struct Pretty(EntityType);

impl fmt::Display for Pretty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.as_str().replace('_', " "))
    }
}

/// Decides whether a user related to an entity of `entity_type` by `relation` may have
/// `access` to it.
///
/// - A user reads and writes their own profile, and reads the profiles of people they share a
///   project with.
/// - Members (owner, editors, viewers) read a project and everything inside it; strangers do not
///   learn it exists.
/// - Owners and editors write inside a project (tracks, comments, playlists) and edit the
///   project itself; viewers write nothing.
/// - Only the owner deletes the project and adds, changes or removes collaborators.
pub fn authorize(entity_type: EntityType, access: Access, relation: Relation) -> Result<(), Denied> {
    use CollaboratorRole::{Editor, Owner, Viewer};
    use OperationKind::Delete;
    let kind = match access {
        Access::Read => None,
        Access::Write(kind) => Some(kind),
    };
    match (entity_type, relation) {
        (EntityType::UserProfile, Relation::Profile { own: true, .. }) => Ok(()),
        (EntityType::UserProfile, Relation::Profile { own: false, shares_project }) => match kind {
            None if shares_project => Ok(()),
            None => Err(Denied::hidden(entity_type)),
            Some(_) => Err(Denied::forbidden("only its owner changes a profile")),
        },
        (EntityType::UserProfile, Relation::Project(_)) | (_, Relation::Profile { .. }) => {
            Err(Denied::forbidden(format!("a {} is not judged that way", Pretty(entity_type))))
        }
        (_, Relation::Project(None)) => Err(Denied::hidden(entity_type)),
        (_, Relation::Project(Some(_))) if kind.is_none() => Ok(()),
        (_, Relation::Project(Some(Viewer))) => Err(Denied::forbidden("viewers cannot change a project")),
        (EntityType::Project, Relation::Project(Some(Editor))) if kind == Some(Delete) => {
            Err(Denied::forbidden("only the owner deletes a project"))
        }
        (EntityType::ProjectCollaborator, Relation::Project(Some(Editor))) => {
            Err(Denied::forbidden("only the owner manages collaborators"))
        }
        (_, Relation::Project(Some(Owner | Editor))) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CollaboratorRole::{Editor, Owner, Viewer};

    /// One row per entity type and relation: what reads, creates, updates and deletes give.
    /// `-` allowed, `F` forbidden, `N` not found (hidden).
    #[test]
    fn every_entity_type_against_every_role() {
        let project_roles =
            [("owner", Some(Owner)), ("editor", Some(Editor)), ("viewer", Some(Viewer)), ("stranger", None)];
        //                      entity type                  owner   editor  viewer  stranger
        let table: [(EntityType, [&str; 4]); 5] = [
            (EntityType::Project, ["----", "---F", "-FFF", "NNNN"]),
            (EntityType::ProjectCollaborator, ["----", "-FFF", "-FFF", "NNNN"]),
            (EntityType::AudioTrack, ["----", "----", "-FFF", "NNNN"]),
            (EntityType::AudioComment, ["----", "----", "-FFF", "NNNN"]),
            (EntityType::Playlist, ["----", "----", "-FFF", "NNNN"]),
        ];
        let accesses = [
            Access::Read,
            Access::Write(OperationKind::Create),
            Access::Write(OperationKind::Update),
            Access::Write(OperationKind::Delete),
        ];
        for (entity_type, by_role) in table {
            for ((role_name, role), expected) in project_roles.iter().zip(by_role) {
                for (access, want) in accesses.iter().zip(expected.chars()) {
                    let got = match authorize(entity_type, *access, Relation::Project(*role)) {
                        Ok(()) => '-',
                        Err(d) if d.code == "forbidden" => 'F',
                        Err(d) if d.code == "not_found" => 'N',
                        Err(d) => panic!("unexpected code {}", d.code),
                    };
                    assert_eq!(got, want, "{entity_type} {access:?} as {role_name}");
                }
            }
        }
    }

    #[test]
    fn profiles_belong_to_their_user() {
        let relations = [
            ("own", Relation::Profile { own: true, shares_project: false }, "----"),
            ("co-member", Relation::Profile { own: false, shares_project: true }, "-FFF"),
            ("stranger", Relation::Profile { own: false, shares_project: false }, "NFFF"),
        ];
        let accesses = [
            Access::Read,
            Access::Write(OperationKind::Create),
            Access::Write(OperationKind::Update),
            Access::Write(OperationKind::Delete),
        ];
        for (name, relation, expected) in relations {
            for (access, want) in accesses.iter().zip(expected.chars()) {
                let got = match authorize(EntityType::UserProfile, *access, relation) {
                    Ok(()) => '-',
                    Err(d) if d.code == "forbidden" => 'F',
                    Err(_) => 'N',
                };
                assert_eq!(got, want, "profile {access:?} as {name}");
            }
        }
    }

    #[test]
    fn mismatched_facts_are_refused_not_guessed() {
        assert!(authorize(EntityType::UserProfile, Access::Read, Relation::Project(Some(Owner))).is_err());
        let profile_facts = Relation::Profile { own: true, shares_project: true };
        assert!(authorize(EntityType::AudioTrack, Access::Read, profile_facts).is_err());
    }
}
