//! The `BackgroundSyncCoordinator`: runs sync (push, then pull) in the background when asked,
//! on a timer, and when the network comes back, and keeps the status stream current.
//!
//! - [`trigger`](BackgroundSyncCoordinator::trigger) returns at once. Triggers with one key
//!   coalesce: while the key's run is going, further triggers only ask for one follow-up run
//!   after it. Keys are bookkept apart, so one key's run never hides another key's trigger.
//! - Runs themselves go one at a time: two would only compete for the same outbox and cursors.
//! - [`trigger_if_ready`](BackgroundSyncCoordinator::trigger_if_ready) does nothing while the
//!   server is unreachable or nobody is signed in; [`force`](BackgroundSyncCoordinator::force)
//!   pulls every scope, ignoring their intervals.
//! - [`shutdown`](BackgroundSyncCoordinator::shutdown) refuses new triggers, drops follow-ups,
//!   and waits for the run in flight. A push cut short is safe either way: the outbox keeps
//!   every operation until the server acknowledges it, and the server deduplicates.

use crate::status::SyncStatusProvider;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::sync::watch;
use trackflow_domain::{
    ports::{Clock, DownstreamSync, NetworkMonitor, SessionStorage, SyncError, UpstreamSync},
    SyncPhase, SyncState,
};

/// The key of [`BackgroundSyncCoordinator::force`]'s and
/// [`sync_now`](BackgroundSyncCoordinator::sync_now)'s runs.
pub const FORCE_KEY: &str = "force";
/// The key of the periodic loop's runs.
pub const PERIODIC_KEY: &str = "periodic";
/// The key of runs started because the server became reachable.
pub const NETWORK_KEY: &str = "network";

/// What the coordinator drives and reports to.
#[derive(Clone)]
pub struct CoordinatorPorts {
    /// Pushes local changes.
    pub upstream: Arc<dyn UpstreamSync>,
    /// Pulls remote changes.
    pub downstream: Arc<dyn DownstreamSync>,
    /// Whether the server is reachable.
    pub network: Arc<dyn NetworkMonitor>,
    /// Whether someone is signed in.
    pub session: Arc<dyn SessionStorage>,
    /// Where the state is published.
    pub status: Arc<SyncStatusProvider>,
    /// Wall-clock time, for the last successful sync.
    pub clock: Arc<dyn Clock>,
}

/// The run a key is doing, and whether another is asked for after it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// A follow-up is wanted; `true` if any trigger behind it was forced.
    follow_up: Option<bool>,
}

struct Inner {
    ports: CoordinatorPorts,
    /// The keys with a run going (or waiting for the run before it to end).
    keys: Mutex<BTreeMap<String, Slot>>,
    /// Held through each run: runs go one at a time.
    work: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// How many runs have ended; tests and UIs wait on it.
    runs: watch::Sender<u64>,
    /// Turns true at shutdown, for the loops.
    stop: watch::Sender<bool>,
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Runs sync in the background. Cheap to clone; clones share one coordinator.
#[derive(Clone)]
pub struct BackgroundSyncCoordinator {
    inner: Arc<Inner>,
}

impl BackgroundSyncCoordinator {
    /// A coordinator over `ports`, with no loops running: triggers are its only work.
    pub fn new(ports: CoordinatorPorts) -> Self {
        Self {
            inner: Arc::new(Inner {
                ports,
                keys: Mutex::new(BTreeMap::new()),
                work: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
                runs: watch::Sender::new(0),
                stop: watch::Sender::new(false),
                loops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Asks for a run under `key` and returns at once. If `key`'s run is going, one follow-up
    /// run is scheduled after it (however many triggers come meanwhile). Does nothing after
    /// [`shutdown`](Self::shutdown).
    pub fn trigger(&self, key: &str) {
        self.request(key, false);
    }

    /// Asks for a run that pulls every scope, whatever its interval.
    pub fn force(&self) {
        self.request(FORCE_KEY, true);
    }

    /// [`trigger`](Self::trigger)s only if the server is reachable and someone is signed in
    /// (with a server and a token). Returns whether it did.
    pub async fn trigger_if_ready(&self, key: &str) -> bool {
        self.request_if_ready(key, false).await
    }

    async fn request_if_ready(&self, key: &str, force: bool) -> bool {
        if !self.inner.ports.network.is_online() {
            self.inner.ports.status.enter(SyncPhase::Offline);
            return false;
        }
        match self.inner.ports.session.load().await {
            Ok(Some(session)) if session.server_url.is_some() && session.access_token.is_some() => {
                self.request(key, force);
                true
            }
            Ok(_) => false,
            Err(error) => {
                tracing::warn!(%error, "could not read the session; not syncing");
                false
            }
        }
    }

    /// Runs push and pull now, as [`force`](Self::force) does (a person asked, as with
    /// pull-to-refresh: intervals do not apply), and returns the state after it. A run already
    /// going under the same key is followed up, and that follow-up is the one waited for. After
    /// [`shutdown`](Self::shutdown), returns the state at once.
    ///
    /// A person asked, so an old absence of the server is not trusted: reachability is checked
    /// again, and any upstream pause lifted, before the run.
    pub async fn sync_now(&self) -> SyncState {
        let ports = &self.inner.ports;
        if !ports.network.is_online() {
            ports.network.check().await;
        }
        ports.upstream.resume();
        self.request(FORCE_KEY, true);
        let mut runs = self.runs();
        let _ = runs.wait_for(|_| !lock(&self.inner.keys).contains_key(FORCE_KEY)).await;
        self.inner.ports.status.current()
    }

    /// The keys whose runs are going or scheduled, in order.
    pub fn ongoing(&self) -> Vec<String> {
        lock(&self.inner.keys).keys().cloned().collect()
    }

    /// A receiver of the number of runs ended so far.
    pub fn runs(&self) -> watch::Receiver<u64> {
        self.inner.runs.subscribe()
    }

    /// Starts a loop that calls [`trigger_if_ready`](Self::trigger_if_ready) every `interval`,
    /// the first time one interval from now. Scopes not due yet are skipped by the pull.
    pub fn spawn_periodic(&self, interval: Duration) {
        let this = self.clone();
        let mut stop = self.inner.stop.subscribe();
        let first = tokio::time::Instant::now() + interval;
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(first, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => { this.trigger_if_ready(PERIODIC_KEY).await; }
                    () = stopped(&mut stop) => break,
                }
            }
        });
        lock(&self.inner.loops).push(task);
    }

    /// Starts a loop that follows the server's reachability: when it comes back, upstream's
    /// pause is lifted and a forced run is triggered (what changed meanwhile is wanted now, not
    /// at the next interval); while it is away, the state says offline.
    pub fn follow_network(&self, mut online: watch::Receiver<bool>) {
        let this = self.clone();
        let mut stop = self.inner.stop.subscribe();
        let mut was_online = *online.borrow_and_update();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = online.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let now_online = *online.borrow_and_update();
                        if now_online && !was_online {
                            tracing::info!("the server is reachable again; syncing");
                            this.inner.ports.upstream.resume();
                            this.request_if_ready(NETWORK_KEY, true).await;
                        } else if !now_online {
                            this.inner.ports.status.enter(SyncPhase::Offline);
                        }
                        was_online = now_online;
                    }
                    () = stopped(&mut stop) => break,
                }
            }
        });
        lock(&self.inner.loops).push(task);
    }

    /// Stops: no new runs, follow-ups dropped, the loops ended, and the run in flight awaited.
    /// What it was sending is acknowledged or stays queued for the next start.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.stop.send_replace(true);
        let loops = std::mem::take(&mut *lock(&self.inner.loops));
        for task in loops {
            let _ = task.await;
        }
        for slot in lock(&self.inner.keys).values_mut() {
            slot.follow_up = None;
        }
        // The run in flight ends holding the work lock; taking it waits for that run.
        let _done = self.inner.work.lock().await;
        let mut runs = self.runs();
        let _ = runs.wait_for(|_| lock(&self.inner.keys).is_empty()).await;
    }

    fn request(&self, key: &str, force: bool) {
        if self.inner.closed.load(Ordering::SeqCst) {
            tracing::debug!(key, "shut down; trigger ignored");
            return;
        }
        {
            let mut keys = lock(&self.inner.keys);
            if let Some(slot) = keys.get_mut(key) {
                slot.follow_up = Some(slot.follow_up.unwrap_or(false) || force);
                return;
            }
            keys.insert(key.to_owned(), Slot { follow_up: None });
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        tokio::spawn(async move { inner.run_key(key, force).await });
    }
}

impl Inner {
    /// Runs for `key` until no follow-up is asked for.
    async fn run_key(self: Arc<Self>, key: String, mut force: bool) {
        loop {
            self.run(&key, force).await;
            let next = {
                let mut keys = lock(&self.keys);
                let follow_up = keys.get_mut(&key).and_then(|slot| slot.follow_up.take());
                match follow_up {
                    Some(forced) if !self.closed.load(Ordering::SeqCst) => Some(forced),
                    _ => {
                        keys.remove(&key);
                        None
                    }
                }
            };
            self.runs.send_modify(|n| *n += 1);
            match next {
                Some(forced) => force = forced,
                None => return,
            }
        }
    }

    /// One run: push, then pull, publishing the phases and the outcome.
    #[tracing::instrument(skip(self))]
    async fn run(&self, key: &str, force: bool) {
        let _one_at_a_time = self.work.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            // Queued behind the run that was in flight at shutdown: not started.
            return;
        }
        let status = &self.ports.status;
        status.enter(SyncPhase::Pushing);
        let push = self.ports.upstream.push(status.clone()).await;
        let mut reverted = 0;
        // The schema version the server requires, if it refused this program as too old.
        let mut upgrade = match &push {
            Ok(push) => push.upgrade_required,
            Err(error) => error.upgrade_required(),
        };
        let outcome = match push {
            Ok(push) if push.unreachable => {
                Outcome::Offline(push.paused.unwrap_or_else(|| "server unreachable".into()))
            }
            Ok(push) => {
                status.enter(SyncPhase::Pulling);
                match self.ports.downstream.pull(force, status.clone()).await {
                    Ok(pull) if pull.unreachable => {
                        Outcome::Offline(pull.first_error.unwrap_or_else(|| "server unreachable".into()))
                    }
                    Ok(pull) => {
                        reverted = pull.reverted;
                        // The largest named: a refusal of a bodiless request (an upload's
                        // HEAD) cannot name the version, and says 0.
                        upgrade = upgrade.max(pull.upgrade_required);
                        match pull.first_error.or(push.paused) {
                            Some(error) => Outcome::Failed(error),
                            None => Outcome::Synced,
                        }
                    }
                    Err(error) => {
                        upgrade = upgrade.max(error.upgrade_required());
                        Outcome::from_error(&error)
                    }
                }
            }
            Err(error) => Outcome::from_error(&error),
        };
        if let Err(error) = status.refresh_counts().await {
            tracing::warn!(%error, "could not count pending operations and conflicts");
        }
        let now = self.ports.clock.now();
        status.update(|s| {
            s.progress = None;
            s.reverted = reverted;
            s.upgrade_required = upgrade;
            match outcome {
                Outcome::Synced => {
                    s.phase = SyncPhase::Idle;
                    s.last_successful_sync = Some(now);
                    s.last_error = None;
                }
                Outcome::Offline(error) => {
                    s.phase = SyncPhase::Offline;
                    s.last_error = Some(error);
                }
                Outcome::Failed(error) => {
                    tracing::warn!(%error, "sync run failed");
                    s.phase = SyncPhase::Error;
                    s.last_error = Some(error);
                }
            }
        });
    }
}

/// How a run ended.
enum Outcome {
    Synced,
    Offline(String),
    Failed(String),
}

impl Outcome {
    fn from_error(error: &SyncError) -> Self {
        if error.is_unreachable() {
            Outcome::Offline(error.to_string())
        } else {
            Outcome::Failed(error.to_string())
        }
    }
}

/// Returns once `stop` turns true (or its sender is gone). The loops of the coordinator and of
/// the reachability monitor end on it; it drops the borrowed value at once (a held `Ref` would
/// block the sender), which `wait_for` inside `select!` would not.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
