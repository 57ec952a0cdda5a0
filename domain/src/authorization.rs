//! Who may read and write what: the rules the sync server enforces on every push and pull.
//!
//! Pure decisions over the facts a store looks up (the user's role in the entity's project, or
//! whether a profile is the user's own) and what each type declares (its [`ScopeKind`] and
//! [`WriteRule`]), so one table-driven test covers every entity type against every role.

use crate::{
    entities::{CollaboratorRole, EntityType, ScopeKind, WriteRule},
    ids::UserId,
    sync::OperationKind,
};
use serde::{Deserialize, Serialize};

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
    /// For a shared scope's root or anything inside it: the user's role there, `None` for a
    /// stranger. Creating a root (a project) is judged as its owner (the server checks the
    /// grant it carries names the user).
    Member(Option<CollaboratorRole>),
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
        Self { code: "not_found", message: format!("no such {}", entity_type.display_name()) }
    }

    fn forbidden(what: impl Into<String>) -> Self {
        Self { code: "forbidden", message: what.into() }
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
    use CollaboratorRole::Viewer;
    let kind = match access {
        Access::Read => None,
        Access::Write(kind) => Some(kind),
    };
    match (entity_type.scope_kind(), relation) {
        (ScopeKind::User, Relation::Profile { own: true, .. }) => Ok(()),
        (ScopeKind::User, Relation::Profile { own: false, shares_project }) => match kind {
            None if shares_project => Ok(()),
            None => Err(Denied::hidden(entity_type)),
            Some(_) => {
                Err(Denied::forbidden(format!("only its owner changes a {}", entity_type.display_name())))
            }
        },
        (ScopeKind::User, Relation::Member(_)) | (ScopeKind::Shared, Relation::Profile { .. }) => {
            Err(Denied::forbidden(format!("a {} is not judged that way", entity_type.display_name())))
        }
        (ScopeKind::Shared, Relation::Member(None)) => Err(Denied::hidden(entity_type)),
        (ScopeKind::Shared, Relation::Member(Some(role))) => match kind {
            None => Ok(()),
            Some(_) if role == Viewer => {
                let root =
                    entity_type.scope_root().map_or("shared scope".to_owned(), EntityType::display_name);
                Err(Denied::forbidden(format!("viewers cannot change a {root}")))
            }
            // Roles order owner < editor < viewer: a role at or before the least one writes.
            Some(kind) if role <= entity_type.write_rule().least(kind) => Ok(()),
            Some(kind) => Err(Denied::forbidden(owner_only(entity_type, kind))),
        },
    }
}

/// The author rule of a type that declares it ([`WriteRule::author_only`]), judged after
/// [`authorize`]: once created, an entity is changed by its author alone, and deleted by its
/// author or the scope's owner. `author` is the entity's recorded author before the write
/// (`SyncEntity::author`), `user` the one writing and `role` their role in the scope. A create
/// passes: that its author is the one creating it is checked on its own.
pub fn authorize_author(
    entity_type: EntityType,
    kind: OperationKind,
    author: Option<UserId>,
    user: UserId,
    role: Option<CollaboratorRole>,
) -> Result<(), Denied> {
    if !entity_type.write_rule().author_only || author.is_none_or(|author| author == user) {
        return Ok(());
    }
    let name = entity_type.display_name();
    match kind {
        OperationKind::Create | OperationKind::Upload => Ok(()),
        OperationKind::Update => Err(Denied::forbidden(format!("only its author changes this {name}"))),
        OperationKind::Delete if role == Some(CollaboratorRole::Owner) => Ok(()),
        OperationKind::Delete => {
            let root = entity_type.scope_root().map_or("scope".to_owned(), EntityType::display_name);
            Err(Denied::forbidden(format!("only its author or the {root}'s owner deletes this {name}")))
        }
    }
}

/// Why a member who is not the owner may not make a write the type reserves for the owner.
fn owner_only(entity_type: EntityType, kind: OperationKind) -> String {
    let everything = entity_type.write_rule() == WriteRule::OWNER;
    match kind {
        // "manages": a type whose every write is the owner's is the owner's to manage.
        _ if everything => format!("only the owner manages {}s", entity_type.display_name()),
        OperationKind::Delete => format!("only the owner deletes a {}", entity_type.display_name()),
        OperationKind::Create | OperationKind::Upload => {
            format!("only the owner creates a {}", entity_type.display_name())
        }
        OperationKind::Update => format!("only the owner changes a {}", entity_type.display_name()),
    }
}
