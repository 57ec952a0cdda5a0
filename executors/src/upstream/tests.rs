//! The manager against mocked ports: a mockall remote whose answers each test scripts, a
//! mocked clock the test moves by hand (nothing sleeps), and an in-memory outbox with the
//! SQLite outbox's semantics.

use super::*;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use trackflow_domain::{
    ports::{
        MockBlobCache, MockBlobRemote, MockClock, MockConflictRepository, MockReauthenticator,
        MockRemoteDataSource, MockSessionStorage,
    },
    protocol::{EntityState, MutationResult, PushResponse},
    sync::CoalescePlan,
    Hlc, OperationKind, OperationStatus, Priority, QueuedOperation, SyncEntity, UserId,
};
use trackflow_music::{AudioTrack, Project};

/// The SQLite outbox's behaviour, in memory.
#[derive(Default)]
struct FakeOutbox {
    ops: Mutex<Vec<SyncOperation>>,
    /// `mark_sent` and `settle` calls, in the order they began, with the ids they named.
    calls: Mutex<Vec<(&'static str, Vec<OperationId>)>>,
    /// When set, the first `settle` waits (up to five seconds, else it fails) until the
    /// receiver has counted this many pushes.
    first_settle_waits_for: Mutex<Option<(watch::Receiver<usize>, usize)>>,
    /// Operations the queue lists (first) but that are gone when loaded: they left the outbox
    /// between the two reads.
    vanishing: Mutex<Vec<SyncOperation>>,
}

impl FakeOutbox {
    fn with(ops: Vec<SyncOperation>) -> Arc<Self> {
        Arc::new(Self { ops: Mutex::new(ops), ..Self::default() })
    }

    fn calls(&self) -> Vec<(&'static str, Vec<OperationId>)> {
        self.calls.lock().expect("lock").clone()
    }

    fn snapshot(&self) -> Vec<SyncOperation> {
        self.ops.lock().expect("lock").clone()
    }

    fn find(&self, id: OperationId) -> SyncOperation {
        self.snapshot().into_iter().find(|op| op.id == id).expect("queued")
    }
}

#[async_trait]
impl PendingOperationsRepository for FakeOutbox {
    async fn list(&self, status: Option<OperationStatus>) -> Result<Vec<SyncOperation>, RepositoryError> {
        Ok(self.snapshot().into_iter().filter(|op| status.is_none_or(|s| op.status == s)).collect())
    }

    async fn queue(&self) -> Result<Vec<QueuedOperation>, RepositoryError> {
        let vanishing = self.vanishing.lock().expect("lock").clone();
        Ok(vanishing.iter().chain(&self.snapshot()).map(QueuedOperation::from).collect())
    }

    async fn get(&self, id: OperationId) -> Result<Option<SyncOperation>, RepositoryError> {
        Ok(self.snapshot().into_iter().find(|op| op.id == id))
    }

    async fn counts(&self) -> Result<OutboxCounts, RepositoryError> {
        let ops = self.snapshot();
        let count = |s: OperationStatus| ops.iter().filter(|op| op.status == s).count() as u64;
        Ok(OutboxCounts {
            pending: count(OperationStatus::Pending),
            in_flight: count(OperationStatus::InFlight),
            failed: count(OperationStatus::Failed),
            oldest_pending_at: ops
                .iter()
                .filter(|op| op.status != OperationStatus::Failed)
                .map(|op| op.created_at)
                .min(),
            last_error: ops.iter().rev().find_map(|op| op.last_error.clone()),
        })
    }

    async fn apply_coalescing(&self, plan: CoalescePlan) -> Result<bool, RepositoryError> {
        let mut ops = self.ops.lock().expect("lock");
        for op in &plan.rewrite {
            let slot = ops.iter_mut().find(|o| o.id == op.id).expect("rewritten op queued");
            *slot = op.clone();
        }
        ops.retain(|op| !plan.remove.contains(&op.id));
        Ok(true)
    }

    async fn mark_sent(&self, ids: Vec<OperationId>) -> Result<(), RepositoryError> {
        self.calls.lock().expect("lock").push(("mark_sent", ids.clone()));
        for op in self.ops.lock().expect("lock").iter_mut().filter(|op| ids.contains(&op.id)) {
            op.status = OperationStatus::InFlight;
            op.sent = true;
        }
        Ok(())
    }

    async fn settle(&self, settlements: Vec<(OperationId, Settlement)>) -> Result<(), RepositoryError> {
        self.calls.lock().expect("lock").push(("settle", settlements.iter().map(|(id, _)| *id).collect()));
        let gate = self.first_settle_waits_for.lock().expect("lock").take();
        if let Some((mut pushes, wanted)) = gate {
            tokio::time::timeout(Duration::from_secs(5), pushes.wait_for(|n| *n >= wanted))
                .await
                .map_err(|_| RepositoryError::Conflict(format!("push {wanted} never started")))?
                .map_err(|e| RepositoryError::Conflict(e.to_string()))?;
        }
        let mut ops = self.ops.lock().expect("lock");
        for (id, settlement) in settlements {
            let Some(index) = ops.iter().position(|op| op.id == id) else { continue };
            match settlement {
                Settlement::Applied { .. } | Settlement::Conflict { .. } => {
                    ops.remove(index);
                }
                Settlement::Failed { reason } => {
                    ops[index].status = OperationStatus::Failed;
                    ops[index].last_error = Some(reason);
                }
                Settlement::Retry { attempts, not_before, error } => {
                    let op = &mut ops[index];
                    (op.status, op.attempts, op.next_attempt_at) =
                        (OperationStatus::Pending, attempts, not_before);
                    op.last_error = Some(error);
                }
            }
        }
        Ok(())
    }

    async fn restamp(&self) -> Result<u64, RepositoryError> {
        Ok(0)
    }

    async fn release_in_flight(&self) -> Result<u64, RepositoryError> {
        Ok(0)
    }

    async fn retry_failed(&self, _ids: Option<Vec<OperationId>>) -> Result<u64, RepositoryError> {
        unreachable!("the manager never retries on its own")
    }

    async fn discard_failed(&self, _ids: Vec<OperationId>) -> Result<Vec<OperationId>, RepositoryError> {
        unreachable!("the manager never discards on its own")
    }
}

/// Time the test moves by hand.
#[derive(Clone, Default)]
struct Time(Arc<AtomicI64>);

impl Time {
    const START: i64 = 1_800_000_000_000;

    fn new() -> Self {
        Self(Arc::new(AtomicI64::new(Self::START)))
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }

    fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    fn mock(&self) -> MockClock {
        let time = self.clone();
        let mut clock = MockClock::new();
        clock.expect_now().returning(move || time.now());
        clock
    }
}

/// Every push the remote received, as the ids it carried.
type Requests = Arc<Mutex<Vec<Vec<OperationId>>>>;

/// A remote that records each push and answers with `answer`.
fn remote(
    mut answer: impl FnMut(&PushRequest) -> Result<PushResponse, RemoteError> + Send + 'static,
) -> (MockRemoteDataSource, Requests) {
    let requests: Requests = Arc::default();
    let seen = Arc::clone(&requests);
    let mut remote = MockRemoteDataSource::new();
    remote.expect_push().returning(move |request| {
        seen.lock().expect("lock").push(request.mutations.iter().map(|m| m.id).collect());
        answer(request)
    });
    (remote, requests)
}

/// Applies every mutation.
fn applied(request: &PushRequest) -> Result<PushResponse, RemoteError> {
    answer_each(request, |_| MutationOutcome::Applied { version: 1 })
}

fn answer_each(
    request: &PushRequest,
    outcome: impl Fn(&Mutation) -> MutationOutcome,
) -> Result<PushResponse, RemoteError> {
    Ok(PushResponse {
        results: request.mutations.iter().map(|m| MutationResult { id: m.id, outcome: outcome(m) }).collect(),
    })
}

fn server_error() -> RemoteError {
    RemoteError::Transient { message: "500 Internal Server Error".into(), retry_after_ms: None }
}

struct Setup {
    session: Arc<Mutex<Option<trackflow_domain::ports::Session>>>,
    outbox: Arc<FakeOutbox>,
    remote: MockRemoteDataSource,
    blobs: MockBlobCache,
    blob_remote: MockBlobRemote,
    conflicts: MockConflictRepository,
    reauthenticator: MockReauthenticator,
    time: Time,
    options: UpstreamOptions,
}

impl Setup {
    fn new(ops: Vec<SyncOperation>, remote: MockRemoteDataSource) -> Self {
        Self {
            session: Arc::default(),
            outbox: FakeOutbox::with(ops),
            remote,
            blobs: MockBlobCache::new(),
            blob_remote: MockBlobRemote::new(),
            conflicts: MockConflictRepository::new(),
            reauthenticator: MockReauthenticator::new(),
            time: Time::new(),
            options: UpstreamOptions {
                backoff: Backoff {
                    base: Duration::from_secs(1),
                    cap: Duration::from_secs(60),
                    max_attempts: 3,
                },
                ..UpstreamOptions::default()
            },
        }
    }

    fn manager(self) -> (PendingOperationsManager, Arc<FakeOutbox>, Time) {
        let mut session = MockSessionStorage::new();
        let stored = Arc::clone(&self.session);
        session.expect_load().returning(move || Ok(stored.lock().expect("lock").clone()));
        let ports = UpstreamPorts {
            outbox: self.outbox.clone(),
            conflicts: Arc::new(self.conflicts),
            remote: Arc::new(self.remote),
            blobs: Arc::new(self.blobs),
            blob_remote: Arc::new(self.blob_remote),
            session: Arc::new(session),
            reauthenticator: Arc::new(self.reauthenticator),
            clock: Arc::new(self.time.mock()),
        };
        let manager =
            PendingOperationsManager::new(ports, ExecutorRegistry::default(), NodeId::new(), self.options)
                .with_jitter(|| 0.5);
        (manager, self.outbox, self.time)
    }
}

/// Builds valid operations of a small workload.
struct Ops {
    owner: UserId,
    wall: u64,
}

impl Ops {
    fn new() -> Self {
        Self { owner: UserId::new(), wall: 0 }
    }

    fn op(
        &mut self,
        entity: EntityRef,
        kind: OperationKind,
        fields: Vec<(&str, Value)>,
        deps: Vec<OperationId>,
    ) -> SyncOperation {
        self.wall += 1;
        let hlc = Hlc { wall_ms: self.wall, counter: 0, node: NodeId::from_uuid(uuid::Uuid::nil()) };
        let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        SyncOperation::new(entity, kind, fields, hlc, 0, deps, Timestamp(Time::START))
    }

    fn project(&mut self) -> (Project, SyncOperation) {
        let project = Project::new(self.owner, "Demo", None, Timestamp(1)).expect("valid");
        let create = self.op(project.entity_ref(), OperationKind::Create, vec![], vec![]);
        let create = SyncOperation {
            changed_fields: project
                .fields()
                .into_iter()
                .map(|(k, v)| (k, trackflow_domain::FieldChange { value: v, hlc: create.hlc }))
                .collect(),
            ..create
        };
        (project, create)
    }

    fn rename(&mut self, project: &Project, name: &str) -> SyncOperation {
        self.op(project.entity_ref(), OperationKind::Update, vec![("name", json!(name))], vec![])
    }

    fn track(&mut self, project: &Project, parent: &SyncOperation) -> SyncOperation {
        let track =
            AudioTrack::new(project.id(), self.owner, "Take", 1_000, None, Timestamp(1)).expect("valid");
        let fields = track.fields().into_iter().collect::<Vec<_>>();
        let fields = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.op(track.entity_ref(), OperationKind::Create, fields, vec![parent.id])
    }
}

#[tokio::test]
async fn urgent_first_in_batches_and_children_after_their_parents_acknowledgement() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (p1, create1) = ops.project();
    let (_, create2) = ops.project();
    let track = ops.track(&p1, &create1);
    let (acknowledged, _) = ops.project();
    let mut low = ops.rename(&acknowledged, "Later");
    low.priority = Priority::Low;
    // A low-priority update of an acknowledged project, queued first.
    let queue = vec![low.clone(), create1.clone(), track.clone(), create2.clone()];
    let (remote, requests) = remote(applied);
    let mut setup = Setup::new(queue, remote);
    setup.options.batch_size = 2;
    let (manager, outbox, _) = setup.manager();

    let report = manager.process().await.expect("pass");
    // Batch 1: the two high-priority creates (the track waits for its project). Batch 2: the
    // track, now that its parent is acknowledged, and the low update.
    assert_eq!(
        *requests.lock().expect("lock"),
        vec![vec![create1.id, create2.id], vec![low.id, track.id]],
        "urgent first; within a batch, queue order"
    );
    assert_eq!((report.requests, report.acknowledged), (2, 4));
    assert!(outbox.snapshot().is_empty());
}

/// An operation chosen for a batch may have left the outbox since the queue was read (the user
/// discarded it): the pass forgets it and goes on with the rest.
#[tokio::test]
async fn an_operation_gone_before_it_is_sent_is_forgotten() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, gone) = ops.project();
    let (_, create) = ops.project();
    let (remote, requests) = remote(applied);
    let setup = Setup::new(vec![create.clone()], remote);
    *setup.outbox.vanishing.lock().expect("lock") = vec![gone];
    let (manager, outbox, _) = setup.manager();
    let report = tokio::time::timeout(Duration::from_secs(10), manager.process())
        .await
        .expect("the pass ends")
        .expect("pass");
    assert_eq!(*requests.lock().expect("lock"), vec![vec![create.id]]);
    assert_eq!((report.requests, report.acknowledged), (1, 1));
    assert!(outbox.snapshot().is_empty());
}

/// A pass nobody observes tells the observer registered for passes how far it got, batch by
/// batch: what a status counts pending work down by while the background sends it.
#[tokio::test]
async fn unobserved_passes_report_to_the_registered_observer_batch_by_batch() {
    struct Seen(Mutex<Vec<(u64, u64)>>);
    impl SyncProgressObserver for Seen {
        fn progress(&self, done: u64, total: u64) {
            self.0.lock().expect("lock").push((done, total));
        }
    }
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let queue: Vec<SyncOperation> = (0..5).map(|_| ops.project().1).collect();
    let (remote, _) = remote(applied);
    let mut setup = Setup::new(queue, remote);
    setup.options.batch_size = 2;
    let (manager, _, _) = setup.manager();
    let seen = Arc::new(Seen(Mutex::new(Vec::new())));
    manager.observe_passes(seen.clone());
    manager.process().await.expect("pass");
    assert_eq!(*seen.0.lock().expect("lock"), vec![(2, 5), (4, 5), (5, 5)]);
}

#[tokio::test]
async fn a_batch_is_stored_while_the_next_one_is_out() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, first) = ops.project();
    let (_, second) = ops.project();
    let (pushes, counted) = watch::channel(0_usize);
    let (remote, requests) = remote(move |request| {
        pushes.send_modify(|n| *n += 1);
        applied(request)
    });
    let mut setup = Setup::new(vec![first.clone(), second.clone()], remote);
    setup.options.batch_size = 1;
    // Settling the first batch cannot finish before the second push starts: were the two
    // sequential, the pass would fail.
    *setup.outbox.first_settle_waits_for.lock().expect("lock") = Some((counted, 2));
    let (manager, outbox, _) = setup.manager();

    let report = manager.process().await.expect("pass");
    assert_eq!((report.requests, report.acknowledged), (2, 2));
    assert_eq!(*requests.lock().expect("lock"), vec![vec![first.id], vec![second.id]]);
    // The local transactions never overlap: the second batch is marked sent before the first
    // is settled.
    assert_eq!(
        outbox.calls(),
        vec![
            ("mark_sent", vec![first.id]),
            ("mark_sent", vec![second.id]),
            ("settle", vec![first.id]),
            ("settle", vec![second.id]),
        ]
    );
    assert!(outbox.snapshot().is_empty());
}

#[tokio::test]
async fn a_retry_is_not_sent_again_before_it_is_stored() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, failing) = ops.project();
    let (_, other) = ops.project();
    let failing_id = failing.id;
    let mut failed = false;
    let (remote, requests) = remote(move |request| {
        // The first request carrying it fails; the next is answered.
        if request.mutations[0].id == failing_id && !failed {
            failed = true;
            return Err(server_error());
        }
        applied(request)
    });
    let mut setup = Setup::new(vec![failing.clone(), other.clone()], remote);
    setup.options.batch_size = 1;
    let (manager, outbox, _) = setup.manager();
    // No jitter: the retry is due at once, so only its settlement holds it back.
    let manager = manager.with_jitter(|| 0.0);

    let report = manager.process().await.expect("pass");
    assert_eq!((report.acknowledged, report.retrying), (2, 1));
    assert_eq!(*requests.lock().expect("lock"), vec![vec![failing.id], vec![other.id], vec![failing.id]]);
    assert_eq!(
        outbox.calls(),
        vec![
            ("mark_sent", vec![failing.id]),
            // The failed one is in flight until its retry is stored, so the other goes next.
            ("mark_sent", vec![other.id]),
            ("settle", vec![failing.id]),
            ("mark_sent", vec![failing.id]),
            ("settle", vec![other.id]),
            ("settle", vec![failing.id]),
        ]
    );
    assert!(outbox.snapshot().is_empty());
}

#[tokio::test]
async fn unsent_operations_on_one_entity_coalesce_before_sending() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, create) = ops.project();
    let rename1 = ops.rename(&project, "One");
    let rename2 = ops.rename(&project, "Two");
    let (remote, requests) = remote(|request| {
        assert_eq!(request.mutations.len(), 1, "create + updates went as one create");
        let m = &request.mutations[0];
        assert_eq!((m.kind, &m.fields["name"].value), (OperationKind::Create, &json!("Two")));
        applied(request)
    });
    let (manager, outbox, _) = Setup::new(vec![create.clone(), rename1, rename2], remote).manager();
    manager.process().await.expect("pass");
    assert_eq!(*requests.lock().expect("lock"), vec![vec![create.id]], "the create's id carries the run");
    assert!(outbox.snapshot().is_empty());
}

#[tokio::test]
async fn transient_failures_back_off_on_the_clock_then_park_holding_back_only_dependents() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, create) = ops.project();
    let track = ops.track(&project, &create);
    let (_, unrelated) = ops.project();
    let unrelated_id = unrelated.id;
    // The server fails every push that carries the project's create.
    let (remote, requests) = remote(move |request| {
        if request.mutations.iter().any(|m| m.id == create.id) {
            Err(server_error())
        } else {
            applied(request)
        }
    });
    let mut setup = Setup::new(vec![create.clone(), track.clone()], remote);
    setup.options.batch_size = 1;
    let (manager, outbox, time) = setup.manager();

    // Attempt 1 fails: jitter 0.5 of the 1 s ceiling.
    manager.process().await.expect("pass");
    let op = outbox.find(create.id);
    assert_eq!((op.attempts, op.next_attempt_at), (1, Some(time.now().plus_millis(500))));
    assert!(op.sent && op.status == OperationStatus::Pending);

    // Nothing is due yet: no request, and the pass says when to come back.
    let report = manager.process().await.expect("pass");
    assert_eq!((report.requests, report.next_due), (0, Some(time.now().plus_millis(500))));

    // Attempt 2 after the wait: 0.5 of the 2 s ceiling.
    time.advance(500);
    manager.process().await.expect("pass");
    assert_eq!(outbox.find(create.id).next_attempt_at, Some(time.now().plus_millis(1_000)));

    // Attempt 3 is the limit: parked as failed with the reason.
    outbox.ops.lock().expect("lock").push(unrelated);
    time.advance(1_000);
    let report = manager.process().await.expect("pass");
    let op = outbox.find(create.id);
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.last_error.as_deref(), Some("gave up after 3 attempts: 500 Internal Server Error"));
    assert_eq!(report.failed, 1);
    // The unrelated project went out; the track waits behind its parent.
    assert!(requests.lock().expect("lock").iter().any(|r| r == &vec![unrelated_id]));
    assert_eq!(outbox.find(track.id).status, OperationStatus::Pending);
    assert!(!outbox.find(track.id).sent, "never sent");
    let health = manager.health().await.expect("health");
    assert_eq!((health.status, health.failed, health.pending), (HealthStatus::Degraded, 1, 1));
}

#[tokio::test]
async fn a_resume_sends_what_waits_on_a_backoff_once() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    // The first push is cut (the link went down mid-request), the next two fail on the server,
    // and the last goes through.
    let answers = Arc::new(Mutex::new(vec![
        Ok(()),
        Err(server_error()),
        Err(server_error()),
        Err(RemoteError::Transient { message: "connection closed".into(), retry_after_ms: None }),
    ]));
    let (remote, requests) = remote(move |request| match answers.lock().expect("lock").pop() {
        Some(Err(error)) => Err(error),
        _ => applied(request),
    });
    let (manager, outbox, time) = Setup::new(vec![create.clone()], remote).manager();
    manager.process().await.expect("pass");
    assert_eq!(outbox.find(create.id).next_attempt_at, Some(time.now().plus_millis(500)));
    assert_eq!(manager.process().await.expect("pass").requests, 0, "backing off");

    // A person asks to sync: the backoff is not waited for. The early try fails and does not
    // count; the backoff it had stands.
    manager.resume();
    let report = manager.process().await.expect("pass");
    assert_eq!((report.requests, report.retrying), (1, 1));
    let op = outbox.find(create.id);
    assert_eq!((op.attempts, op.next_attempt_at), (1, Some(time.now().plus_millis(500))));
    // That was once: the next pass waits.
    assert_eq!(manager.process().await.expect("pass").requests, 0, "backing off again");
    // Its backoff over, the next try counts.
    time.advance(500);
    manager.process().await.expect("pass");
    assert_eq!(outbox.find(create.id).attempts, 2, "a try at its time counts");
    assert_eq!(requests.lock().expect("lock").len(), 3);

    manager.resume();
    manager.process().await.expect("pass");
    assert!(outbox.snapshot().is_empty(), "sent at the second resume");
}

#[tokio::test]
async fn the_servers_retry_after_is_honoured() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let (remote, _) = remote(|_| {
        Err(RemoteError::Transient { message: "502 Bad Gateway".into(), retry_after_ms: Some(30_000) })
    });
    let (manager, outbox, time) = Setup::new(vec![create.clone()], remote).manager();
    manager.process().await.expect("pass");
    let op = outbox.find(create.id);
    assert_eq!((op.attempts, op.next_attempt_at), (1, Some(time.now().plus_millis(30_000))));
}

#[tokio::test]
async fn being_offline_uses_no_attempts_and_waits_for_the_probe_or_a_resume() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let online = Arc::new(AtomicBool::new(false));
    let reachable = Arc::clone(&online);
    let (remote, requests) = remote(move |request| {
        if reachable.load(Ordering::SeqCst) {
            applied(request)
        } else {
            Err(RemoteError::Unreachable { message: "cannot connect: connection refused".into() })
        }
    });
    let (manager, outbox, time) = Setup::new(vec![create.clone()], remote).manager();

    let report = manager.process().await.expect("pass");
    // The first probe is due after 0.5 of the 1 s offline ceiling.
    assert_eq!(report.next_due, Some(time.now().plus_millis(500)));
    let op = outbox.find(create.id);
    assert_eq!((op.attempts, op.status, op.next_attempt_at), (0, OperationStatus::Pending, None));
    // Many passes while offline: still one request, and no attempt used.
    for _ in 0..5 {
        manager.process().await.expect("pass");
    }
    assert_eq!(requests.lock().expect("lock").len(), 1);
    time.advance(500);
    manager.process().await.expect("pass");
    // The second probe backs off further: 0.5 of 2 s.
    assert_eq!(requests.lock().expect("lock").len(), 2);
    assert_eq!(outbox.find(create.id).attempts, 0);
    assert_eq!(manager.health().await.expect("health").status, HealthStatus::Degraded);

    // The network is back: resume() sends at once, without waiting for the probe.
    online.store(true, Ordering::SeqCst);
    manager.resume();
    manager.process().await.expect("pass");
    assert!(outbox.snapshot().is_empty());
    assert_eq!(manager.health().await.expect("health").status, HealthStatus::Healthy);
}

#[tokio::test]
async fn a_refused_token_is_renewed_and_the_batch_sent_again() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let mut first = true;
    let (remote, requests) = remote(move |request| {
        if std::mem::take(&mut first) {
            Err(RemoteError::Unauthorized("token expired".into()))
        } else {
            applied(request)
        }
    });
    let mut setup = Setup::new(vec![create.clone()], remote);
    setup.reauthenticator.expect_renew().times(1).returning(|_| Ok(true));
    let (manager, outbox, _) = setup.manager();
    let report = manager.process().await.expect("pass");
    assert_eq!(requests.lock().expect("lock").len(), 2);
    assert_eq!(report.acknowledged, 1);
    assert!(outbox.snapshot().is_empty());
}

#[tokio::test]
async fn without_a_new_token_upstream_waits_for_sign_in_and_keeps_everything() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let (remote, requests) = remote(|_| Err(RemoteError::Unauthorized("token expired".into())));
    let mut setup = Setup::new(vec![create.clone()], remote);
    setup.reauthenticator.expect_renew().returning(|_| Ok(false));
    let (manager, outbox, _) = setup.manager();
    manager.process().await.expect("pass");
    manager.process().await.expect("pass");
    assert_eq!(requests.lock().expect("lock").len(), 1, "paused until sign-in");
    let op = outbox.find(create.id);
    assert_eq!((op.status, op.attempts), (OperationStatus::Pending, 0));
    let health = manager.health().await.expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(health.last_error.as_deref().is_some_and(|e| e.starts_with("sign-in required")), "{health:?}");
}

#[tokio::test]
async fn a_sign_in_pause_lifts_when_the_stored_token_changes() {
    trackflow_music::install().expect("the music registry installs");
    use trackflow_domain::ports::{AccessToken, Session};
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let (remote, requests) = remote(|request| {
        if request.mutations.is_empty() {
            unreachable!()
        }
        Err(RemoteError::Unauthorized("token revoked".into()))
    });
    let mut setup = Setup::new(vec![create.clone()], remote);
    setup.reauthenticator.expect_renew().returning(|_| Ok(false));
    let signed_in = |token: &str| Session {
        user_id: UserId::new(),
        server_url: Some("http://server".into()),
        access_token: Some(AccessToken::new(token)),
    };
    *setup.session.lock().expect("lock") = Some(signed_in("old"));
    let session = Arc::clone(&setup.session);
    let (manager, _, _) = setup.manager();
    manager.process().await.expect("pass");
    manager.process().await.expect("pass");
    assert_eq!(requests.lock().expect("lock").len(), 1, "paused on the refused token");
    // The user signs in again, here or in another process: the next pass sends, no resume().
    *session.lock().expect("lock") = Some(signed_in("new"));
    manager.process().await.expect("pass");
    assert_eq!(requests.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn conflicts_are_recorded_and_duplicates_count_as_success() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, create) = ops.project();
    let rename = ops.rename(&project, "Mine");
    let (create_id, rename_id) = (create.id, rename.id);
    let server_row = EntityState {
        entity_type: Project::ENTITY_TYPE,
        entity_id: project.entity_ref().id,
        version: 9,
        deleted: false,
        fields: [("name".to_owned(), json!("Theirs"))].into(),
        field_hlc: Default::default(),
        deleted_with: None,
    };
    let row = server_row.clone();
    let (remote, _) = remote(move |request| {
        answer_each(request, |m| {
            if m.id == create_id {
                MutationOutcome::Duplicate {
                    version: 3,
                    first: Box::new(MutationOutcome::Applied { version: 3 }),
                }
            } else {
                MutationOutcome::Conflict { server: row.clone(), lost_fields: vec!["name".into()] }
            }
        })
    });
    // The create was sent before (a lost response), so the rename does not merge into it.
    let mut create = create;
    create.sent = true;
    let mut setup = Setup::new(vec![create, rename], remote);
    setup
        .conflicts
        .expect_record()
        .withf(move |c| {
            c.id == ConflictId::from_uuid(rename_id.as_uuid())
                && c.fields == ["name"]
                && c.local["name"] == json!("Mine")
                && c.remote["name"] == json!("Theirs")
        })
        .times(1)
        .returning(|_| Ok(()));
    let (manager, outbox, _) = setup.manager();
    let report = manager.process().await.expect("pass");
    assert_eq!(report.acknowledged, 2);
    assert!(outbox.snapshot().is_empty());
}

#[tokio::test]
async fn a_request_too_large_is_halved_until_it_fits() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let queue: Vec<SyncOperation> = (0..5).map(|_| ops.project().1).collect();
    let ids: Vec<OperationId> = queue.iter().map(|op| op.id).collect();
    // The server takes at most two mutations in a body.
    let (remote, requests) = remote(|request| {
        if request.mutations.len() > 2 {
            Err(RemoteError::Permanent {
                code: "body_too_large".into(),
                message: "the body is larger than 100 bytes".into(),
                mutation_id: None,
            })
        } else {
            applied(request)
        }
    });
    let (manager, outbox, _) = Setup::new(queue, remote).manager();
    let report = manager.process().await.expect("pass");
    assert_eq!((report.acknowledged, report.failed), (5, 0));
    assert!(outbox.snapshot().is_empty());
    // 5 refused, halved into 2 and 3; the 3 refused and halved into 1 and 2: in order.
    let requests = requests.lock().expect("lock").clone();
    let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 2, 3, 1, 2]);
    let accepted: Vec<OperationId> = requests.into_iter().filter(|r| r.len() <= 2).flatten().collect();
    assert_eq!(accepted, ids, "every operation once, in queue order");
}

#[tokio::test]
async fn a_batch_refused_for_one_mutation_parks_it_and_sends_the_rest_again() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, mut before) = ops.project();
    before.sent = true; // sent before: stays apart from the rename below
    let mut queue: Vec<SyncOperation> = (0..6).map(|_| ops.project().1).collect();
    queue[2].sent = true; // sent before, so the rename behind it does not merge into it
    let poison = queue[2].id;
    let behind_poison = {
        // The poison's own entity has a later operation in the batch: it must not overtake.
        let poisoned = Project::restore(
            trackflow_music::ProjectId::from_uuid(queue[2].entity.id),
            ops.owner,
            "Demo",
            None,
            Timestamp(1),
        )
        .expect("valid");
        let mut rename = ops.rename(&poisoned, "After");
        rename.depends_on = vec![];
        rename
    };
    let rename = ops.rename(&project, "Renamed");
    let mut all = vec![before.clone()];
    all.extend(queue.clone());
    all.push(behind_poison.clone());
    all.push(rename.clone());
    let (remote, requests) = remote(move |request| {
        if request.mutations.iter().any(|m| m.id == poison) {
            Err(RemoteError::Permanent {
                code: "invalid_field".into(),
                message: "bad value".into(),
                mutation_id: Some(poison),
            })
        } else {
            applied(request)
        }
    });
    let (manager, outbox, _) = Setup::new(all, remote).manager();
    let report = manager.process().await.expect("pass");
    assert_eq!((report.acknowledged, report.failed), (7, 1), "{report:?}");
    let sizes: Vec<usize> = requests.lock().expect("lock").iter().map(Vec::len).collect();
    assert_eq!(sizes, [9, 7], "the rest again, without the poison and what is behind it on its entity");
    let left = outbox.snapshot();
    let parked: Vec<_> = left.iter().map(|op| (op.id, op.status, op.last_error.clone())).collect();
    assert_eq!(
        parked,
        vec![
            (poison, OperationStatus::Failed, Some("invalid_field: bad value".to_owned())),
            (behind_poison.id, OperationStatus::Pending, Some("held behind an earlier operation".to_owned())),
        ]
    );
}

#[tokio::test]
async fn a_request_refused_without_naming_a_mutation_pauses_and_fails_nothing() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let queue: Vec<SyncOperation> = (0..4).map(|_| ops.project().1).collect();
    let (remote, requests) = remote(|_| {
        Err(RemoteError::Permanent {
            code: "http_404".into(),
            message: "404 Not Found".into(),
            mutation_id: None,
        })
    });
    let (manager, outbox, time) = Setup::new(queue, remote).manager();
    let report = manager.process().await.expect("pass");
    assert_eq!((report.requests, report.failed, report.next_due), (1, 0, Some(time.now().plus_millis(500))));
    assert!(outbox.snapshot().iter().all(|op| op.status == OperationStatus::Pending && op.attempts == 0));
    let health = manager.health().await.expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(health.last_error.as_deref().is_some_and(|e| e.contains("404")), "{health:?}");
    manager.process().await.expect("pass");
    assert_eq!(requests.lock().expect("lock").len(), 1, "waits for the probe");
}

#[tokio::test]
async fn a_server_with_an_older_schema_is_waited_for_and_nothing_is_failed() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let upgraded = Arc::new(AtomicBool::new(false));
    let server = Arc::clone(&upgraded);
    // A batch of one refused as a request would be that operation's fault, but not this one.
    let (remote, requests) = remote(move |request| {
        if server.load(Ordering::SeqCst) {
            return applied(request);
        }
        Err(RemoteError::Permanent {
            code: NOT_IN_SCHEMA.into(),
            message: "mutations[0]: this server's schema does not declare the field 'tempo' of 'project'"
                .into(),
            mutation_id: None,
        })
    });
    let (manager, outbox, time) = Setup::new(vec![create.clone()], remote).manager();
    let report = manager.process().await.expect("pass");
    assert_eq!((report.requests, report.failed), (1, 0));
    let op = outbox.find(create.id);
    assert_eq!((op.status, op.attempts), (OperationStatus::Pending, 0), "queued as it was");
    let health = manager.health().await.expect("health");
    assert_eq!(health.status, HealthStatus::Unhealthy, "a person must upgrade the server");
    let error = health.last_error.unwrap_or_default();
    assert!(error.starts_with("the server must be upgraded: not_in_schema"), "{error}");

    // Once the server is upgraded, the next try sends it.
    upgraded.store(true, Ordering::SeqCst);
    let due = report.next_due.expect("a try is due");
    time.advance(due.as_millis() - time.now().as_millis());
    manager.process().await.expect("pass");
    assert_eq!(requests.lock().expect("lock").len(), 2);
    assert!(outbox.snapshot().is_empty(), "acknowledged");
}

#[tokio::test]
async fn a_busy_server_is_waited_for_without_using_attempts() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let (remote, _) = remote(|_| {
        Err(RemoteError::Busy { message: "429 Too Many Requests".into(), retry_after_ms: Some(30_000) })
    });
    let (manager, outbox, time) = Setup::new(vec![create.clone()], remote).manager();
    let report = manager.process().await.expect("pass");
    assert_eq!(report.next_due, Some(time.now().plus_millis(30_000)), "the server's Retry-After");
    assert_eq!(outbox.find(create.id).attempts, 0);
}

#[tokio::test]
async fn an_operation_no_executor_accepts_is_parked_without_being_sent() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, create) = ops.project();
    let bad = ops.op(project.entity_ref(), OperationKind::Update, vec![("colour", json!("red"))], vec![]);
    let mut create = create;
    create.sent = true;
    let (remote, requests) = remote(applied);
    let (manager, outbox, _) = Setup::new(vec![create.clone(), bad.clone()], remote).manager();
    manager.process().await.expect("pass");
    assert_eq!(*requests.lock().expect("lock"), vec![vec![create.id]]);
    let parked = outbox.find(bad.id);
    assert_eq!(parked.status, OperationStatus::Failed);
    assert!(parked.last_error.as_deref().is_some_and(|e| e.contains("colour")), "{parked:?}");
    assert!(!parked.sent);
}

#[test]
fn health_is_judged_from_counts_pauses_and_age() {
    trackflow_music::install().expect("the music registry installs");
    let now = Timestamp(Time::START);
    let stale = Duration::from_secs(600);
    let counts = |pending, failed, age_ms: Option<i64>, error: Option<&str>| OutboxCounts {
        pending,
        in_flight: 0,
        failed,
        oldest_pending_at: age_ms.map(|a| now.plus_millis(-a)),
        last_error: error.map(str::to_owned),
    };
    let sign_in = Pause::SignIn { error: "sign-in required".into(), refused: None };
    let offline =
        Pause::Wait { until: now, streak: 1, error: "unreachable".into(), cause: WaitCause::Unreachable };
    let refused = Pause::Wait { until: now, streak: 1, error: "404".into(), cause: WaitCause::Refused };
    // (case, counts, pause, expected)
    let cases = [
        ("empty", counts(0, 0, None, None), None, HealthStatus::Healthy),
        ("moving queue", counts(10, 0, Some(50), None), None, HealthStatus::Healthy),
        ("retrying", counts(10, 0, Some(50), Some("500")), None, HealthStatus::Degraded),
        ("failed ops", counts(0, 2, None, Some("forbidden")), None, HealthStatus::Degraded),
        ("offline", counts(3, 0, Some(50), None), Some(&offline), HealthStatus::Degraded),
        ("stuck with errors", counts(3, 0, Some(700_000), Some("500")), None, HealthStatus::Unhealthy),
        ("old but moving", counts(3, 0, Some(700_000), None), None, HealthStatus::Healthy),
        ("sign-in needed", counts(1, 0, Some(5), None), Some(&sign_in), HealthStatus::Unhealthy),
        ("requests refused", counts(1, 0, Some(5), None), Some(&refused), HealthStatus::Unhealthy),
    ];
    for (case, counts, pause, expected) in cases {
        assert_eq!(assess(&counts, pause, now, stale).status, expected, "{case}");
    }
    let report = assess(&counts(3, 1, Some(1_500), None), Some(&offline), now, stale);
    assert_eq!(
        (report.pending, report.failed, report.oldest_pending_age_ms, report.last_error.as_deref()),
        (3, 1, Some(1_500), Some("unreachable"))
    );
}

/// Time that follows tokio's (paused, auto-advancing) clock, for the run loop.
fn tokio_clock() -> MockClock {
    let start = tokio::time::Instant::now();
    let mut clock = MockClock::new();
    clock.expect_now().returning(move || {
        Timestamp(Time::START + i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX))
    });
    clock
}

/// Waits (in tokio time) until the outbox is empty, pass by pass.
async fn until_drained(manager: &PendingOperationsManager, outbox: &FakeOutbox) {
    let mut passes = manager.passes();
    tokio::time::timeout(Duration::from_secs(3_600), async {
        while !outbox.snapshot().is_empty() {
            passes.changed().await.expect("manager running");
        }
    })
    .await
    .expect("drained within the hour");
}

#[tokio::test(start_paused = true)]
async fn the_processor_retries_when_the_backoff_expires_without_a_new_write() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (_, create) = ops.project();
    let sent_at: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let times = Arc::clone(&sent_at);
    let (remote, _) = remote(move |request| {
        let mut times = times.lock().expect("lock");
        times.push(tokio::time::Instant::now());
        if times.len() == 1 {
            Err(server_error())
        } else {
            applied(request)
        }
    });
    let mut setup = Setup::new(vec![create], remote);
    setup.options.idle_poll = Duration::from_secs(3_600);
    let outbox = setup.outbox.clone();
    let (manager, _, _) = setup.manager();
    let manager = Arc::new(manager.with_clock(Arc::new(tokio_clock())));
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn({
        let manager = Arc::clone(&manager);
        async move { manager.run(stopped).await }
    });

    until_drained(&manager, &outbox).await;
    let times = sent_at.lock().expect("lock").clone();
    assert_eq!(times.len(), 2);
    // The retry came when the backoff (0.5 of 1 s) expired, not at the hour-long idle poll.
    assert_eq!(times[1] - times[0], Duration::from_millis(500));
    stop.send(true).expect("stop");
    runner.await.expect("runner");
}

#[tokio::test(start_paused = true)]
async fn a_wake_runs_a_pass_at_once() {
    trackflow_music::install().expect("the music registry installs");
    let (remote, requests) = remote(applied);
    let mut setup = Setup::new(vec![], remote);
    setup.options.idle_poll = Duration::from_secs(3_600);
    let outbox = setup.outbox.clone();
    let (manager, _, _) = setup.manager();
    let manager = Arc::new(manager);
    let mut passes = manager.passes();
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn({
        let manager = Arc::clone(&manager);
        async move { manager.run(stopped).await }
    });
    passes.changed().await.expect("first pass");

    let start = tokio::time::Instant::now();
    outbox.ops.lock().expect("lock").push(Ops::new().project().1);
    manager.wake();
    until_drained(&manager, &outbox).await;
    assert_eq!(requests.lock().expect("lock").len(), 1);
    assert!(start.elapsed() < Duration::from_secs(1), "woken, not polled: {:?}", start.elapsed());
    stop.send(true).expect("stop");
    runner.await.expect("runner");
}

/// A track naming audio, created after its upload: (upload, create).
fn track_with_audio(
    ops: &mut Ops,
    project: &Project,
    parent: &SyncOperation,
    hash: &str,
) -> (SyncOperation, SyncOperation) {
    let track =
        AudioTrack::new(project.id(), ops.owner, "Take", 1_000, Some(hash), Timestamp(1)).expect("valid");
    let upload =
        ops.op(track.entity_ref(), OperationKind::Upload, vec![("audio_sha256", json!(hash))], vec![]);
    let fields = track.fields().into_iter().collect::<Vec<_>>();
    let fields = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let create = ops.op(track.entity_ref(), OperationKind::Create, fields, vec![parent.id, upload.id]);
    (upload, create)
}

#[tokio::test]
async fn audio_goes_up_before_its_track_and_a_cut_upload_resumes_from_what_the_server_kept() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, create_project) = ops.project();
    let hash = "ab".repeat(32);
    let (upload, create_track) = track_with_audio(&mut ops, &project, &create_project, &hash);
    let (remote, requests) = remote(applied);
    let mut setup = Setup::new(vec![create_project.clone(), upload.clone(), create_track.clone()], remote);
    setup.blobs.expect_open().returning(|_| Ok(Some(std::path::PathBuf::from("/cache/ab"))));
    setup.blobs.expect_mark_uploaded().times(1).returning(|_| Ok(()));
    // Nothing kept at first; after the cut the server keeps 1,000 bytes.
    let cut = Arc::new(AtomicBool::new(true));
    let kept = Arc::clone(&cut);
    setup
        .blob_remote
        .expect_upload_offset()
        .returning(move |_| Ok(Some(if kept.load(Ordering::SeqCst) { 0 } else { 1_000 })));
    let first_cut = Arc::clone(&cut);
    setup.blob_remote.expect_upload_blob().times(2).returning(move |_, file, offset| {
        assert_eq!(file, std::path::PathBuf::from("/cache/ab"), "uploads read the cached file");
        let first = first_cut.swap(false, Ordering::SeqCst);
        assert_eq!(offset, if first { 0 } else { 1_000 }, "the second attempt resumes");
        if first {
            Err(RemoteError::Transient { message: "connection cut mid-upload".into(), retry_after_ms: None })
        } else {
            Ok(())
        }
    });
    let (manager, outbox, time) = setup.manager();

    let report = manager.process().await.expect("pass");
    assert_eq!(
        *requests.lock().expect("lock"),
        vec![vec![create_project.id]],
        "the track waits for its audio"
    );
    assert_eq!(report.retrying, 1, "{report:?}");
    let waiting = outbox.find(upload.id);
    assert_eq!((waiting.status, waiting.attempts), (OperationStatus::Pending, 1));
    assert!(outbox.snapshot().iter().any(|op| op.id == create_track.id));

    time.advance(60_000);
    let report = manager.process().await.expect("pass");
    assert_eq!(
        *requests.lock().expect("lock"),
        vec![vec![create_project.id], vec![create_track.id]],
        "once the audio is up, the track goes"
    );
    assert_eq!(report.acknowledged, 2, "{report:?}");
    assert!(outbox.snapshot().is_empty());
}

#[tokio::test]
async fn audio_the_server_holds_is_not_sent_again_and_a_refused_upload_holds_its_track() {
    trackflow_music::install().expect("the music registry installs");
    let mut ops = Ops::new();
    let (project, create_project) = ops.project();
    let (held, create_held) = track_with_audio(&mut ops, &project, &create_project, &"ab".repeat(32));
    let (refused, create_refused) = track_with_audio(&mut ops, &project, &create_project, &"cd".repeat(32));
    let queue = vec![
        create_project.clone(),
        held.clone(),
        create_held.clone(),
        refused.clone(),
        create_refused.clone(),
    ];
    let (remote, requests) = remote(applied);
    let mut setup = Setup::new(queue, remote);
    setup.blobs.expect_open().returning(|hash| Ok(Some(std::path::PathBuf::from(format!("/cache/{hash}")))));
    setup.blobs.expect_mark_uploaded().times(1).returning(|_| Ok(()));
    setup
        .blob_remote
        .expect_upload_offset()
        .returning(|hash| Ok(if hash.as_str().starts_with("ab") { None } else { Some(0) }));
    setup.blob_remote.expect_upload_blob().times(1).returning(|_, _, _| {
        Err(RemoteError::Permanent {
            code: "blob_too_large".into(),
            message: "the blob is larger than 268435456 bytes".into(),
            mutation_id: None,
        })
    });
    let (manager, outbox, _) = setup.manager();

    let report = manager.process().await.expect("pass");
    assert_eq!(
        *requests.lock().expect("lock"),
        vec![vec![create_project.id], vec![create_held.id]],
        "the held audio is not uploaded again; its track goes"
    );
    assert_eq!((report.acknowledged, report.failed), (3, 1), "{report:?}");
    let parked = outbox.find(refused.id);
    assert_eq!(parked.status, OperationStatus::Failed);
    assert!(parked.last_error.as_deref().is_some_and(|e| e.contains("blob_too_large")), "{parked:?}");
    assert_eq!(outbox.find(create_refused.id).status, OperationStatus::Pending, "its track waits, unsent");
}
