//! Reliability suites across real processes.
#![allow(missing_docs)]

mod crash;
mod proxy;
mod upstream;
