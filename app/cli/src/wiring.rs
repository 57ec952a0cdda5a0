//! The server's shaku module: its store (opened before the build: opening is fallible and
//! may run migrations) and the state the HTTP handlers share.

use shaku::{module, Component, HasComponent, ModuleBuildContext};
use std::sync::Arc;
use trackflow_client::wiring::Required;
use trackflow_domain::ports::{BlobStorage, PokeRelay, ServerStore};
use trackflow_server::{AppState, LocalPokeRelay, ServerConfig};
use trackflow_server_store::DieselServerStore;

pub use generated::ServerModule;

mod generated {
    // shaku's macro generates items without doc comments.
    #![allow(missing_docs)]
    use super::*;

    module! {
        pub ServerModule {
            components = [DieselServerStore, AppState],
            providers = []
        }
    }
}

impl Component<ServerModule> for DieselServerStore {
    type Interface = dyn ServerStore;
    /// The opened store.
    type Parameters = Required<DieselServerStore>;

    fn build(
        _: &mut ModuleBuildContext<ServerModule>,
        store: Required<DieselServerStore>,
    ) -> Box<dyn ServerStore> {
        Box::new(
            store.0.unwrap_or_else(|| panic!("ServerModule was built without its store; use server_module")),
        )
    }
}

/// Parameters of the [`AppState`] component.
#[derive(Default)]
pub struct StateParameters {
    /// Limits and lifetimes.
    pub config: ServerConfig,
    /// Where audio is kept.
    pub blobs: Required<Arc<dyn BlobStorage>>,
    /// How pokes reach the other instances on the same database.
    pub relay: Required<Arc<dyn PokeRelay>>,
}

impl Component<ServerModule> for AppState {
    type Interface = AppState;
    type Parameters = StateParameters;

    fn build(context: &mut ModuleBuildContext<ServerModule>, params: StateParameters) -> Box<AppState> {
        let store = <ServerModule as HasComponent<dyn ServerStore>>::build_component(context);
        let relay = params.relay.take("a poke relay");
        let blobs = params.blobs.take("blob storage");
        Box::new(AppState::with_relay(store, params.config, relay).with_blobs(blobs))
    }
}

/// The server's module over an opened `store` keeping audio in `blobs`, configured by
/// `config`. On PostgreSQL, pokes travel between instances by LISTEN/NOTIFY; on SQLite the
/// instance pokes only its own streams. Call it on a tokio runtime.
pub fn server_module(
    store: DieselServerStore,
    blobs: Arc<dyn BlobStorage>,
    config: ServerConfig,
) -> ServerModule {
    let relay: Arc<dyn PokeRelay> = match store.poke_relay() {
        Some(relay) => Arc::new(relay),
        None => Arc::new(LocalPokeRelay::default()),
    };
    ServerModule::builder()
        .with_component_parameters::<DieselServerStore>(Required(Some(store)))
        .with_component_parameters::<AppState>(StateParameters {
            config,
            blobs: Required(Some(blobs)),
            relay: Required(Some(relay)),
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_module_resolves_its_store_and_state_with_real_parameters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let server_store = DieselServerStore::open("sqlite::memory:", 1).expect("server store");
        let blobs =
            Arc::new(trackflow_server_store::FsBlobStorage::open(dir.path().join("blobs")).expect("blobs"));
        let server = server_module(server_store, blobs, ServerConfig::default());
        let store: Arc<dyn ServerStore> = server.resolve();
        store.ping().await.expect("the server's store answers");
        let _: Arc<AppState> = server.resolve();
    }
}
