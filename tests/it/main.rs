//! Reliability suites across real processes.
#![allow(missing_docs)]

mod convergence;
mod crash;
mod downstream;
mod proxy;
mod upstream;
