//! Logging setup for the binaries.

use tracing_subscriber::{fmt, EnvFilter};

/// Sends `tracing` output to stderr, filtered by `TRACKFLOW_LOG` (same syntax as `RUST_LOG`).
/// Off by default: the CLI reports every failure itself, in one line, and a log line for the
/// same failure would only repeat it. Set `TRACKFLOW_LOG=debug` to see what happened inside.
pub fn init() {
    let filter = EnvFilter::try_from_env("TRACKFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("off"));
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
