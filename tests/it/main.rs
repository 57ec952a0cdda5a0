//! Reliability suites across real processes.
#![allow(missing_docs)]

mod crash;
mod downstream;
mod proxy;
mod upstream;
