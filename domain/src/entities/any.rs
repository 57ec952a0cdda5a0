//! Scopes and memberships: the units of read access and the grants that open them. Every
//! entity belongs to a scope (its declaration says how it finds it), and some entities grant
//! membership of a shared scope.

use super::CollaboratorRole;
use crate::ids::{ScopeId, UserId};
use std::{fmt, str::FromStr};
use uuid::Uuid;

/// The kinds of scope, as a type declares where its entities belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    /// A user's own records: the user reads and writes them; people who share a project with
    /// the user read them.
    User,
    /// A shared scope: an entity of a root type (a project, a board) and everything inside it.
    /// Its members read, and write as their role allows.
    Shared,
}

/// The unit of read access on the server: a user's own records, or one shared scope (a root
/// entity and everything inside it). Every stored row belongs to exactly one scope, and pulls are computed per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// A user's profile.
    User(UserId),
    /// A shared scope, named by the id of its root entity.
    Shared(ScopeId),
}

impl Scope {
    /// Its kind.
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::User(_) => ScopeKind::User,
            Scope::Shared(_) => ScopeKind::Shared,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::User(id) => write!(f, "user:{id}"),
            Scope::Shared(id) => write!(f, "{SHARED_PREFIX}:{id}"),
        }
    }
}

/// How a shared scope is named on the wire and in stored rows: `project:<uuid>`. The prefix is
/// the protocol's since its first version, when the only shared scopes were the music model's
/// projects; it names a shared scope of any root type.
pub const SHARED_PREFIX: &str = "project";

/// A scope name that is not `user:<uuid>` or `project:<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope '{0}'")]
pub struct ParseScopeError(pub String);

impl FromStr for Scope {
    type Err = ParseScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseScopeError(s.to_owned());
        let (kind, id) = s.split_once(':').ok_or_else(error)?;
        // The hyphenated form only, as scopes are written: one spelling per scope.
        if id.len() != 36 {
            return Err(error());
        }
        let id = Uuid::parse_str(id).map_err(|_| error())?;
        match kind {
            "user" => Ok(Scope::User(UserId::from_uuid(id))),
            SHARED_PREFIX => Ok(Scope::Shared(ScopeId::from_uuid(id))),
            _ => Err(error()),
        }
    }
}

/// A grant of access to a shared scope that an entity carries: a project grants its owner, a
/// collaborator record grants its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The shared scope.
    pub scope: ScopeId,
    /// The member.
    pub user_id: UserId,
    /// Their role.
    pub role: CollaboratorRole,
}
