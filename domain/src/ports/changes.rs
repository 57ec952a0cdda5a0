//! The change feed and live queries: how an app's UI learns what changed.

use crate::{error::RepositoryError, sync::ChangeEvent};
use async_trait::async_trait;
use shaku::Interface;
use std::sync::Arc;

/// The local store's change feed: one [`ChangeEvent`] per committed transaction that changed
/// what a reader sees (a local write, a pulled page, a resolved conflict, a refused change
/// undone), in commit order, never before the commit.
pub trait ChangeFeed: Interface {
    /// A new subscription. It sees every transaction that commits after this call.
    fn subscribe(&self) -> Box<dyn ChangeSubscription>;
}

/// One subscriber's view of the feed. A subscriber that falls behind is not waited for: the
/// events it did not take in time are dropped for it, and it is told how many.
#[async_trait]
pub trait ChangeSubscription: Send {
    /// The next event; [`Missed`] when this subscriber fell behind (whatever it shows should be
    /// read again); `None` once the store is gone.
    async fn next(&mut self) -> Option<Result<Arc<ChangeEvent>, Missed>>;
}

/// Events a lagging subscriber never got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} change events were missed: the subscriber fell behind")]
pub struct Missed(pub u64);

/// The results of a live query: the current one at once, then a new one after every committed
/// transaction whose changes can affect it ([`crate::sync::LiveQuery::affected_by`]).
#[async_trait]
pub trait LiveResults<E>: Send {
    /// The next result; `None` once the store is gone.
    async fn next(&mut self) -> Option<Result<Vec<E>, RepositoryError>>;
}
