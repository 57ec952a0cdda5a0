//! The `trackflow` binary end to end: offline commands, the demo, and clients against a real
//! server process. One test binary for the crate.
#![allow(missing_docs)]

mod cli;
mod scale_out;
mod server_process;
mod two_clients;
