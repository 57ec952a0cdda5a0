//! # trackflow-client
//!
//! The TrackFlow Sync client an application embeds: the local store, the HTTP remote, upstream
//! and downstream sync, the coordinator and the status stream, wired with shaku
//! ([`wiring::ClientModule`]) and run together by [`engine::SyncEngine`]. It compiles no server,
//! no command-line interface and no PostgreSQL driver.
//!
//! Embedding the engine in another Rust program looks like this:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use trackflow_client::domain::{ports::Repository, Timestamp, UserId};
//! use trackflow_client::wiring::{open_client_module, repository};
//! use trackflow_music::Project; // the program's own types, declared on the public API
//!
//! trackflow_music::install()?; // once, at start
//! let module = open_client_module(std::path::Path::new("./data")).await?;
//! let projects = repository::<Project>(&module);
//! let project = Project::new(UserId::new(), "Demo", None, Timestamp(0))?;
//! projects.create(project).await?; // stored and queued; no network involved
//! # Ok(()) }
//! ```
//!
//! `app/examples/embed.rs` runs a whole engine against a server.

pub mod engine;
pub mod wiring;

pub use engine::{EngineOptions, SyncEngine};

/// Why the client could not be opened or wired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The local database could not be opened or migrated (the error names the file).
    #[error(transparent)]
    Store(#[from] trackflow_store::StoreError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(trackflow_domain::ports::RemoteError),
}

// The crates an embedding program works with, re-exported so that `trackflow-client` is its one
// dependency: the domain's entities and ports, shaku to resolve them, the option types of the
// store, the remote and the sync machinery.
pub use shaku;
pub use trackflow_domain as domain;
pub use trackflow_executors as executors;
pub use trackflow_remote as remote;
pub use trackflow_store as store;
pub use trackflow_usecases as usecases;
