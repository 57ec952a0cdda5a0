//! The `ReachabilityMonitor`: whether the sync server can be reached. It learns from every
//! request the client makes (through [`MonitoredRemote`]) and, while the server is away, from
//! probing its health endpoint with backoff. Its watch stream is what the coordinator follows
//! to sync as soon as the server is back.

use crate::coordinator::stopped;
use async_trait::async_trait;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use trackflow_domain::{
    ports::{HealthProbe, NetworkMonitor, RemoteDataSource, RemoteError},
    protocol::{PullRequest, PullResponse, PushRequest, PushResponse, ScopesResponse},
};

/// How the monitor probes while the server is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The wait before the first probe; each later one waits twice as long as the one before.
    pub first: Duration,
    /// The longest wait between probes.
    pub cap: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self { first: Duration::from_secs(1), cap: Duration::from_secs(60) }
    }
}

/// The wait before probe number `streak` (from 1) of one absence: doubling, capped.
pub fn probe_delay(streak: u32, options: &ProbeOptions) -> Duration {
    let doublings = streak.saturating_sub(1).min(31);
    options.first.saturating_mul(1 << doublings).min(options.cap)
}

/// Whether the server is reachable, as the last request or probe found.
pub struct ReachabilityMonitor {
    probe: Arc<dyn HealthProbe>,
    online: watch::Sender<bool>,
    options: ProbeOptions,
}

impl ReachabilityMonitor {
    /// A monitor probing through `probe`. It starts out online: the first request tells.
    pub fn new(probe: Arc<dyn HealthProbe>, options: ProbeOptions) -> Self {
        Self { probe, online: watch::Sender::new(true), options }
    }

    /// A stream of reachability, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.online.subscribe()
    }

    /// Learns from a request's outcome: no connection means offline; any answer from the
    /// server (even a refusal) means online. A timeout or a cut connection says neither.
    pub fn observe<T>(&self, outcome: &Result<T, RemoteError>) {
        let online = match outcome {
            Ok(_) => true,
            Err(RemoteError::Unreachable { .. }) => false,
            Err(RemoteError::Transient { .. }) => return,
            Err(_) => true,
        };
        self.online.send_if_modified(|was| std::mem::replace(was, online) != online);
    }

    /// While the server is away, probes it with backoff until it answers; then waits for the
    /// next absence. Returns when `stop` turns true.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut online = self.subscribe();
        loop {
            tokio::select! {
                () = offline(&mut online) => {}
                () = stopped(&mut stop) => return,
            }
            let mut streak = 0;
            while !self.is_online() {
                streak += 1;
                tokio::select! {
                    () = tokio::time::sleep(probe_delay(streak, &self.options)) => {}
                    // A request got through meanwhile: no need to probe.
                    _ = online.changed() => continue,
                    () = stopped(&mut stop) => return,
                }
                let back = self.check().await;
                tracing::debug!(streak, back, "probed the server");
            }
            tracing::info!("the server is reachable");
        }
    }
}

#[async_trait]
impl NetworkMonitor for ReachabilityMonitor {
    fn is_online(&self) -> bool {
        *self.online.borrow()
    }

    async fn check(&self) -> bool {
        let outcome = self.probe.probe().await;
        self.observe(&outcome);
        self.is_online()
    }
}

/// Returns once `online` says offline.
async fn offline(online: &mut watch::Receiver<bool>) {
    if online.wait_for(|online| !*online).await.is_err() {
        // The monitor is gone; nothing will change again.
        std::future::pending::<()>().await;
    }
}

/// A remote that tells the monitor how each request went.
pub struct MonitoredRemote {
    inner: Arc<dyn RemoteDataSource>,
    monitor: Arc<ReachabilityMonitor>,
}

impl MonitoredRemote {
    /// `inner`, observed by `monitor`.
    pub fn new(inner: Arc<dyn RemoteDataSource>, monitor: Arc<ReachabilityMonitor>) -> Self {
        Self { inner, monitor }
    }
}

#[async_trait]
impl RemoteDataSource for MonitoredRemote {
    async fn push(&self, request: &PushRequest) -> Result<PushResponse, RemoteError> {
        let outcome = self.inner.push(request).await;
        self.monitor.observe(&outcome);
        outcome
    }

    async fn pull(&self, request: PullRequest) -> Result<PullResponse, RemoteError> {
        let outcome = self.inner.pull(request).await;
        self.monitor.observe(&outcome);
        outcome
    }

    async fn scopes(&self) -> Result<ScopesResponse, RemoteError> {
        let outcome = self.inner.scopes().await;
        self.monitor.observe(&outcome);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use trackflow_domain::ports::{MockHealthProbe, MockRemoteDataSource};

    fn unreachable() -> RemoteError {
        RemoteError::Unreachable { message: "connection refused".into() }
    }

    #[test]
    fn probes_back_off_doubling_up_to_the_cap() {
        let options = ProbeOptions { first: Duration::from_secs(1), cap: Duration::from_secs(10) };
        let table = [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (40, 10)];
        for (streak, seconds) in table {
            assert_eq!(probe_delay(streak, &options), Duration::from_secs(seconds), "probe {streak}");
        }
    }

    #[test]
    fn every_answer_from_the_server_means_online_and_only_no_connection_means_offline() {
        let table: [(&str, bool, Result<(), RemoteError>, bool); 6] = [
            ("no connection", true, Err(unreachable()), false),
            ("an answer", false, Ok(()), true),
            ("a refusal is an answer", false, Err(RemoteError::Unauthorized("expired".into())), true),
            (
                "busy is an answer",
                false,
                Err(RemoteError::Busy { message: "503".into(), retry_after_ms: None }),
                true,
            ),
            (
                "a timeout says nothing (offline stays)",
                false,
                Err(RemoteError::Transient { message: "timeout".into(), retry_after_ms: None }),
                false,
            ),
            (
                "a timeout says nothing (online stays)",
                true,
                Err(RemoteError::Transient { message: "timeout".into(), retry_after_ms: None }),
                true,
            ),
        ];
        for (name, before, outcome, after) in table {
            let monitor = ReachabilityMonitor::new(Arc::new(MockHealthProbe::new()), ProbeOptions::default());
            monitor.observe(&if before { Ok(()) } else { Err(unreachable()) });
            monitor.observe(&outcome);
            assert_eq!(monitor.is_online(), after, "{name}");
        }
    }

    #[tokio::test]
    async fn a_monitored_remote_reports_each_request() {
        let mut inner = MockRemoteDataSource::new();
        inner.expect_scopes().times(1).returning(|| Err(unreachable()));
        inner.expect_scopes().times(1).returning(|| Ok(ScopesResponse { scopes: Vec::new() }));
        let monitor =
            Arc::new(ReachabilityMonitor::new(Arc::new(MockHealthProbe::new()), ProbeOptions::default()));
        let remote = MonitoredRemote::new(Arc::new(inner), monitor.clone());
        assert!(remote.scopes().await.is_err());
        assert!(!monitor.is_online());
        assert!(remote.scopes().await.is_ok());
        assert!(monitor.is_online());
    }

    #[tokio::test(start_paused = true)]
    async fn while_offline_the_server_is_probed_with_backoff_until_it_answers() {
        let probes = Arc::new(AtomicU32::new(0));
        let mut probe = MockHealthProbe::new();
        let counted = probes.clone();
        // Down for two probes, back at the third.
        probe.expect_probe().returning(move || match counted.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err(unreachable()),
            _ => Ok(()),
        });
        let options = ProbeOptions { first: Duration::from_secs(1), cap: Duration::from_secs(60) };
        let monitor = Arc::new(ReachabilityMonitor::new(Arc::new(probe), options));
        let (stop, stopping) = watch::channel(false);
        let running = {
            let monitor = monitor.clone();
            tokio::spawn(async move { monitor.run(stopping).await })
        };
        let started = tokio::time::Instant::now();
        let mut online = monitor.subscribe();
        monitor.observe::<()>(&Err(unreachable()));
        tokio::time::timeout(Duration::from_secs(600), online.wait_for(|online| *online))
            .await
            .expect("back in time")
            .expect("open");
        assert_eq!(probes.load(Ordering::SeqCst), 3);
        assert_eq!(started.elapsed(), Duration::from_secs(1 + 2 + 4), "waits of 1 s, 2 s and 4 s");
        stop.send_replace(true);
        running.await.expect("stopped");
    }
}
