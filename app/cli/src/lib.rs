//! # trackflow
//!
//! The `trackflow` command-line tool: the CLI ([`cli`]) over the embeddable client
//! (`trackflow-client`), the reference server's process and its shaku module ([`wiring`],
//! [`server`]), telemetry ([`telemetry`]), and the demo ([`demo`]). The benchmarks are the
//! `trackflow-bench` crate.

/// `println!` for the tool's output: when the reader went away (`trackflow project list | head
/// -n 1`), the process ends quietly with success instead of panicking on the broken pipe. What
/// was written before is durable already: every write commits before anything is printed.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout; ends the process (exit 0) if nobody reads it any more.
#[doc(hidden)]
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(line).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }
}

pub mod audio;
pub mod cli;
pub mod config;
pub mod demo;
pub mod link;
pub mod local_user;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod wiring;
