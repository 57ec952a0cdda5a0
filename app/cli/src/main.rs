//! The `trackflow` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    trackflow::cli::main()
}
