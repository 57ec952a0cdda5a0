//! Coordinator tests: fakes for the two halves of a run that a test can hold at the gate,
//! mocks for the network, the session, the clock and the stores, and tokio's paused clock for
//! the periodic loop. Nothing sleeps: tests wait on the coordinator's run counter.

use super::*;
use async_trait::async_trait;
use std::sync::atomic::AtomicU64;
use tokio::sync::Semaphore;
use trackflow_domain::{
    ports::{
        AccessToken, MockClock, MockConflictRepository, MockNetworkMonitor, MockPendingOperationsRepository,
        MockSessionStorage, OutboxCounts, PullSummary, PushSummary, RemoteError, Session,
        SyncProgressObserver,
    },
    Timestamp, UserId,
};

const NOW: Timestamp = Timestamp(1_800_000_000_000);
const WAIT: Duration = Duration::from_secs(10);

/// What the fakes saw, in order: `push`, `pull` or `pull(force)`.
type Log = Arc<Mutex<Vec<&'static str>>>;

/// An upstream that logs each push and, when gated, waits for a permit before answering.
struct FakeUpstream {
    log: Log,
    gate: Option<Arc<Semaphore>>,
    entered: watch::Sender<u64>,
    resumed: AtomicU64,
    answer: PushSummary,
}

#[async_trait]
impl UpstreamSync for FakeUpstream {
    async fn push(&self, progress: Arc<dyn SyncProgressObserver>) -> Result<PushSummary, SyncError> {
        lock(&self.log).push("push");
        self.entered.send_modify(|n| *n += 1);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        progress.progress(1, 1);
        Ok(self.answer.clone())
    }

    fn resume(&self) {
        self.resumed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A downstream that logs each pull and answers `answer` (or fails unreachable).
struct FakeDownstream {
    log: Log,
    answer: Result<PullSummary, fn() -> SyncError>,
}

#[async_trait]
impl DownstreamSync for FakeDownstream {
    async fn pull(
        &self,
        force: bool,
        _progress: Arc<dyn SyncProgressObserver>,
    ) -> Result<PullSummary, SyncError> {
        lock(&self.log).push(if force { "pull(force)" } else { "pull" });
        self.answer.clone().map_err(|error| error())
    }
}

struct Harness {
    coordinator: BackgroundSyncCoordinator,
    upstream: Arc<FakeUpstream>,
    status: Arc<SyncStatusProvider>,
    log: Log,
    gate: Arc<Semaphore>,
    entered: watch::Receiver<u64>,
}

#[derive(Clone)]
struct Setup {
    gated: bool,
    online: bool,
    signed_in: bool,
    push: PushSummary,
    pull: Result<PullSummary, fn() -> SyncError>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            gated: false,
            online: true,
            signed_in: true,
            push: PushSummary::default(),
            pull: Ok(PullSummary::default()),
        }
    }
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let log: Log = Arc::default();
        let gate = Arc::new(Semaphore::new(0));
        let (entered_tx, entered) = watch::channel(0);
        let upstream = Arc::new(FakeUpstream {
            log: log.clone(),
            gate: setup.gated.then(|| gate.clone()),
            entered: entered_tx,
            resumed: AtomicU64::new(0),
            answer: setup.push,
        });
        let downstream = Arc::new(FakeDownstream { log: log.clone(), answer: setup.pull });
        let mut network = MockNetworkMonitor::new();
        network.expect_is_online().return_const(setup.online);
        let mut session = MockSessionStorage::new();
        let signed_in = setup.signed_in;
        session.expect_load().returning(move || {
            Ok(Some(Session {
                user_id: UserId::new(),
                server_url: Some("http://127.0.0.1:1".into()),
                access_token: signed_in.then(|| AccessToken::new("token")),
            }))
        });
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let mut outbox = MockPendingOperationsRepository::new();
        outbox.expect_counts().returning(|| {
            Ok(OutboxCounts {
                pending: 0,
                in_flight: 0,
                failed: 1,
                oldest_pending_at: None,
                last_error: None,
            })
        });
        let mut conflicts = MockConflictRepository::new();
        conflicts.expect_list().returning(|_| Ok(Vec::new()));
        let status = Arc::new(SyncStatusProvider::new(Arc::new(outbox), Arc::new(conflicts)));
        let coordinator = BackgroundSyncCoordinator::new(CoordinatorPorts {
            upstream: upstream.clone(),
            downstream,
            network: Arc::new(network),
            session: Arc::new(session),
            status: status.clone(),
            clock: Arc::new(clock),
        });
        Self { coordinator, upstream, status, log, gate, entered }
    }

    /// Waits until `n` runs have ended.
    async fn runs(&self, n: u64) {
        let mut runs = self.coordinator.runs();
        tokio::time::timeout(WAIT, runs.wait_for(|ended| *ended >= n)).await.expect("in time").expect("open");
    }

    /// Waits until the gated upstream has been entered `n` times.
    async fn entered(&mut self, n: u64) {
        tokio::time::timeout(WAIT, self.entered.wait_for(|entered| *entered >= n))
            .await
            .expect("in time")
            .expect("open");
    }

    fn log(&self) -> Vec<&'static str> {
        lock(&self.log).clone()
    }
}

#[tokio::test]
async fn a_run_pushes_then_pulls_and_reports_success() {
    let h = Harness::new(Setup::default());
    let mut states = h.status.watch();
    h.coordinator.trigger("app_start");
    h.runs(1).await;
    assert_eq!(h.log(), ["push", "pull"]);
    let state = states.borrow_and_update().clone();
    assert_eq!(state.phase, SyncPhase::Idle);
    assert_eq!(state.last_successful_sync, Some(NOW));
    assert_eq!(
        (state.failed, state.last_error, state.progress),
        (1, None, None),
        "counts read after the run"
    );
    assert!(h.coordinator.ongoing().is_empty());
}

#[tokio::test]
async fn triggers_with_one_key_coalesce_into_one_run_and_one_follow_up() {
    let mut h = Harness::new(Setup { gated: true, ..Setup::default() });
    h.coordinator.trigger("write");
    h.entered(1).await;
    for _ in 0..5 {
        h.coordinator.trigger("write");
    }
    assert_eq!(h.coordinator.ongoing(), ["write"]);
    h.gate.add_permits(10);
    h.runs(2).await;
    assert_eq!(h.log(), ["push", "pull", "push", "pull"], "one run and one follow-up, not six");
    assert!(h.coordinator.ongoing().is_empty());
}

#[tokio::test]
async fn a_trigger_after_the_run_ended_starts_a_new_one() {
    let h = Harness::new(Setup::default());
    h.coordinator.trigger("write");
    h.runs(1).await;
    h.coordinator.trigger("write");
    h.runs(2).await;
    assert_eq!(h.log().len(), 4);
}

#[tokio::test]
async fn another_key_is_bookkept_apart_while_a_run_is_going() {
    let mut h = Harness::new(Setup { gated: true, ..Setup::default() });
    h.coordinator.trigger("write");
    h.entered(1).await;
    h.coordinator.trigger("periodic");
    h.coordinator.trigger("periodic");
    assert_eq!(
        h.coordinator.ongoing(),
        ["periodic", "write"],
        "both keys held, neither folded into the other"
    );
    h.gate.add_permits(10);
    h.runs(3).await;
    assert_eq!(
        h.log().iter().filter(|e| **e == "push").count(),
        3,
        "write once, periodic once plus its follow-up"
    );
}

#[tokio::test]
async fn force_pulls_every_scope_and_a_forced_trigger_makes_the_follow_up_forced() {
    let mut h = Harness::new(Setup { gated: true, ..Setup::default() });
    h.coordinator.trigger(FORCE_KEY);
    h.entered(1).await;
    h.coordinator.force();
    h.gate.add_permits(10);
    h.runs(2).await;
    assert_eq!(h.log(), ["push", "pull", "push", "pull(force)"]);
}

#[tokio::test]
async fn trigger_if_ready_does_nothing_offline_or_signed_out() {
    let table = [
        ("offline", Setup { online: false, ..Setup::default() }, false, SyncPhase::Offline),
        ("signed out", Setup { signed_in: false, ..Setup::default() }, false, SyncPhase::Idle),
        ("online and signed in", Setup::default(), true, SyncPhase::Idle),
    ];
    for (name, setup, runs, phase) in table {
        let h = Harness::new(setup);
        assert_eq!(h.coordinator.trigger_if_ready("app_start").await, runs, "{name}");
        if runs {
            h.runs(1).await;
            assert_eq!(h.log(), ["push", "pull"], "{name}");
        } else {
            assert!(h.coordinator.ongoing().is_empty(), "{name}");
            assert!(h.log().is_empty(), "{name}");
        }
        assert_eq!(h.status.current().phase, phase, "{name}");
    }
}

fn unreachable() -> SyncError {
    SyncError::Remote(RemoteError::Unreachable { message: "connection refused".into() })
}

fn refused() -> SyncError {
    SyncError::Protocol("the cursor is malformed".into())
}

#[tokio::test]
async fn the_outcome_of_a_run_reaches_the_status() {
    let offline_push =
        PushSummary { paused: Some("server unreachable".into()), unreachable: true, ..Default::default() };
    let failed_scope =
        PullSummary { failed: 1, first_error: Some("project:1: refused".into()), ..Default::default() };
    type Case = (
        &'static str,
        PushSummary,
        Result<PullSummary, fn() -> SyncError>,
        &'static [&'static str],
        SyncPhase,
        Option<&'static str>,
    );
    let table: [Case; 4] = [
        (
            "unreachable on push: no pull is tried",
            offline_push,
            Ok(PullSummary::default()),
            &["push"],
            SyncPhase::Offline,
            Some("server unreachable"),
        ),
        (
            "unreachable on pull",
            PushSummary::default(),
            Err(unreachable),
            &["push", "pull"],
            SyncPhase::Offline,
            Some("server unreachable: connection refused"),
        ),
        (
            "a pull failing as a whole",
            PushSummary::default(),
            Err(refused),
            &["push", "pull"],
            SyncPhase::Error,
            Some("protocol error: the cursor is malformed"),
        ),
        (
            "a scope failing",
            PushSummary::default(),
            Ok(failed_scope),
            &["push", "pull"],
            SyncPhase::Error,
            Some("project:1: refused"),
        ),
    ];
    for (name, push, pull, log, phase, error) in table {
        let h = Harness::new(Setup { push, pull, ..Setup::default() });
        h.coordinator.trigger("write");
        h.runs(1).await;
        assert_eq!(h.log(), log, "{name}");
        let state = h.status.current();
        assert_eq!((state.phase, state.last_error.as_deref()), (phase, error), "{name}");
        assert_eq!(state.last_successful_sync, None, "{name}");
    }
}

#[tokio::test]
async fn sync_now_waits_for_its_run_and_answers_the_state_after_it() {
    let mut h = Harness::new(Setup { gated: true, ..Setup::default() });
    h.coordinator.trigger(FORCE_KEY);
    h.entered(1).await;
    let syncing = {
        let coordinator = h.coordinator.clone();
        tokio::spawn(async move { coordinator.sync_now().await })
    };
    h.gate.add_permits(10);
    let state = tokio::time::timeout(WAIT, syncing).await.expect("in time").expect("joined");
    assert_eq!(h.log(), ["push", "pull", "push", "pull(force)"], "the run going, then the one asked for");
    assert_eq!((state.phase, state.last_successful_sync), (SyncPhase::Idle, Some(NOW)));
    assert_eq!(h.upstream.resumed.load(Ordering::SeqCst), 1, "a person asked: any pause is lifted");
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_run_in_flight_and_drops_follow_ups() {
    let mut h = Harness::new(Setup { gated: true, ..Setup::default() });
    h.coordinator.trigger("write");
    h.entered(1).await;
    h.coordinator.trigger("write");
    h.coordinator.trigger("other");
    let shutdown = {
        let coordinator = h.coordinator.clone();
        tokio::spawn(async move { coordinator.shutdown().await })
    };
    // On the paused clock, a timeout fires only when nothing else can move: the shutdown is
    // held by the run at the gate, not finished.
    let mut shutdown = shutdown;
    assert!(
        tokio::time::timeout(Duration::from_secs(60), &mut shutdown).await.is_err(),
        "waits for the push"
    );
    h.gate.add_permits(10);
    tokio::time::timeout(WAIT, shutdown).await.expect("in time").expect("joined");
    assert_eq!(
        h.log(),
        ["push", "pull"],
        "the run in flight finished; its follow-up and the queued key did not start"
    );
    assert!(h.coordinator.ongoing().is_empty());
    h.coordinator.trigger("write");
    h.coordinator.force();
    assert!(h.coordinator.ongoing().is_empty(), "triggers after shutdown are ignored");
}

#[tokio::test(start_paused = true)]
async fn the_periodic_loop_runs_once_per_interval() {
    let h = Harness::new(Setup::default());
    h.coordinator.spawn_periodic(Duration::from_secs(900));
    tokio::time::advance(Duration::from_secs(899)).await;
    tokio::task::yield_now().await;
    assert_eq!(*h.coordinator.runs().borrow(), 0, "not before the first interval");
    tokio::time::advance(Duration::from_secs(1)).await;
    h.runs(1).await;
    tokio::time::advance(Duration::from_secs(900)).await;
    h.runs(2).await;
    assert_eq!(h.log(), ["push", "pull", "push", "pull"]);
    h.coordinator.shutdown().await;
}

#[tokio::test]
async fn the_server_coming_back_lifts_the_upstream_pause_and_syncs() {
    let h = Harness::new(Setup::default());
    let (online, watched) = watch::channel(false);
    h.coordinator.follow_network(watched);
    online.send_replace(true);
    h.runs(1).await;
    assert_eq!(h.upstream.resumed.load(Ordering::SeqCst), 1);
    assert_eq!(h.log(), ["push", "pull(force)"], "what changed while away is pulled now");
    online.send_replace(false);
    let mut states = h.status.watch();
    tokio::time::timeout(WAIT, states.wait_for(|s| s.phase == SyncPhase::Offline))
        .await
        .expect("in time")
        .expect("open");
    h.coordinator.shutdown().await;
}
