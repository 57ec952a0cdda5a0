//! shaku components for the client's sync machinery. The types live in the inner crates,
//! which know nothing of this module; each is registered here under its own type (the
//! coordinator and the managers have more to offer than any one port), built from what the
//! module already holds plus parameters prepared before the build.

use super::ClientModule;
use shaku::{Component, HasComponent, ModuleBuildContext};
use std::sync::Arc;
use trackflow_domain::{
    ports::{
        BlobCache, BlobRemote, Clock, ConflictRepository, DownstreamRepository, EventSource, HealthProbe,
        PendingOperationsRepository, Reauthenticator, RemoteDataSource, SessionStorage,
    },
    NodeId,
};
use trackflow_executors::{ExecutorRegistry, PendingOperationsManager, UpstreamOptions, UpstreamPorts};
use trackflow_usecases::{
    AudioFiles, BackgroundSyncCoordinator, CoordinatorPorts, MonitoredRemote, ProbeOptions,
    ReachabilityMonitor, RealtimeListener, SyncDataManager, SyncDataOptions, SyncStatusProvider,
    SyncUseCases,
};

/// A parameter that has no sensible default: the module's builder must be given it.
/// [`client_module_with`](super::client_module_with) always gives it.
#[derive(Debug, Clone)]
pub struct Required<T>(pub Option<T>);

impl<T> Default for Required<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> Required<T> {
    /// The value; panics naming `what` if the builder was not given it.
    pub fn take(self, what: &str) -> T {
        self.0.unwrap_or_else(|| {
            panic!("ClientModule was built without {what}; use wiring::client_module_with")
        })
    }
}

/// Shorthand for resolving `I` while the module is being built.
fn get<I: shaku::Interface + ?Sized>(context: &mut ModuleBuildContext<ClientModule>) -> Arc<I>
where
    ClientModule: HasComponent<I>,
{
    <ClientModule as HasComponent<I>>::build_component(context)
}

/// Parameters of the [`ReachabilityMonitor`] component.
#[derive(Default)]
pub struct MonitorParameters {
    /// How the server is probed while away.
    pub options: ProbeOptions,
    /// What probes it (its health endpoint).
    pub probe: Required<Arc<dyn HealthProbe>>,
}

impl Component<ClientModule> for ReachabilityMonitor {
    type Interface = ReachabilityMonitor;
    type Parameters = MonitorParameters;

    fn build(
        _: &mut ModuleBuildContext<ClientModule>,
        params: MonitorParameters,
    ) -> Box<ReachabilityMonitor> {
        Box::new(ReachabilityMonitor::new(params.probe.take("a health probe"), params.options))
    }
}

impl Component<ClientModule> for MonitoredRemote {
    type Interface = MonitoredRemote;
    type Parameters = ();

    fn build(context: &mut ModuleBuildContext<ClientModule>, (): ()) -> Box<MonitoredRemote> {
        let remote: Arc<dyn RemoteDataSource> = get(context);
        Box::new(MonitoredRemote::new(remote, get(context)))
    }
}

impl Component<ClientModule> for ExecutorRegistry {
    type Interface = ExecutorRegistry;
    type Parameters = ();

    fn build(_: &mut ModuleBuildContext<ClientModule>, (): ()) -> Box<ExecutorRegistry> {
        Box::new(ExecutorRegistry::default())
    }
}

/// Parameters of the [`PendingOperationsManager`] component.
#[derive(Default)]
pub struct UpstreamParameters {
    /// Batching, backoff, polling.
    pub options: UpstreamOptions,
    /// The replica the manager sends as (the local store's).
    pub client_id: Required<NodeId>,
    /// Where uploads go: the server's blob endpoints.
    pub blob_remote: Required<Arc<dyn BlobRemote>>,
}

impl Component<ClientModule> for PendingOperationsManager {
    type Interface = PendingOperationsManager;
    type Parameters = UpstreamParameters;

    fn build(context: &mut ModuleBuildContext<ClientModule>, params: UpstreamParameters) -> Box<Self> {
        let remote: Arc<MonitoredRemote> = get(context);
        let ports = UpstreamPorts {
            outbox: get::<dyn PendingOperationsRepository>(context),
            conflicts: get::<dyn ConflictRepository>(context),
            remote,
            blobs: get::<dyn BlobCache>(context),
            blob_remote: params.blob_remote.take("the blob remote"),
            session: get::<dyn SessionStorage>(context),
            reauthenticator: get::<dyn Reauthenticator>(context),
            clock: get::<dyn Clock>(context),
        };
        let executors = get::<ExecutorRegistry>(context);
        Box::new(PendingOperationsManager::new(
            ports,
            executors,
            params.client_id.take("the replica id"),
            params.options,
        ))
    }
}

impl Component<ClientModule> for SyncUseCases {
    type Interface = SyncUseCases;
    /// The use cases themselves: they are plain values, configured (policies) before the build.
    type Parameters = SyncUseCases;

    fn build(_: &mut ModuleBuildContext<ClientModule>, use_cases: SyncUseCases) -> Box<SyncUseCases> {
        Box::new(use_cases)
    }
}

impl Component<ClientModule> for SyncDataManager {
    type Interface = SyncDataManager;
    /// Pages, intervals and concurrency. The manager applies pages with the module's
    /// [`SyncUseCases`] (which [`client_module_with`](super::client_module_with) builds from
    /// these same options), so that one set of use cases serves the whole module.
    type Parameters = SyncDataOptions;

    fn build(context: &mut ModuleBuildContext<ClientModule>, options: SyncDataOptions) -> Box<Self> {
        let remote: Arc<MonitoredRemote> = get(context);
        let use_cases = get::<SyncUseCases>(context).as_ref().clone();
        let options = SyncDataOptions { use_cases, ..options };
        let store = get::<dyn DownstreamRepository>(context);
        Box::new(SyncDataManager::new(remote, store, get::<dyn Clock>(context), options))
    }
}

impl Component<ClientModule> for SyncStatusProvider {
    type Interface = SyncStatusProvider;
    type Parameters = ();

    fn build(context: &mut ModuleBuildContext<ClientModule>, (): ()) -> Box<SyncStatusProvider> {
        let outbox = get::<dyn PendingOperationsRepository>(context);
        Box::new(SyncStatusProvider::new(outbox, get::<dyn ConflictRepository>(context)))
    }
}

impl Component<ClientModule> for BackgroundSyncCoordinator {
    type Interface = BackgroundSyncCoordinator;
    type Parameters = ();

    fn build(context: &mut ModuleBuildContext<ClientModule>, (): ()) -> Box<Self> {
        let upstream: Arc<PendingOperationsManager> = get(context);
        let downstream: Arc<SyncDataManager> = get(context);
        let network: Arc<ReachabilityMonitor> = get(context);
        Box::new(BackgroundSyncCoordinator::new(CoordinatorPorts {
            upstream,
            downstream,
            network,
            session: get::<dyn SessionStorage>(context),
            status: get::<SyncStatusProvider>(context),
            clock: get::<dyn Clock>(context),
        }))
    }
}

/// Parameters of the [`RealtimeListener`] component.
#[derive(Default)]
pub struct RealtimeParameters {
    /// The server's event stream.
    pub events: Required<Arc<dyn EventSource>>,
    /// Reconnection backoff.
    pub backoff: ProbeOptions,
}

impl Component<ClientModule> for RealtimeListener {
    type Interface = RealtimeListener;
    type Parameters = RealtimeParameters;

    fn build(context: &mut ModuleBuildContext<ClientModule>, params: RealtimeParameters) -> Box<Self> {
        let coordinator = get::<BackgroundSyncCoordinator>(context).as_ref().clone();
        Box::new(RealtimeListener::new(params.events.take("an event source"), coordinator, params.backoff))
    }
}

impl Component<ClientModule> for AudioFiles {
    type Interface = AudioFiles;
    /// The server's blob endpoints.
    type Parameters = Required<Arc<dyn BlobRemote>>;

    fn build(
        context: &mut ModuleBuildContext<ClientModule>,
        remote: Required<Arc<dyn BlobRemote>>,
    ) -> Box<Self> {
        Box::new(AudioFiles::new(get::<dyn BlobCache>(context), remote.take("the blob remote")))
    }
}
