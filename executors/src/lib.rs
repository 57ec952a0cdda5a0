//! # trackflow-executors
//!
//! Upstream sync of TrackFlow Sync.
//!
//! What is here now:
//! - [`registry`]: one [`OperationExecutor`] per entity type, found by the type's name. Each one
//!   checks an operation against its entity type and turns it into the mutation that is sent.
//! - [`queue`]: the pure decisions of the queue — coalescing, batch selection by priority
//!   without breaking causality, and the backoff schedule.
//! - [`upstream`]: the [`PendingOperationsManager`], which applies these decisions to the outbox,
//!   sends batches, settles results, retries with backoff, parks failures, re-authenticates,
//!   reports health, and runs in the background woken by writes, reconnects and timers.

pub mod queue;
pub mod registry;
pub mod upstream;

pub use registry::{EntityExecutor, ExecutorError, ExecutorRegistry, OperationExecutor};
pub use upstream::{
    HealthStatus, PassReport, PendingOperationsManager, UpstreamHealth, UpstreamOptions, UpstreamPorts,
};
