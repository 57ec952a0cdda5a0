//! # trackflow
//!
//! The `trackflow` command-line tool: the CLI ([`cli`]) over the embeddable client
//! (`trackflow-client`), the reference server's process and its shaku module ([`wiring`],
//! [`server`]), telemetry ([`telemetry`]), and the demo ([`demo`]). The benchmarks are the
//! `trackflow-bench` crate.

pub mod cli;
pub mod config;
pub mod demo;
pub mod link;
pub mod local_user;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod wiring;
