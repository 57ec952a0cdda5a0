//! Reliability suites across real processes.
#![allow(missing_docs)]

mod architecture;
mod clock_skew;
mod convergence;
mod crash;
mod downstream;
mod proxy;
mod simulation;
mod upstream;
