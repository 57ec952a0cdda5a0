//! The `PendingOperationsManager`: drains the outbox to the server.
//!
//! One pass reads the queue (without the operations' content), coalesces what was never sent,
//! and sends batches chosen by a [`Schedule`] until nothing is ready, reading each batch whole.
//! Each batch is marked sent, pushed, and its results settled in one local transaction:
//!
//! | server answer                         | the operations                                              |
//! |---------------------------------------|-------------------------------------------------------------|
//! | `applied`, or `duplicate` of applied  | leave the outbox; rows take the server version              |
//! | `conflict` (or a duplicate of one)    | conflict recorded, then as applied                          |
//! | `rejected` (or a duplicate of one)    | parked as failed with the server's reason                   |
//! | unreachable; 429 or 503 (busy)        | stay pending, attempts kept; upstream pauses                |
//! | 401                                   | re-authenticate and resend once; else pause                 |
//! | timeout, cut, 500, 502, 504, 408      | attempt counted; back off (a resume ends it); fail at limit |
//! | 422 `not_in_schema` (an older server) | stay pending, attempts kept; upstream pauses                |
//! | 426 (this program's schema too old)   | stay pending, attempts kept; paused till upgraded           |
//! | 422 naming a mutation                 | that one parked; the rest sent again                        |
//! | other 4xx for the whole batch         | upstream pauses (unhealthy); nothing is failed              |
//!
//! After an operation does not go through, the later operations on its entity in the same batch
//! are held back unsent.
//!
//! Audio uploads ([`OperationKind::Upload`]) are outbox operations too, but never mutations: the
//! file streams from the local cache to the server's blob store (skipped if the server holds it
//! already) before the batch's push, and the track that names the audio depends on the upload,
//! so it is pushed only once the server has the file. Their failures settle as above.
//!
//! Nothing is lost on any path: an operation leaves the outbox only when the server holds it
//! (or the user discards it, or coalescing folds it into another), and the server deduplicates
//! on the operation id, so a batch resent after a lost response comes back as duplicates.

use crate::{
    queue::{coalesce, to_merge, Backoff, Retry, Schedule},
    registry::ExecutorRegistry,
};
use serde::Serialize;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};
use tokio::sync::{watch, Notify};
use trackflow_domain::{
    ports::{
        AccessToken, BlobCache, BlobRemote, Clock, ConflictRepository, NoProgress, OutboxCounts,
        PendingOperationsRepository, PushSummary, Reauthenticator, RemoteDataSource, RemoteError,
        SessionStorage, SyncError, SyncProgressObserver, UpstreamSync,
    },
    protocol::{Mutation, MutationOutcome, PushRequest, CLOCK_SKEW, NOT_IN_SCHEMA},
    sync::{ConflictKind, Settlement},
    BlobHash, ConflictId, EntityRef, NodeId, OperationId, OperationKind, RepositoryError, SyncConflict,
    SyncOperation, Timestamp,
};

/// How the manager sends.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Most operations per push (the server takes at most
    /// [`MAX_PUSH_MUTATIONS`](trackflow_domain::protocol::MAX_PUSH_MUTATIONS)).
    pub batch_size: usize,
    /// Retry timing and the attempt limit for failures that may have reached the server.
    pub backoff: Backoff,
    /// How often to try again while the server is unreachable (its attempt limit is unused).
    pub offline_probe: Backoff,
    /// The longest the processor sleeps with nothing scheduled: it picks up writes made by other
    /// processes on the same database.
    pub idle_poll: Duration,
    /// Health turns unhealthy when the oldest waiting operation is older than this and sending
    /// fails.
    pub stale_after: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            backoff: Backoff::default(),
            offline_probe: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(30),
                max_attempts: u32::MAX,
            },
            idle_poll: Duration::from_secs(30),
            stale_after: Duration::from_secs(600),
        }
    }
}

/// Why sending is paused until something changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pause {
    /// The server was unreachable, busy (429, 503), or refused requests as such (a wrong URL
    /// answering 404, say): try again at `until`. `streak` counts the pauses in a row, for the
    /// probe's backoff.
    Wait { until: Timestamp, streak: u32, error: String, cause: WaitCause },
    /// The server refused the credentials (`refused`) and no new ones could be had. Lifted when
    /// the stored session holds another token.
    SignIn { error: String, refused: Option<AccessToken> },
    /// No server is configured. Lifted when the stored session names one.
    NotConfigured { error: String },
    /// The server syncs only with a newer schema than this program's (426): the program must
    /// be upgraded. Lifted only by a resume (the user asking to sync) or a new process.
    Upgrade { min_version: u32, error: String },
}

impl Pause {
    fn error(&self) -> &str {
        match self {
            Pause::Wait { error, .. }
            | Pause::SignIn { error, .. }
            | Pause::NotConfigured { error }
            | Pause::Upgrade { error, .. } => error,
        }
    }

    fn needs_help(&self) -> bool {
        matches!(
            self,
            Pause::SignIn { .. }
                | Pause::NotConfigured { .. }
                | Pause::Upgrade { .. }
                | Pause::Wait { cause: WaitCause::Refused | WaitCause::ServerSchema, .. }
        )
    }
}

/// Why a timed pause waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitCause {
    /// The server could not be reached: the client is offline.
    Unreachable,
    /// The server asked for time (429, 503).
    Busy,
    /// The server refused requests as such: a person must look (a wrong URL, a proxy).
    Refused,
    /// The server does not know a type or field the operations name ([`NOT_IN_SCHEMA`]): it
    /// runs an older schema than this client and must be upgraded.
    ServerSchema,
}

/// Upstream's condition, for a UI or `trackflow queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Nothing is failing.
    Healthy,
    /// Work is failing or retrying, but the queue moves (or waits for the network).
    Degraded,
    /// Sync cannot proceed without help: sign-in needed, no server, or the queue has been stuck
    /// with errors for longer than the configured limit.
    Unhealthy,
}

/// What [`PendingOperationsManager::health`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamHealth {
    /// Overall condition.
    pub status: HealthStatus,
    /// Operations waiting to be acknowledged (pending or in flight).
    pub pending: u64,
    /// Operations parked as failed.
    pub failed: u64,
    /// Age of the oldest waiting operation, in milliseconds.
    pub oldest_pending_age_ms: Option<u64>,
    /// The most recent error.
    pub last_error: Option<String>,
}

/// The health of an outbox with `counts` at `now`, as a process that is not sending sees it
/// (`trackflow queue` while the app syncs, say): from what the outbox records.
pub fn health_of(counts: &OutboxCounts, now: Timestamp, stale_after: Duration) -> UpstreamHealth {
    assess(counts, None, now, stale_after)
}

/// The health of an outbox with `counts`, at `now`, with sending paused for `pause`.
fn assess(
    counts: &OutboxCounts,
    pause: Option<&Pause>,
    now: Timestamp,
    stale_after: Duration,
) -> UpstreamHealth {
    let pending = counts.pending + counts.in_flight;
    let oldest_pending_age_ms =
        counts.oldest_pending_at.map(|at| u64::try_from(now.as_millis() - at.as_millis()).unwrap_or(0));
    let last_error = pause.map(|p| p.error().to_owned()).or_else(|| counts.last_error.clone());
    let stale = oldest_pending_age_ms.is_some_and(|age| u128::from(age) > stale_after.as_millis());
    let status = if pause.is_some_and(Pause::needs_help) || (stale && last_error.is_some()) {
        HealthStatus::Unhealthy
    } else if counts.failed > 0 || (pending > 0 && last_error.is_some()) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    UpstreamHealth { status, pending, failed: counts.failed, oldest_pending_age_ms, last_error }
}

/// What one [`PendingOperationsManager::process`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassReport {
    /// Requests made: pushes and uploads.
    pub requests: u64,
    /// Operations the server now holds (applied, duplicates and conflicts).
    pub acknowledged: u64,
    /// Operations parked as failed.
    pub failed: u64,
    /// Operations scheduled to be sent again.
    pub retrying: u64,
    /// When the next pass is due: the earliest backoff or offline probe. `None` when nothing
    /// waits on a timer.
    pub next_due: Option<Timestamp>,
}

/// Tells an observer how far a pass is.
struct Progress<'a> {
    observer: &'a dyn SyncProgressObserver,
    /// Operations through before this read of the queue.
    before: u64,
    /// Operations in the queue as read.
    waiting: u64,
}

impl Progress<'_> {
    fn report(&self, report: &PassReport) {
        let done = report.acknowledged + report.failed;
        self.observer.progress(done, (self.before + self.waiting).max(done));
    }
}

/// The services the manager works with.
pub struct UpstreamPorts {
    /// The outbox.
    pub outbox: Arc<dyn PendingOperationsRepository>,
    /// Where conflicts are recorded.
    pub conflicts: Arc<dyn ConflictRepository>,
    /// The server.
    pub remote: Arc<dyn RemoteDataSource>,
    /// The local audio cache, where uploads read their files.
    pub blobs: Arc<dyn BlobCache>,
    /// The server's blob store.
    pub blob_remote: Arc<dyn BlobRemote>,
    /// The session (its token is what a 401 refused).
    pub session: Arc<dyn SessionStorage>,
    /// Renews a refused token.
    pub reauthenticator: Arc<dyn Reauthenticator>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

/// Drains the outbox to the server: priorities, coalescing, batching, retries with backoff,
/// failure parking, acknowledgement. See the module docs.
pub struct PendingOperationsManager {
    ports: UpstreamPorts,
    executors: Arc<ExecutorRegistry>,
    client_id: NodeId,
    options: UpstreamOptions,
    jitter: Box<dyn Fn() -> f64 + Send + Sync>,
    pause: Mutex<Option<Pause>>,
    /// Held for the whole of a pass: passes never overlap, so the in-flight state of the outbox
    /// is this manager's alone while one runs.
    pass: tokio::sync::Mutex<()>,
    /// Requests of the current pass refused for the device's clock, and sent again re-stamped.
    clock_refusals: AtomicU32,
    /// Told how far passes nobody else observes get (see `observe_passes`).
    observer: OnceLock<Arc<dyn SyncProgressObserver>>,
    wake: Notify,
    /// Set by [`resume`](PendingOperationsManager::resume): the next pass sends what waits on
    /// a backoff at once.
    hurry: AtomicBool,
    passes: watch::Sender<u64>,
}

/// How one push went, for the batch loop.
enum Sent {
    /// Results came back (possibly after re-authenticating).
    Answered,
    /// Sending is paused; stop the pass.
    Paused,
}

impl PendingOperationsManager {
    /// A manager sending as replica `client_id`.
    pub fn new(
        ports: UpstreamPorts,
        executors: impl Into<Arc<ExecutorRegistry>>,
        client_id: NodeId,
        options: UpstreamOptions,
    ) -> Self {
        Self {
            ports,
            executors: executors.into(),
            client_id,
            options,
            jitter: Box::new(rand::random::<f64>),
            pause: Mutex::new(None),
            pass: tokio::sync::Mutex::new(()),
            clock_refusals: AtomicU32::new(0),
            observer: OnceLock::new(),
            wake: Notify::new(),
            hurry: AtomicBool::new(false),
            passes: watch::Sender::new(0),
        }
    }

    /// Replaces the clock the manager schedules by.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.ports.clock = clock;
        self
    }

    /// Replaces the jitter source (uniform in `[0, 1)`), so tests can pin the backoff.
    pub fn with_jitter(mut self, jitter: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.jitter = Box::new(jitter);
        self
    }

    /// Asks for a pass soon: a write was queued. Respects an offline pause.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Lifts any pause and asks for a pass now: the network came back, the user signed in, or
    /// a person asked to sync. What waits on a backoff goes in that pass too: its failures were
    /// likely the network's (a request cut as the link went down counts an attempt), and a
    /// person waiting should not wait for a timer. A try sent before its backoff ended does not
    /// count an attempt if it fails again, and the operation waits out the backoff it had.
    pub fn resume(&self) {
        *self.pause.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.hurry.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// A receiver that changes after every pass of [`run`](Self::run).
    pub fn passes(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Upstream's health now.
    pub async fn health(&self) -> Result<UpstreamHealth, RepositoryError> {
        let counts = self.ports.outbox.counts().await?;
        let pause = self.current_pause();
        Ok(assess(&counts, pause.as_ref(), self.ports.clock.now(), self.options.stale_after))
    }

    /// Runs passes until `shutdown` turns true: after every wake-up, when the earliest backoff
    /// or offline probe is due, and at least every `idle_poll`.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let wait = match self.process().await {
                Ok(report) => {
                    let now = self.ports.clock.now();
                    report.next_due.map_or(self.options.idle_poll, |due| {
                        Duration::from_millis(u64::try_from(due.as_millis() - now.as_millis()).unwrap_or(0))
                            .min(self.options.idle_poll)
                    })
                }
                Err(error) => {
                    tracing::error!(%error, "upstream pass failed on the local store");
                    self.options.idle_poll
                }
            };
            self.passes.send_modify(|n| *n += 1);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        // The sender is gone: nobody can stop us any more, so stop now.
                        break;
                    }
                }
            }
        }
    }

    fn current_pause(&self) -> Option<Pause> {
        self.pause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_pause(&self, pause: Option<Pause>) {
        *self.pause.lock().unwrap_or_else(|e| e.into_inner()) = pause;
    }

    /// Tells `observer` how far every pass that no caller observes gets (the passes of
    /// [`run`](Self::run), and [`process`](Self::process)): a status that counts pending work
    /// as the background sends it. Set once; later calls change nothing.
    pub fn observe_passes(&self, observer: Arc<dyn SyncProgressObserver>) {
        let _ = self.observer.set(observer);
    }

    /// One pass: sends every operation that is ready, batch by batch, until none is.
    pub async fn process(&self) -> Result<PassReport, RepositoryError> {
        match self.observer.get() {
            Some(observer) => self.process_with(observer.as_ref()).await,
            None => self.process_with(&NoProgress).await,
        }
    }

    /// [`process`](Self::process), telling `progress` how many of the operations waiting at
    /// the start (and queued meanwhile) are through: acknowledged or parked as failed.
    pub async fn process_with(
        &self,
        progress: &dyn SyncProgressObserver,
    ) -> Result<PassReport, RepositoryError> {
        let _one_at_a_time = self.pass.lock().await;
        // Operations left in flight by a pass that ended early (a local error after sending, or
        // a process that stopped mid-request) go back to pending. Safe: no other pass runs.
        self.ports.outbox.release_in_flight().await?;
        self.clock_refusals.store(0, Ordering::Relaxed);
        let mut report = PassReport::default();
        loop {
            if let Some(until) = self.paused_until().await? {
                report.next_due = until;
                return Ok(report);
            }
            // Every answer tells the device the server's clock: operations stamped before it
            // knew its clock was fast get readings the server accepts.
            let restamped = self.ports.outbox.restamp().await?;
            if restamped > 0 {
                tracing::info!(restamped, "operations stamped again by the server's clock");
            }
            // The queue without its content: an operation's fields are read only to send it.
            let mut queue = self.ports.outbox.queue().await?;
            let merging = to_merge(&queue);
            if !merging.is_empty() {
                let content = self.ports.outbox.load(merging).await?;
                let plan = coalesce(&queue, &content);
                if !plan.is_empty() && self.ports.outbox.apply_coalescing(plan).await? {
                    queue = self.ports.outbox.queue().await?;
                }
            }
            // After a resume, one read of the queue treats every backoff as expired (taken once,
            // or what fails again would be sent again at once).
            if self.hurry.swap(false, Ordering::SeqCst) {
                for op in &mut queue {
                    op.next_attempt_at = None;
                }
            }
            let mut schedule = Schedule::new(queue);
            let requests_before = report.requests;
            let progress = Progress {
                observer: progress,
                before: report.acknowledged + report.failed,
                waiting: schedule.len() as u64,
            };
            let paused = self.drain(&mut schedule, &mut report, &progress).await?;
            report.next_due = schedule.next_due(self.ports.clock.now());
            if paused {
                if let Some(Pause::Wait { until, .. }) = self.current_pause() {
                    report.next_due = Some(until);
                }
                return Ok(report);
            }
            // Nothing was sent: nothing new can have become ready. Otherwise read the queue
            // again for writes made meanwhile.
            if report.requests == requests_before {
                return Ok(report);
            }
        }
    }

    /// `Some(when)` while sending is paused: `Some(Some(t))` until `t`, `Some(None)` until
    /// something changes. Lifts a sign-in or configuration pause the stored session resolves.
    async fn paused_until(&self) -> Result<Option<Option<Timestamp>>, RepositoryError> {
        let Some(pause) = self.current_pause() else { return Ok(None) };
        let still = match &pause {
            Pause::Wait { until, .. } => {
                return Ok((*until > self.ports.clock.now()).then_some(Some(*until)));
            }
            Pause::SignIn { refused, .. } => {
                let stored = self.ports.session.load().await?.and_then(|s| s.access_token);
                stored.is_none() || stored == *refused
            }
            Pause::NotConfigured { .. } => {
                self.ports.session.load().await?.and_then(|s| s.server_url).is_none()
            }
            Pause::Upgrade { .. } => true,
        };
        if still {
            return Ok(Some(None));
        }
        self.set_pause(None);
        Ok(None)
    }

    /// Sends batches chosen by `schedule` until none is ready, keeping `schedule` in step with
    /// the outbox. Returns whether sending paused. Only the batch in hand is read whole.
    ///
    /// The settlements of one batch are stored while the next batch is out, so the client's
    /// bookkeeping overlaps the server's work. That is safe because the schedule is updated
    /// before the next batch is chosen: acknowledged operations leave it (what depended on them
    /// may go, since the server holds them), and operations to retry stay in it as
    /// [`InFlight`](trackflow_domain::OperationStatus::InFlight) until their retry is stored,
    /// which holds back their entity's later operations and their children. The two local
    /// transactions never overlap: the next batch is marked sent first, and only then is the
    /// previous one settled.
    async fn drain(
        &self,
        schedule: &mut Schedule,
        report: &mut PassReport,
        progress: &Progress<'_>,
    ) -> Result<bool, RepositoryError> {
        // The previous batch's settlements, not yet stored.
        let mut unsettled = Vec::new();
        loop {
            let chosen = schedule.next_batch(self.ports.clock.now(), self.options.batch_size);
            if chosen.is_empty() {
                self.settle(schedule, unsettled).await?;
                return Ok(false);
            }
            // Read before the previous batch's settlements are stored, which never touch these:
            // an operation settled for a retry is in flight in the schedule until stored.
            let batch = self.ports.outbox.load(chosen.clone()).await?;
            if batch.len() < chosen.len() {
                // Gone from the outbox since the queue was read (discarded by the user).
                let loaded: HashSet<OperationId> = batch.iter().map(|op| op.id).collect();
                schedule.left(chosen.iter().filter(|id| !loaded.contains(id)));
            }
            let outgoing = self.prepare(&batch);
            let going: Vec<OperationId> = outgoing
                .uploads
                .iter()
                .map(|op| op.id)
                .chain(outgoing.mutations.iter().map(|(_, op)| op.id))
                .collect();
            if !going.is_empty() {
                self.ports.outbox.mark_sent(going).await?;
            }
            let outbox = Arc::clone(&self.ports.outbox);
            let settling = tokio::spawn(async move {
                if unsettled.is_empty() {
                    return Ok(());
                }
                outbox.settle(unsettled).await
            });
            let sent = self.send(outgoing, report).await;
            // Awaited on every path, so no settlement is still being stored when the pass ends.
            let settled = match settling.await {
                Ok(settled) => settled,
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            };
            settled?;
            schedule.released();
            let (sent, settlements) = sent?;
            schedule.settled(&settlements);
            count(&settlements, report);
            progress.report(report);
            unsettled = settlements;
            if let Sent::Paused = sent {
                self.settle(schedule, unsettled).await?;
                return Ok(true);
            }
        }
    }

    /// Stores `settlements`, already recorded in `schedule`, and marks their retries pending
    /// there.
    async fn settle(
        &self,
        schedule: &mut Schedule,
        settlements: Vec<(OperationId, Settlement)>,
    ) -> Result<(), RepositoryError> {
        if settlements.is_empty() {
            return Ok(());
        }
        self.ports.outbox.settle(settlements).await?;
        schedule.released();
        Ok(())
    }

    /// Runs each operation of `batch` through its executor: the uploads and mutations to send,
    /// and failures for the operations an executor refused. An entity's operations after a
    /// refused one are left out, unsent; the ones before it go.
    fn prepare<'a>(&self, batch: &'a [SyncOperation]) -> Outgoing<'a> {
        let mut outgoing = Outgoing {
            uploads: Vec::new(),
            mutations: Vec::with_capacity(batch.len()),
            settlements: Vec::new(),
        };
        let mut refused: HashSet<EntityRef> = HashSet::new();
        for op in batch {
            if refused.contains(&op.entity) {
                // Left pending, unsent: it must not reach the server before the refused one.
                continue;
            }
            if op.kind == OperationKind::Upload {
                outgoing.uploads.push(op);
                continue;
            }
            match self.executors.prepare(op) {
                Ok(mutation) => outgoing.mutations.push((mutation, op)),
                Err(error) => {
                    refused.insert(op.entity);
                    outgoing.settlements.push((op.id, Settlement::Failed { reason: error.to_string() }));
                }
            }
        }
        outgoing
    }

    /// Sends `outgoing` (already marked sent) and decides each operation's settlement. A
    /// refusal of the whole request that names a mutation parks that one and sends the rest
    /// again; a request too large is halved. Once an operation of the batch does not go through
    /// (failed, retrying or held), the operations after it on its entity are held back, unsent,
    /// so an entity's operations never reach the server out of order.
    async fn send(
        &self,
        outgoing: Outgoing<'_>,
        report: &mut PassReport,
    ) -> Result<(Sent, Vec<(OperationId, Settlement)>), RepositoryError> {
        let Outgoing { uploads, mutations, mut settlements } = outgoing;
        let mut held: HashSet<EntityRef> = HashSet::new();
        for (i, op) in uploads.iter().enumerate() {
            report.requests += 1;
            match self.upload(op).await? {
                Ok(settlement) => {
                    if !matches!(settlement, Settlement::Applied { .. }) {
                        held.insert(op.entity);
                    }
                    settlements.push((op.id, settlement));
                }
                Err(pause) => {
                    tracing::info!(error = pause.error(), "upstream paused");
                    let error = pause.error().to_owned();
                    settlements.extend(uploads[i..].iter().map(|op| (op.id, kept(op, &error))));
                    settlements.extend(mutations.iter().map(|(_, op)| (op.id, kept(op, &error))));
                    self.set_pause(Some(pause));
                    return Ok((Sent::Paused, settlements));
                }
            }
        }
        if mutations.is_empty() {
            return Ok((Sent::Answered, settlements));
        }
        // Parts still to send, last-in first-out: earlier parts are pushed last.
        let mut parts: Vec<Vec<(Mutation, &SyncOperation)>> = vec![mutations];
        while let Some(part) = parts.pop() {
            let (part, skipped): (Vec<_>, Vec<_>) =
                part.into_iter().partition(|(_, op)| !held.contains(&op.entity));
            // Marked sent with the batch but held back now: pending again, untouched.
            settlements
                .extend(skipped.iter().map(|(_, op)| (op.id, kept(op, "held behind an earlier operation"))));
            if part.is_empty() {
                continue;
            }
            // The mutations move into the request; the rare paths that send some of them again
            // take them back out of it.
            let (mutations, ops): (Vec<Mutation>, Vec<&SyncOperation>) = part.into_iter().unzip();
            let request = PushRequest { client_id: self.client_id, mutations };
            let part = |request: PushRequest| request.mutations.into_iter().zip(ops.iter().copied());
            report.requests += 1;
            let pause = match self.push(&request).await {
                Ok(response) => {
                    self.set_pause(None);
                    let mut outcomes: HashMap<OperationId, MutationOutcome> =
                        response.results.into_iter().map(|r| (r.id, r.outcome)).collect();
                    for op in ops {
                        let settlement = match outcomes.remove(&op.id) {
                            Some(outcome) => self.settlement(op, &outcome).await?,
                            None => self.after_transient(op, "the server sent no result for it", None),
                        };
                        if !matches!(settlement, Settlement::Applied { .. } | Settlement::Conflict { .. }) {
                            held.insert(op.entity);
                        }
                        settlements.push((op.id, settlement));
                    }
                    continue;
                }
                Err(RemoteError::Permanent { code, message, .. })
                    if code == CLOCK_SKEW
                        && self.clock_refusals.fetch_add(1, Ordering::Relaxed) < MAX_CLOCK_REFUSALS =>
                {
                    // Refused whole for the device's clock, and the answer told the server's:
                    // the next round re-stamps these operations and sends them again.
                    let error = format!("{code}: {message}");
                    for op in ops {
                        held.insert(op.entity);
                        settlements.push((op.id, kept(op, &error)));
                    }
                    continue;
                }
                Err(RemoteError::Permanent { code, message, .. }) if code == NOT_IN_SCHEMA => {
                    // Not the operations' fault: the server's schema is older than this
                    // client's. They stay queued, untouched, until it is upgraded.
                    self.wait_pause(
                        format!("the server must be upgraded: {code}: {message}"),
                        None,
                        WaitCause::ServerSchema,
                    )
                }
                Err(RemoteError::Permanent { mutation_id: Some(refused), code, message })
                    if ops.iter().any(|op| op.id == refused) =>
                {
                    // The request was refused because of one mutation, and nothing was stored:
                    // park that one and send the rest again.
                    if let Some(op) = ops.iter().find(|op| op.id == refused) {
                        held.insert(op.entity);
                        settlements
                            .push((op.id, Settlement::Failed { reason: format!("{code}: {message}") }));
                    }
                    parts.push(part(request).filter(|(_, op)| op.id != refused).collect());
                    continue;
                }
                Err(RemoteError::Permanent { code, .. })
                    if (code == "body_too_large" || code == "http_413") && ops.len() > 1 =>
                {
                    let mut part: Vec<_> = part(request).collect();
                    let right = part.split_off(part.len() / 2);
                    parts.push(right);
                    parts.push(part);
                    continue;
                }
                Err(error @ RemoteError::Permanent { .. }) if is_no_server(&error) => {
                    self.pause_for(error).await
                }
                Err(RemoteError::Permanent { mutation_id: None, code, message }) if ops.len() == 1 => {
                    // One mutation refused as a request: as far as anyone can tell, its fault.
                    held.insert(ops[0].entity);
                    settlements
                        .push((ops[0].id, Settlement::Failed { reason: format!("{code}: {message}") }));
                    continue;
                }
                Err(RemoteError::Permanent { code, message, .. }) => {
                    // A refusal that names no mutation (a wrong URL answering 404, a proxy
                    // answering 403): not the operations' fault. Wait and probe, loudly.
                    self.wait_pause(
                        format!("the server refused the request: {code}: {message}"),
                        None,
                        WaitCause::Refused,
                    )
                }
                Err(
                    error @ (RemoteError::Unreachable { .. }
                    | RemoteError::Busy { .. }
                    | RemoteError::Unauthorized(_)
                    | RemoteError::UpgradeRequired { .. }),
                ) => self.pause_for(error).await,
                Err(RemoteError::Transient { message, retry_after_ms }) => {
                    let retry_after = retry_after_ms.map(Duration::from_millis);
                    for op in ops {
                        held.insert(op.entity);
                        settlements.push((op.id, self.after_transient(op, &message, retry_after)));
                    }
                    continue;
                }
                Err(other) => {
                    // A kind this version does not know: treat it like a transient failure.
                    let message = other.to_string();
                    for op in ops {
                        held.insert(op.entity);
                        settlements.push((op.id, self.after_transient(op, &message, None)));
                    }
                    continue;
                }
            };
            // Sending pauses: this part and every part not sent yet go back to pending, their
            // attempts untouched (the request never counted against them).
            tracing::info!(error = pause.error(), "upstream paused");
            let error = pause.error().to_owned();
            settlements.extend(ops.iter().map(|op| (op.id, kept(op, &error))));
            settlements.extend(parts.iter().flatten().map(|(_, op)| (op.id, kept(op, &error))));
            self.set_pause(Some(pause));
            return Ok((Sent::Paused, settlements));
        }
        Ok((Sent::Answered, settlements))
    }

    /// A timed pause after `error`: the server's `retry_after`, or the next step of the probe's
    /// backoff, whichever is longer.
    fn wait_pause(&self, error: String, retry_after: Option<Duration>, cause: WaitCause) -> Pause {
        let streak = match self.current_pause() {
            Some(Pause::Wait { streak, .. }) => streak.saturating_add(1),
            _ => 1,
        };
        let probe = self.options.offline_probe.ceiling(streak).mul_f64((self.jitter)().clamp(0.0, 1.0));
        let wait = retry_after.map_or(probe, |server| server.max(probe));
        Pause::Wait { until: later(self.ports.clock.now(), wait), streak, error, cause }
    }

    /// Pushes, renewing the token once if the server refuses it.
    async fn push(
        &self,
        request: &PushRequest,
    ) -> Result<trackflow_domain::protocol::PushResponse, RemoteError> {
        self.authorized(|| self.ports.remote.push(request)).await
    }

    /// Makes a request with `call`, renewing the token once if the server refuses it.
    async fn authorized<T, F, R>(&self, call: F) -> Result<T, RemoteError>
    where
        F: Fn() -> R,
        R: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let token = self.ports.session.load().await.ok().flatten().and_then(|s| s.access_token);
        match call().await {
            Err(RemoteError::Unauthorized(message)) => match self.ports.reauthenticator.renew(token).await {
                Ok(true) => call().await,
                Ok(false) => Err(RemoteError::Unauthorized(message)),
                Err(error) => Err(RemoteError::Unauthorized(format!("{message}; renewing failed: {error}"))),
            },
            other => other,
        }
    }

    /// The pause a failure of a whole request calls for: the server unreachable or busy, the
    /// credentials refused, or no server configured. A kind of failure this version does not
    /// know waits and probes, as a refusal does.
    async fn pause_for(&self, error: RemoteError) -> Pause {
        match error {
            RemoteError::Unreachable { .. } => {
                self.wait_pause(error.to_string(), None, WaitCause::Unreachable)
            }
            RemoteError::Busy { message, retry_after_ms } => self.wait_pause(
                format!("server busy: {message}"),
                retry_after_ms.map(Duration::from_millis),
                WaitCause::Busy,
            ),
            RemoteError::Unauthorized(_) => Pause::SignIn {
                error: format!("sign-in required: {error}"),
                refused: self.ports.session.load().await.ok().flatten().and_then(|s| s.access_token),
            },
            RemoteError::Permanent { message, .. } if is_no_server(&error) => {
                Pause::NotConfigured { error: message }
            }
            RemoteError::UpgradeRequired { min_version, .. } => {
                Pause::Upgrade { min_version, error: error.to_string() }
            }
            other => self.wait_pause(other.to_string(), None, WaitCause::Refused),
        }
    }

    /// Streams one upload operation's file to the server unless the server holds it already.
    /// `Ok` carries the settlement; `Err` the pause that stops the pass (nothing was counted
    /// against the operation).
    async fn upload(&self, op: &SyncOperation) -> Result<Result<Settlement, Pause>, RepositoryError> {
        let named = op.changed_fields.get("audio_sha256").and_then(|c| c.value.as_str());
        let Some(hash) = named.and_then(|h| BlobHash::parse(h).ok()) else {
            return Ok(Ok(Settlement::Failed {
                reason: "an upload that names no valid audio_sha256".into(),
            }));
        };
        // The server may hold it already (another track, an earlier attempt): then the local
        // copy is not even needed.
        // What the server keeps of an earlier cut attempt is not sent again.
        let sent = match self.authorized(|| self.ports.blob_remote.upload_offset(&hash)).await {
            Ok(None) => Ok(()),
            Ok(Some(offset)) => match self.ports.blobs.open(&hash).await? {
                Some(file) => {
                    self.authorized(|| self.ports.blob_remote.upload_blob(&hash, file.clone(), offset)).await
                }
                None => {
                    return Ok(Ok(Settlement::Failed {
                        reason: format!("the audio file {hash} is no longer in the local cache"),
                    }))
                }
            },
            Err(error) => Err(error),
        };
        Ok(match sent {
            Ok(()) => {
                self.set_pause(None);
                self.ports.blobs.mark_uploaded(&hash).await?;
                // An upload changes no row: version 0 never lowers the track's.
                Ok(Settlement::Applied { version: 0 })
            }
            Err(RemoteError::Transient { message, retry_after_ms }) => {
                Ok(self.after_transient(op, &message, retry_after_ms.map(Duration::from_millis)))
            }
            Err(RemoteError::Permanent { code, message, .. }) if code != "no_server" => {
                Ok(Settlement::Failed { reason: format!("upload refused: {code}: {message}") })
            }
            Err(error) => Err(self.pause_for(error).await),
        })
    }

    /// The settlement of `op` for the server's `outcome`; records conflicts.
    async fn settlement(
        &self,
        op: &SyncOperation,
        outcome: &MutationOutcome,
    ) -> Result<Settlement, RepositoryError> {
        Ok(match outcome {
            MutationOutcome::Applied { version } => Settlement::Applied { version: *version },
            MutationOutcome::Duplicate { version, first } => match first.as_ref() {
                MutationOutcome::Conflict { .. } | MutationOutcome::Rejected { .. } => {
                    Box::pin(self.settlement(op, first)).await?
                }
                MutationOutcome::Applied { .. } | MutationOutcome::Duplicate { .. } => {
                    Settlement::Applied { version: *version }
                }
            },
            MutationOutcome::Conflict { server, lost_fields } => {
                // Under this build's names: a server not yet upgraded past a rename, or a
                // result it stored before, names fields as they were.
                let mut server = server.clone();
                let entity_type = server.entity_type;
                entity_type.row_to_current(&mut server.fields, &mut server.field_hlc);
                let mut lost_fields = lost_fields.clone();
                entity_type.names_to_current(&mut lost_fields);
                // Deleted with its parent: what this device wrote is kept in the conflict, and
                // only the deletion can be taken.
                let (kind, remote) = match server.deleted_with {
                    Some(_) => (ConflictKind::ParentDeleted, Default::default()),
                    None => (ConflictKind::Fields, server.fields.clone()),
                };
                // Recorded before the operation leaves the outbox, keyed by the operation, so a
                // replayed result records it once.
                self.ports
                    .conflicts
                    .record(SyncConflict {
                        id: ConflictId::from_uuid(op.id.as_uuid()),
                        entity: op.entity,
                        local: op.changed_fields.iter().map(|(k, c)| (k.clone(), c.value.clone())).collect(),
                        remote,
                        fields: lost_fields,
                        detected_at: self.ports.clock.now(),
                        resolution: None,
                        kind,
                    })
                    .await?;
                Settlement::Conflict { server }
            }
            MutationOutcome::Rejected { code, message } => {
                Settlement::Failed { reason: format!("{code}: {message}") }
            }
        })
    }

    /// A failure that may have reached the server: counts an attempt, then backs off or parks.
    fn after_transient(&self, op: &SyncOperation, error: &str, retry_after: Option<Duration>) -> Settlement {
        // Sent before its backoff ended (a resume): the try does not count, or a person pressing
        // sync through a server's bad minute would use up the attempts that park the write.
        if op.next_attempt_at.is_some_and(|at| at > self.ports.clock.now()) {
            return Settlement::Retry {
                attempts: op.attempts,
                not_before: op.next_attempt_at,
                error: error.to_owned(),
            };
        }
        let attempts = op.attempts.saturating_add(1);
        match self.options.backoff.after_failure(attempts, retry_after, (self.jitter)()) {
            Retry::After(wait) => Settlement::Retry {
                attempts,
                not_before: Some(later(self.ports.clock.now(), wait)),
                error: error.to_owned(),
            },
            Retry::GiveUp => {
                Settlement::Failed { reason: format!("gave up after {attempts} attempts: {error}") }
            }
        }
    }
}

/// Whether `error` says no server is configured.
fn is_no_server(error: &RemoteError) -> bool {
    matches!(error, RemoteError::Permanent { code, .. } if code == "no_server")
}

/// A batch run through the executors, ready to send.
struct Outgoing<'a> {
    /// Audio files to upload first.
    uploads: Vec<&'a SyncOperation>,
    /// What goes to the server, with the operation each came from.
    mutations: Vec<(Mutation, &'a SyncOperation)>,
    /// Operations settled before sending (refused by their executor).
    settlements: Vec<(OperationId, Settlement)>,
}

/// The manager as the coordinator drives it: a pass, and the pause it ended in.
#[async_trait::async_trait]
impl UpstreamSync for PendingOperationsManager {
    async fn push(&self, progress: Arc<dyn SyncProgressObserver>) -> Result<PushSummary, SyncError> {
        let report = self.process_with(progress.as_ref()).await?;
        let pause = self.current_pause();
        Ok(PushSummary {
            requests: report.requests,
            acknowledged: report.acknowledged,
            failed: report.failed,
            retrying: report.retrying,
            paused: pause.as_ref().map(|p| p.error().to_owned()),
            unreachable: matches!(pause, Some(Pause::Wait { cause: WaitCause::Unreachable, .. })),
            upgrade_required: match pause {
                Some(Pause::Upgrade { min_version, .. }) => Some(min_version),
                _ => None,
            },
        })
    }

    fn resume(&self) {
        PendingOperationsManager::resume(self);
    }
}

/// Counts `settlements` in `report`: acknowledged, failed, retrying.
fn count(settlements: &[(OperationId, Settlement)], report: &mut PassReport) {
    for (_, settlement) in settlements {
        match settlement {
            Settlement::Applied { .. } | Settlement::Conflict { .. } => report.acknowledged += 1,
            Settlement::Failed { .. } => report.failed += 1,
            Settlement::Retry { .. } => report.retrying += 1,
        }
    }
}

/// Back to pending with its attempts untouched: the request never counted against it.
fn kept(op: &SyncOperation, error: &str) -> Settlement {
    Settlement::Retry { attempts: op.attempts, not_before: op.next_attempt_at, error: error.to_owned() }
}

/// Refusals for the clock one pass answers by re-stamping and sending again; after these, the
/// operation is parked like any other refusal (the server's tolerance may be below ours).
const MAX_CLOCK_REFUSALS: u32 = 2;

/// `at` plus `wait`.
fn later(at: Timestamp, wait: Duration) -> Timestamp {
    at.plus_millis(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
