use crate::{
    blob::BlobHash,
    entities::{EntityRef, Scope},
    ids::{OperationId, UserId},
    protocol::{PullRequest, PullResponse, PushRequest, PushResponse},
    time::Timestamp,
};
use async_trait::async_trait;
use shaku::Interface;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};
use uuid::Uuid;

/// An account as the server stores it: the password only as an argon2 hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The user.
    pub user_id: UserId,
    /// The login name, lower-cased.
    pub email: String,
    /// The PHC-format argon2 hash of the password.
    pub password_hash: String,
    /// When the account was made.
    pub created_at: Timestamp,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account").field("user_id", &self.user_id).field("email", &self.email).finish()
    }
}

/// A bearer token as the server stores it: only its SHA-256, so a leaked table grants nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Whose token it is.
    pub user_id: UserId,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// How much history [`ServerStore::purge`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// The newest `n` versions.
    Versions(i64),
    /// What changed within this long before the purge, as far as earlier purges' records of
    /// the newest version at their time tell (the first purge forgets nothing).
    Age(std::time::Duration),
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Versions at or below this one are forgotten (cursors before it get a reset).
    pub horizon: i64,
    /// Tombstones whose fields were dropped now.
    pub tombstones: u64,
    /// Dedupe records dropped now.
    pub records: u64,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Failures of the server store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerStoreError {
    /// The request itself is malformed; nothing was stored. For a push, `mutation_id` names the
    /// mutation at fault.
    #[error("{code}: {message}")]
    BadInput {
        /// Stable code.
        code: String,
        /// Detail naming the field.
        message: String,
        /// The mutation at fault, for a push.
        mutation_id: Option<OperationId>,
    },
    /// A unique value is taken (an account's email or user id).
    #[error("{0}")]
    Taken(String),
    /// The database failed.
    #[error("storage error: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// Retrying may succeed (busy, connection lost, serialization failure).
        transient: bool,
    },
}

/// The sync server's storage: accounts and tokens, and the replicated entities with their
/// push and pull logic. One implementation serves SQLite and PostgreSQL; a contract test suite
/// runs against both.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ServerStore: Interface {
    /// Stores a new account; [`ServerStoreError::Taken`] if its email or user id is in use.
    async fn create_account(&self, account: Account) -> Result<(), ServerStoreError>;

    /// The account with this (lower-cased) email.
    async fn find_account(&self, email: &str) -> Result<Option<Account>, ServerStoreError>;

    /// Stores a token.
    async fn save_token(&self, token: StoredToken) -> Result<(), ServerStoreError>;

    /// The user a token hash belongs to, if the token exists and has not expired at `now`.
    async fn user_for_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<UserId>, ServerStoreError>;

    /// Forgets a token (log out).
    async fn revoke_token(&self, token_hash: &str) -> Result<(), ServerStoreError>;

    /// Applies a push for `user`: each mutation atomically with its dedupe record, in order.
    /// A malformed mutation refuses the whole push ([`ServerStoreError::BadInput`]) and stores
    /// nothing.
    async fn push(&self, user: UserId, request: PushRequest) -> Result<PushResponse, ServerStoreError>;

    /// The changes `user` may see after the request's cursor.
    async fn pull(&self, user: UserId, request: PullRequest) -> Result<PullResponse, ServerStoreError>;

    /// Forgets history older than `retention` allows: tombstones at or below the horizon lose
    /// their fields (the row stays, so a write sent again still meets the delete, and a client
    /// pulling from the start still learns of it), and dedupe records there are dropped (a
    /// mutation sent again after that merges by its clock readings and changes nothing). Cursors
    /// from before the horizon are answered with reset from then on. `now` is when the purge
    /// runs: each run records the newest version at that time, which is how [`Retention::Age`]
    /// finds its horizon.
    async fn purge(&self, now: Timestamp, retention: Retention) -> Result<Purged, ServerStoreError>;

    /// The scopes `user` may pull now, with their heads (see [`crate::protocol::ScopeHead`]).
    async fn scopes(&self, user: UserId) -> Result<Vec<crate::protocol::ScopeHead>, ServerStoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), ServerStoreError>;

    /// The scopes the entities `ids` belong to (what a push changed, for its pokes).
    async fn scopes_of(&self, ids: Vec<Uuid>) -> Result<BTreeSet<Scope>, ServerStoreError>;

    /// Who may read each of `scopes` now: whom a poke about them may reach.
    async fn audience(
        &self,
        scopes: BTreeSet<Scope>,
    ) -> Result<BTreeMap<Scope, BTreeSet<UserId>>, ServerStoreError>;

    /// Records that `user` proved to hold the blob `hash` (they uploaded its bytes and the server
    /// checked them): from now on their tracks may name it.
    async fn grant_blob(&self, user: UserId, hash: BlobHash, now: Timestamp) -> Result<(), ServerStoreError>;

    /// Whether `user` may name the blob `hash` in a track: they uploaded it themselves.
    async fn may_use_blob(&self, user: UserId, hash: BlobHash) -> Result<bool, ServerStoreError>;

    /// The file `entity` names, if `user` may read the entity, it is alive, of that type, and
    /// names a file.
    async fn entity_file(
        &self,
        user: UserId,
        entity: EntityRef,
    ) -> Result<Option<BlobHash>, ServerStoreError>;
}
