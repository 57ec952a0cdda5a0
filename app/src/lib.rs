//! # trackflow
//!
//! The TrackFlow Sync application crate: the only place that names concrete types. It wires
//! the layers with shaku ([`wiring`]), sets up telemetry ([`telemetry`]), and holds the
//! `trackflow` command-line interface ([`cli`]) and its benchmark command ([`bench`](mod@bench)).
//!
//! Embedding the engine in another Rust program looks like this:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use shaku::HasComponent;
//! use trackflow_domain::{ports::ProjectRepository, Project, Timestamp, UserId};
//!
//! let module = trackflow::wiring::open_client_module(std::path::Path::new("./data")).await?;
//! let projects: &dyn ProjectRepository = module.resolve_ref();
//! let project = Project::new(UserId::new(), "Demo", None, Timestamp(0))?;
//! projects.create(project).await?; // stored and queued; no network involved
//! # Ok(()) }
//! ```

pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod link;
pub mod local_user;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod wiring;
