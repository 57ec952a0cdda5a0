//! The server's shaku module: its store (opened before the build: opening is fallible and
//! may run migrations) and the state the HTTP handlers share.

use super::client::Required;
use shaku::{module, Component, HasComponent, ModuleBuildContext};
use std::sync::Arc;
use trackflow_data::DieselServerStore;
use trackflow_domain::ports::{BlobStorage, PokeRelay, ServerStore};
use trackflow_server::{AppState, LocalPokeRelay, ServerConfig};

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
