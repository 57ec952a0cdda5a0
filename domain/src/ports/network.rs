use async_trait::async_trait;
use shaku::Interface;

/// Whether the sync server is reachable.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait NetworkMonitor: Interface {
    /// The last known reachability, without waiting for the network.
    fn is_online(&self) -> bool;

    /// Probes the server now and returns the new reachability.
    async fn check(&self) -> bool;
}
