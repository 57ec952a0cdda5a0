//! The roles a member holds in a shared scope (a project), which the engine's authorization
//! reads (`WriteRule`, `Membership`).

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// What a user may do in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollaboratorRole {
    /// The project's owner: everything, including deleting the project and managing
    /// collaborators. Held by the grant of the scope's root (a project's owner), never by a member record.
    Owner,
    /// Reads and writes inside the project.
    Editor,
    /// Reads only.
    Viewer,
}

impl CollaboratorRole {
    /// Whether this role may write inside a project.
    pub fn can_write(self) -> bool {
        matches!(self, CollaboratorRole::Owner | CollaboratorRole::Editor)
    }

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CollaboratorRole::Owner => "owner",
            CollaboratorRole::Editor => "editor",
            CollaboratorRole::Viewer => "viewer",
        }
    }
}

impl fmt::Display for CollaboratorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for CollaboratorRole {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(CollaboratorRole::Owner),
            "editor" => Ok(CollaboratorRole::Editor),
            "viewer" => Ok(CollaboratorRole::Viewer),
            other => {
                Err(ValidationError::new("role", format!("'{other}' is not one of owner, editor, viewer")))
            }
        }
    }
}
