//! The `trackflow-bench` command: `trackflow-bench [--json] [SCENARIO...]` runs the benchmarks
//! (see docs/PERFORMANCE.md); `trackflow-bench client` is the client process of the downstream
//! scenario, `trackflow-bench open` that of the startup scenario and `trackflow-bench serve` a
//! server of the scale-out scenario, started by the benchmark itself; `trackflow-bench delay`
//! is a relay adding a round-trip time in front of a database.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use trackflow_bench::{BenchArgs, ClientArgs, DelayArgs, OpenArgs};

/// Measure TrackFlow Sync: every scenario runs its baseline in the same process.
#[derive(Debug, Parser)]
#[command(name = "trackflow-bench", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Print the reports as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// The scenarios and their sizes.
    #[command(flatten)]
    bench: BenchArgs,
    /// Internal commands.
    #[command(subcommand)]
    internal: Option<Internal>,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// The client process of the downstream scenario (not for direct use).
    #[command(hide = true)]
    Client(ClientArgs),
    /// The client process of the startup scenario (not for direct use).
    #[command(hide = true)]
    Open(OpenArgs),
    /// A server process of the scale-out scenario: `trackflow server` (not for direct use).
    #[command(hide = true)]
    Serve(trackflow::server::ServerArgs),
    /// A TCP relay adding a round-trip time, to put the database "on another machine" (see
    /// docs/PERFORMANCE.md).
    #[command(hide = true)]
    Delay(DelayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = trackflow_music::install() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                match cli.internal {
                    Some(Internal::Client(args)) => trackflow_bench::downstream_client(args).await,
                    Some(Internal::Open(args)) => trackflow_bench::open_client(args).await,
                    Some(Internal::Serve(args)) => trackflow::server::run(args, std::env::temp_dir()).await,
                    Some(Internal::Delay(args)) => trackflow_bench::delay_relay(args).await,
                    None => trackflow_bench::run(cli.bench, cli.json).await,
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
