//! Logging setup for the binaries.

use crate::config::LogFormat;
use tracing_subscriber::{fmt, EnvFilter};

/// Sends `tracing` output to stderr, filtered by `filter` (the syntax of `RUST_LOG`; the CLI
/// takes it from `--log`, `TRACKFLOW_LOG` or the config file), as text or one JSON object per
/// line. Off by default: the CLI reports every failure itself, in one line, and a log line for
/// the same failure would only repeat it. A filter that does not parse turns logging off
/// rather than failing the command.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("off"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
