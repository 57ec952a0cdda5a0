//! The server's shaku module: its store (opened before the build: opening is fallible and
//! may run migrations) and the state the HTTP handlers share.

use super::client::Required;
use shaku::{module, Component, HasComponent, ModuleBuildContext};
use trackflow_data::DieselServerStore;
use trackflow_domain::ports::ServerStore;
use trackflow_server::{AppState, ServerConfig};

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

impl Component<ServerModule> for AppState {
    type Interface = AppState;
    type Parameters = ServerConfig;

    fn build(context: &mut ModuleBuildContext<ServerModule>, config: ServerConfig) -> Box<AppState> {
        let store = <ServerModule as HasComponent<dyn ServerStore>>::build_component(context);
        Box::new(AppState::new(store, config))
    }
}

/// The server's module over an opened `store`, configured by `config`.
pub fn server_module(store: DieselServerStore, config: ServerConfig) -> ServerModule {
    ServerModule::builder()
        .with_component_parameters::<DieselServerStore>(Required(Some(store)))
        .with_component_parameters::<AppState>(config)
        .build()
}
