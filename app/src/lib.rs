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
//! use shaku::HasComponent;
//! use trackflow_domain::{ports::ProjectRepository, Project, Timestamp, UserId};
//!
//! let module = trackflow_client::wiring::open_client_module(std::path::Path::new("./data")).await?;
//! let projects: &dyn ProjectRepository = module.resolve_ref();
//! let project = Project::new(UserId::new(), "Demo", None, Timestamp(0))?;
//! projects.create(project).await?; // stored and queued; no network involved
//! # Ok(()) }
//! ```
//!
//! `app/examples/embed.rs` runs a whole engine against a server.

pub mod engine;
pub mod local_user;
pub mod wiring;

pub use engine::{EngineOptions, SyncEngine};
