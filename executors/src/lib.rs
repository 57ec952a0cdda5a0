//! # trackflow-executors
//!
//! Upstream sync of TrackFlow Sync: it will hold one `OperationExecutor` per entity type, the
//! registry that finds an executor by its entity type name, and the `PendingOperationsManager`
//! that drains the outbox — priorities, causal order, batching, coalescing, retries with
//! backoff and acknowledgement.
//!
//! So far it holds the pure decisions of the queue ([`queue`]): coalescing, batch selection by
//! priority and causality, and the backoff schedule.

pub mod queue;

use trackflow_domain::EntityType;

/// The entity types that upstream sync must cover, in registration order.
pub const COVERED_ENTITY_TYPES: [EntityType; 6] = EntityType::ALL;
