//! # trackflow-executors
//!
//! Upstream sync of TrackFlow Sync: it will hold one `OperationExecutor` per entity type, the
//! registry that finds an executor by its entity type name, and the `PendingOperationsManager`
//! that drains the outbox — priorities, causal order, batching, coalescing, retries with
//! backoff and acknowledgement.
//!
//! So far it holds the pure decisions of the queue ([`queue`]): coalescing, batch selection by
//! priority and causality, and the backoff schedule; and the executors ([`registry`]), which
//! check each operation against its entity type and turn it into the mutation sent.

pub mod queue;
pub mod registry;

pub use registry::{EntityExecutor, ExecutorError, ExecutorRegistry, OperationExecutor};
