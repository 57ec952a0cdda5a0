//! The `RealtimeListener`: keeps the server's event stream open and pulls when poked.
//!
//! Every `ready` (the stream opened: what changed meanwhile is unknown) and every `poke` asks
//! the coordinator for a forced run, which coalesces with whatever run is going. When the
//! stream drops or cannot be opened, the listener reconnects after 1, 2, 4 … 60 s (the
//! [`ProbeOptions`] backoff, restarted after a stream that delivered); meanwhile the
//! coordinator's periodic loop keeps pulling, so realtime only ever makes sync sooner.

use crate::{coordinator::stopped, probe_delay, BackgroundSyncCoordinator, ProbeOptions};
use std::sync::Arc;
use tokio::sync::watch;
use trackflow_domain::ports::{EventSource, ServerEvent};

/// Listens to the server's event stream for one client.
pub struct RealtimeListener {
    events: Arc<dyn EventSource>,
    coordinator: BackgroundSyncCoordinator,
    backoff: ProbeOptions,
    connected: watch::Sender<bool>,
    pokes: watch::Sender<u64>,
}

impl RealtimeListener {
    /// A listener reading `events` and syncing through `coordinator`, reconnecting with
    /// `backoff`.
    pub fn new(
        events: Arc<dyn EventSource>,
        coordinator: BackgroundSyncCoordinator,
        backoff: ProbeOptions,
    ) -> Self {
        Self {
            events,
            coordinator,
            backoff,
            connected: watch::Sender::new(false),
            pokes: watch::Sender::new(0),
        }
    }

    /// Whether the stream is open now.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Counts the events that asked for a sync (`ready` and `poke`).
    pub fn pokes(&self) -> watch::Receiver<u64> {
        self.pokes.subscribe()
    }

    /// Listens until `stop` turns true.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        while !*stop.borrow() {
            let delivered = tokio::select! {
                delivered = self.listen_once() => delivered,
                () = stopped(&mut stop) => break,
            };
            self.connected.send_replace(false);
            failures = if delivered { 1 } else { failures.saturating_add(1) };
            let wait = probe_delay(failures, &self.backoff);
            tracing::debug!(?wait, "event stream closed; reconnecting");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopped(&mut stop) => break,
            }
        }
        self.connected.send_replace(false);
    }

    /// Opens the stream and follows it until it ends. Returns whether it delivered an event.
    async fn listen_once(&self) -> bool {
        let mut stream = match self.events.connect().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "event stream unavailable");
                return false;
            }
        };
        let mut delivered = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(ServerEvent::Ready) => {
                    self.connected.send_replace(true);
                    self.sync(&ServerEvent::Ready);
                }
                Ok(poke @ ServerEvent::Poke(_)) => self.sync(&poke),
                Err(error) => {
                    tracing::info!(%error, "event stream lost");
                    break;
                }
            }
            delivered = true;
        }
        delivered
    }

    fn sync(&self, event: &ServerEvent) {
        tracing::debug!(?event, "pulling on the server's word");
        self.coordinator.force();
        self.pokes.send_modify(|n| *n += 1);
    }
}
