//! A sync server for the `trackflow-example-tasks` model: the reference server over a SQLite
//! file, with the example's registry installed. It prints `listening on http://ADDR` on stderr
//! once it accepts connections, and runs until it is killed.

use std::{path::PathBuf, sync::Arc};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(listen)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: tasks-server DATABASE_FILE LISTEN_ADDR");
    };
    trackflow_example_tasks::registry()?.install()?;
    let store = DieselServerStore::open(&db, 4)?;
    let blobs = FsBlobStorage::open(PathBuf::from(format!("{db}.blobs")))?;
    let state = AppState::new(Arc::new(store), ServerConfig::default()).with_blobs(Arc::new(blobs));
    let server = RunningServer::start(listen.parse()?, state).await?;
    eprintln!("listening on {}", server.url());
    std::future::pending::<()>().await;
    Ok(())
}
