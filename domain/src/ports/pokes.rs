use crate::{ports::ServerStoreError, protocol::Poke};
use async_trait::async_trait;
use shaku::Interface;
use std::sync::Arc;

/// What a [`PokeRelay`] calls with every poke.
pub type PokeHandler = Arc<dyn Fn(Poke) + Send + Sync>;

/// Carries pokes between the server instances that share one database, so a write accepted by
/// one instance reaches the event streams held by every other. One instance alone relays to
/// itself; several on PostgreSQL relay through LISTEN/NOTIFY.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PokeRelay: Interface {
    /// Tells every instance, this one included, about `poke`, once the change is committed.
    async fn publish(&self, poke: Poke) -> Result<(), ServerStoreError>;

    /// Calls `handler` with every poke any instance publishes from now on.
    fn subscribe(&self, handler: PokeHandler);
}
