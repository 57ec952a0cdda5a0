//! The `trackflow` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    trackflow::telemetry::init();
    trackflow::cli::main()
}
