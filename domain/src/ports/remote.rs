use crate::{
    ids::OperationId,
    protocol::{PullRequest, PullResponse, PushRequest, PushResponse, ScopesResponse},
};
use async_trait::async_trait;
use shaku::Interface;

/// Failures talking to the sync server, classified for retry logic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server could not be reached at all (connection refused, no route, name lookup
    /// failed): the request was never delivered. Being offline does not use up attempts.
    #[error("server unreachable: {message}")]
    Unreachable {
        /// What failed.
        message: String,
    },
    /// The server declined to process the request now (429, 503): nothing was applied. Retry
    /// after `retry_after_ms` if given; it uses no attempts.
    #[error("server busy: {message}")]
    Busy {
        /// What the server said.
        message: String,
        /// The server's Retry-After, if it sent one.
        retry_after_ms: Option<u64>,
    },
    /// Worth retrying later: timeout, connection cut, 500, 502, 504, 408. The request may have
    /// reached the server.
    #[error("temporary failure: {message}")]
    Transient {
        /// What failed.
        message: String,
        /// The server's Retry-After, if it sent one.
        retry_after_ms: Option<u64>,
    },
    /// The credentials are missing, wrong or expired: sign in again, keep the queued work.
    #[error("not authenticated: {0}")]
    Unauthorized(String),
    /// The server refused the request for good (4xx other than 401, 408 and 429).
    #[error("request refused: {code}: {message}")]
    Permanent {
        /// The server's error code.
        code: String,
        /// The server's explanation.
        message: String,
        /// For a refused push: the mutation that caused it, when the server names one.
        mutation_id: Option<OperationId>,
    },
    /// The server syncs only with clients of a newer schema ([`UPGRADE_REQUIRED`], 426): this
    /// program must be upgraded. Nothing was applied; queued work stays queued.
    ///
    /// [`UPGRADE_REQUIRED`]: crate::protocol::UPGRADE_REQUIRED
    #[error("upgrade required: the server syncs with schema version {min_version} or later, and this app has {version}: upgrade the app ({message})")]
    UpgradeRequired {
        /// The oldest schema version the server syncs with.
        min_version: u32,
        /// This client's schema version.
        version: u32,
        /// What the server said.
        message: String,
    },
}

impl RemoteError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Transient { .. } | RemoteError::Unreachable { .. } | RemoteError::Busy { .. }
        )
    }
}

/// The sync server as the client sees it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RemoteDataSource: Interface {
    /// Sends a batch of mutations. Borrowed: a caller that must send it again (after renewing
    /// its token, say) keeps it.
    async fn push(&self, request: &PushRequest) -> Result<PushResponse, RemoteError>;

    /// Fetches changes after a cursor.
    async fn pull(&self, request: PullRequest) -> Result<PullResponse, RemoteError>;

    /// The scopes the user may pull now.
    async fn scopes(&self) -> Result<ScopesResponse, RemoteError>;
}
