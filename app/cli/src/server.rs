//! `trackflow server`: the reference sync server over Diesel (SQLite by default, PostgreSQL for
//! a `postgres://` URL).

use anyhow::Context;
use clap::Args;
use shaku::HasComponent;
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use trackflow_server::{AppState, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage, ServerDatabase};

/// The server's database file in the data directory when `--db` is not given.
pub const SERVER_DATABASE_FILE: &str = "trackflow-server.db";

/// Options of `trackflow server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Database: `postgres://user@host/db`, a SQLite file path, or `sqlite::memory:` (default:
    /// trackflow-server.db in --data-dir).
    #[arg(long, env = "TRACKFLOW_SERVER_DB", value_name = "URL")]
    pub db: Option<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Pooled database connections (at least 1).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Days a bearer token stays valid (1 to 3650: a token valid for no time would refuse every
    /// sign-in it was just given).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub token_days: u64,
    /// Directory for audio files (default: beside a SQLite database file, else
    /// trackflow-blobs in --data-dir). Instances sharing a PostgreSQL database must share it.
    #[arg(long, env = "TRACKFLOW_SERVER_BLOBS", value_name = "DIR")]
    pub blobs: Option<PathBuf>,
    /// Days history is kept (deleted entities' fields, the records that make a push sent twice
    /// apply once); a device that has not pulled for longer starts its pulls over, losing
    /// nothing it queued. 0 keeps everything.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=36500))]
    pub retention_days: u64,
    /// Largest audio file accepted, in MiB (at least 1).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_blob_mib: u64,
}

/// Opens the store, serves until Ctrl-C or SIGTERM, then drains requests in flight.
pub async fn run(args: ServerArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let url = match args.db {
        Some(url) => url,
        None => data_dir.join(SERVER_DATABASE_FILE).to_string_lossy().into_owned(),
    };
    let connections = args.connections;
    let blob_dir = args.blobs.unwrap_or_else(|| default_blob_dir(&url, &data_dir));
    let (store, blobs) = tokio::task::spawn_blocking(move || {
        let store = DieselServerStore::open(&url, connections)?;
        let blobs =
            FsBlobStorage::open(&blob_dir).with_context(|| format!("opening {}", blob_dir.display()))?;
        anyhow::Ok((store, blobs))
    })
    .await
    .context("opening the database")??;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    // Scripts and tests read this line to learn the port.
    eprintln!(
        "trackflow server listening on http://{addr} (database: {}, audio: {})",
        store.database().redacted(),
        blobs.dir().display()
    );
    let config = ServerConfig {
        token_ttl: std::time::Duration::from_secs(args.token_days.saturating_mul(24 * 3600)),
        retention: (args.retention_days > 0)
            .then(|| std::time::Duration::from_secs(args.retention_days.saturating_mul(24 * 3600))),
        max_blob_bytes: args.max_blob_mib.saturating_mul(1024 * 1024),
        ..ServerConfig::default()
    };
    let module = crate::wiring::server_module(store, Arc::new(blobs), config);
    let state: Arc<AppState> = module.resolve();
    trackflow_server::serve(listener, state.as_ref().clone(), shutdown).await?;
    eprintln!("trackflow server stopped");
    Ok(())
}

/// Audio beside a SQLite file (`server.db` → `server.blobs/`); in the data directory for a
/// PostgreSQL or in-memory database.
fn default_blob_dir(url: &str, data_dir: &std::path::Path) -> PathBuf {
    match ServerDatabase::parse(url) {
        ServerDatabase::SqliteFile(path) => path.with_extension("blobs"),
        _ => data_dir.join("trackflow-blobs"),
    }
}

/// A future that completes on Ctrl-C, or on SIGTERM where there is one. The handlers are
/// installed when this is called, not when the future is first polled: the address line is
/// printed after it, and a signal sent as soon as that line appears must not find the default
/// action (which would kill the process without a graceful stop).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
