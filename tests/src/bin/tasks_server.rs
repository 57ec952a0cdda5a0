//! A sync server for the `trackflow-example-tasks` model: the reference server over a SQLite
//! file, with the example's registry installed (version 1 of its schema, or the version the
//! third argument names: `v2`, `v3`; `v2-breaking` declares version 2 a breaking change). It
//! prints `listening on http://ADDR` on stderr once it accepts connections, and runs until it
//! is killed.

use std::{path::PathBuf, sync::Arc};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(listen), version) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: tasks-server DATABASE_FILE LISTEN_ADDR [v1|v2|v2-breaking|v3]");
    };
    let registry = match version.as_deref() {
        None | Some("v1") => trackflow_example_tasks::registry()?,
        Some("v2") => trackflow_example_tasks::v2::registry()?,
        // Version 2 declared breaking: version 1 devices are told to upgrade.
        Some("v2-breaking") => trackflow_example_tasks::v2::registry()?.breaking_since(2)?,
        // Version 3 renames a task's title; older devices keep syncing.
        Some("v3") => trackflow_example_tasks::v3::registry()?,
        Some(other) => anyhow::bail!("unknown schema version {other:?}"),
    };
    registry.install()?;
    let store = DieselServerStore::open(&db, 4)?;
    let blobs = FsBlobStorage::open(PathBuf::from(format!("{db}.blobs")))?;
    let state = AppState::new(Arc::new(store), ServerConfig::default()).with_blobs(Arc::new(blobs));
    let server = RunningServer::start(listen.parse()?, state).await?;
    eprintln!("listening on {}", server.url());
    std::future::pending::<()>().await;
    Ok(())
}
