use crate::{error::RepositoryError, ids::UserId};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shaku::Interface;
use std::fmt;

/// A bearer token. Its `Debug` output is redacted so it never lands in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the Authorization header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Who uses this replica, and how to reach and authenticate with the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The signed-in (or locally created) user.
    pub user_id: UserId,
    /// The sync server's base URL, once one is configured.
    pub server_url: Option<String>,
    /// The bearer token, once signed in.
    pub access_token: Option<AccessToken>,
}

/// Durable storage of the current [`Session`].
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SessionStorage: Interface {
    /// The stored session, if any.
    async fn load(&self) -> Result<Option<Session>, RepositoryError>;

    /// Replaces the stored session.
    async fn save(&self, session: Session) -> Result<(), RepositoryError>;

    /// Stores `session` unless a session is stored already, and returns the stored one. Atomic:
    /// of two concurrent calls, both get the session the first stored.
    async fn save_if_absent(&self, session: Session) -> Result<Session, RepositoryError>;

    /// Forgets the session (sign out). Local data and queued work stay.
    async fn clear(&self) -> Result<(), RepositoryError>;
}

/// Gets a fresh token after the server refused the stored one (401).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Reauthenticator: Interface {
    /// Obtains a token to replace `refused` and stores it through [`SessionStorage`]. Returns
    /// whether the stored session now holds a different token worth trying; `false` means the
    /// user has to sign in again.
    async fn renew(&self, refused: Option<AccessToken>) -> Result<bool, RepositoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show_in_debug_output() {
        let session = Session {
            user_id: UserId::new(),
            server_url: None,
            access_token: Some(AccessToken::new("s3cret")),
        };
        let shown = format!("{session:?}");
        assert!(!shown.contains("s3cret") && shown.contains("<redacted>"), "{shown}");
    }
}
