//! The pure decisions of upstream sync: which operations coalesce, which go in the next batch,
//! and when a failed send is retried. The processor (`PendingOperationsManager`) applies them to
//! the outbox; they are tested here without I/O.

pub mod backoff;
pub mod coalesce;
pub mod schedule;

pub use backoff::{Backoff, Retry};
pub use coalesce::{coalesce, to_merge, CoalescePlan};
pub use schedule::Schedule;
