//! Upstream drain: a client's outbox of `--drain-ops` operations (default 10,000) sent to a
//! loopback server by the real `PendingOperationsManager`, once per `--drain-batch-sizes` entry
//! in the same process: by default one operation per request (the original design, the
//! baseline) and the manager's default batch of 500.
//!
//! Every drain gets a fresh server over a fresh SQLite file and a fresh client store, both in the
//! benchmark directory. The operations (a profile, [`PROJECTS`] projects, tracks in them) are
//! queued through the app's repositories (the shaku module of `trackflow`) before the clock
//! starts; the timed part is `process()` until a pass finds nothing to send. A drain that loses,
//! fails or retries an operation, or that leaves the server with anything but exactly one applied
//! mutation per operation, fails the benchmark.

use super::{summarize, BenchArgs, Measurement, Report, SERVER_CONNECTIONS};
use anyhow::{bail, ensure, Context};
use async_trait::async_trait;
use shaku::HasComponent;
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use trackflow_client::wiring::client_module;
use trackflow_client::wiring::repository;
use trackflow_domain::{
    ports::{
        AccessToken, Clock, PendingOperationsRepository, RemoteDataSource, RemoteError, Session,
        SessionStorage,
    },
    protocol::{PullRequest, PullResponse, PushRequest, PushResponse, ScopesResponse},
    UserId,
};
use trackflow_executors::{
    ExecutorRegistry, PassReport, PendingOperationsManager, UpstreamOptions, UpstreamPorts,
};
use trackflow_music::{AudioTrack, Project, UserProfile};
use trackflow_remote::{HttpRemote, RemoteOptions};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::DieselServerStore;
use trackflow_store::{LocalStore, LocalStoreOptions, SystemClock};

/// Projects in the workload; every other operation (but the profile) is a track in one of them.
const PROJECTS: usize = 9;
/// More passes than this means the drain is not converging.
const MAX_PASSES: usize = 100;

/// One drain: its wall-clock time and the latency of every push request it made.
struct Drain {
    elapsed: Duration,
    requests: Vec<Duration>,
}

/// The app's HTTP remote, timing every push: a push is the whole round trip (session read,
/// JSON, HTTP, the server's handler and its transaction).
struct TimedRemote {
    inner: Arc<dyn RemoteDataSource>,
    pushes: Mutex<Vec<Duration>>,
}

impl TimedRemote {
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.pushes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl RemoteDataSource for TimedRemote {
    async fn push(&self, request: &PushRequest) -> Result<PushResponse, RemoteError> {
        let started = Instant::now();
        let result = self.inner.push(request).await;
        let took = started.elapsed();
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).push(took);
        result
    }

    async fn pull(&self, request: PullRequest) -> Result<PullResponse, RemoteError> {
        self.inner.pull(request).await
    }

    async fn scopes(&self) -> Result<ScopesResponse, RemoteError> {
        self.inner.scopes().await
    }
}

/// Signs up `user` over HTTP; returns the token.
pub(super) async fn sign_up(url: &str, user: UserId) -> anyhow::Result<String> {
    let email = format!("drain-{}@example.com", uuid::Uuid::now_v7().simple());
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": "benchmark password", "user_id": user}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("sign-up failed: {}", response.text().await?);
    }
    let body: serde_json::Value = response.json().await?;
    Ok(body["token"].as_str().context("sign-up answered no token")?.to_owned())
}

/// Queues `ops` operations through the repositories: the user's profile, [`PROJECTS`] projects,
/// and the rest as tracks, each project followed by its share of them.
async fn queue(
    module: &trackflow_client::wiring::ClientModule,
    user: UserId,
    ops: usize,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = module.resolve();
    let profiles = repository::<UserProfile>(module);
    let projects = repository::<Project>(module);
    let tracks = repository::<AudioTrack>(module);
    profiles.create(UserProfile::new(user, "Bench", "bench@example.com", clock.now())?).await?;
    let n_projects = PROJECTS.min(ops - 1);
    let n_tracks = ops - 1 - n_projects;
    for p in 0..n_projects {
        let project =
            projects.create(Project::new(user, &format!("Project {p}"), None, clock.now())?).await?;
        // Tracks spread evenly; the first projects take the remainder.
        let share = n_tracks / n_projects + usize::from(p < n_tracks % n_projects);
        for t in 0..share {
            let track =
                AudioTrack::new(project.id(), user, &format!("Take {t}"), 180_000, None, clock.now())?;
            tracks.create(track).await?;
        }
    }
    Ok(())
}

/// Queues `ops` operations for a fresh server in `dir`, then drains them with `batch_size`.
async fn drain(dir: &Path, ops: usize, batch_size: usize) -> anyhow::Result<Drain> {
    std::fs::create_dir_all(dir)?;
    let server_db = dir.join("server.db");
    let url = server_db.to_string_lossy().into_owned();
    let server_store = Arc::new(
        tokio::task::spawn_blocking(move || DieselServerStore::open(&url, SERVER_CONNECTIONS)).await??,
    );
    let state = AppState::new(server_store.clone(), ServerConfig::default());
    let server = RunningServer::start("127.0.0.1:0".parse()?, state).await?;
    let user = UserId::new();
    let token = sign_up(&server.url(), user).await?;

    let store =
        LocalStore::open(LocalStoreOptions::new(dir.join("client.db")), Arc::new(SystemClock)).await?;
    let module = client_module(&store)?;
    let session: Arc<dyn SessionStorage> = module.resolve();
    session
        .save(Session {
            user_id: user,
            server_url: Some(server.url()),
            access_token: Some(AccessToken::new(token)),
        })
        .await?;
    queue(&module, user, ops).await.context("queueing the operations")?;
    let outbox: Arc<dyn PendingOperationsRepository> = module.resolve();
    let before = outbox.counts().await?;
    ensure!(before.pending == ops as u64, "queued {} operations, expected {ops}", before.pending);

    let remote = Arc::new(TimedRemote { inner: module.resolve(), pushes: Mutex::new(Vec::new()) });
    let ports = UpstreamPorts {
        outbox: outbox.clone(),
        conflicts: module.resolve(),
        remote: remote.clone(),
        blobs: module.resolve(),
        blob_remote: Arc::new(HttpRemote::new(session.clone(), &RemoteOptions::default())?),
        session,
        reauthenticator: module.resolve(),
        clock: module.resolve(),
    };
    let options = UpstreamOptions { batch_size, ..UpstreamOptions::default() };
    let manager =
        PendingOperationsManager::new(ports, ExecutorRegistry::default(), store.replica_id(), options);

    let started = Instant::now();
    let mut total = PassReport::default();
    for pass in 0.. {
        ensure!(pass < MAX_PASSES, "the drain did not converge after {MAX_PASSES} passes: {total:?}");
        let report = manager.process().await.with_context(|| format!("batch {batch_size}: a pass"))?;
        ensure!(
            report.failed == 0 && report.retrying == 0,
            "batch {batch_size}: a pass failed work: {report:?}"
        );
        total.requests += report.requests;
        total.acknowledged += report.acknowledged;
        if report.requests == 0 {
            break;
        }
    }
    let elapsed = started.elapsed();

    let after = outbox.counts().await?;
    ensure!(
        (after.pending, after.in_flight, after.failed) == (0, 0, 0) && total.acknowledged == ops as u64,
        "batch {batch_size}: the outbox was not drained: {after:?} after {total:?}"
    );
    let requests = remote.take();
    ensure!(requests.len() as u64 == total.requests, "{} pushes timed, {total:?}", requests.len());
    let ops = ops as i64;
    let counts = server_store.applied_counts().await.context("counting the server's applied mutations")?;
    let applied = (counts.records, counts.distinct_ids, counts.versions);
    server.shutdown().await?;
    ensure!(
        applied == (ops, ops, ops),
        "batch {batch_size}: the server holds (records, distinct ids, versions) = {applied:?}, expected {ops} each"
    );
    Ok(Drain { elapsed, requests })
}

/// The scenario: `--drain-rounds` rounds (default 3), each one drain per `--drain-batch-sizes`
/// (default 1, then the manager's default of 500), in an order that rotates every round. The
/// first batch size is the baseline of the ratios.
pub(super) async fn drain_upstream(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let ops = args.drain_ops;
    ensure!(ops >= 2, "--drain-ops must be at least 2 (a profile and a project)");
    let modes = &args.drain_batch_sizes;
    ensure!(!modes.is_empty() && !modes.contains(&0), "--drain-batch-sizes must be positive");
    let rounds = args.drain_rounds.max(1);
    let rate = |d: &Drain| ops as f64 / d.elapsed.as_secs_f64();
    let mut runs: Vec<Vec<Drain>> = modes.iter().map(|_| Vec::new()).collect();
    let mut measurements = Vec::new();
    for round in 0..rounds {
        let mut this_round = Vec::new();
        for k in (0..modes.len()).map(|i| (i + round) % modes.len()) {
            let batch = modes[k];
            let run = drain(&dir.join(format!("drain-{round}-batch-{batch}")), ops, batch).await?;
            let mut m = summarize(&format!("round {}: batch {batch}", round + 1), run.requests.clone());
            m.per_second = rate(&run);
            runs[k].push(run);
            this_round.push((k, m));
        }
        // Ratios within the round: ops/s over the baseline's ops/s.
        let base = rate(&runs[0][round]);
        for (_, m) in &mut this_round {
            m.ratio_p50 = m.per_second / base;
        }
        this_round.sort_by_key(|(k, _)| *k);
        measurements.extend(this_round.into_iter().map(|(_, m)| m));
    }

    let median_rate = |drains: &[Drain]| {
        let mut rates: Vec<f64> = drains.iter().map(rate).collect();
        rates.sort_by(f64::total_cmp);
        let mid = rates.len() / 2;
        if rates.len() % 2 == 0 {
            (rates[mid - 1] + rates[mid]) / 2.0
        } else {
            rates[mid]
        }
    };
    // What the drain would reach if nothing but its push requests took time: the bound the
    // client's own work (outbox reads and writes, scheduling) leaves room for.
    let push_rate = |drains: &[Drain]| {
        let in_pushes: Duration = drains.iter().flat_map(|d| d.requests.iter()).sum();
        (ops * drains.len()) as f64 / in_pushes.as_secs_f64()
    };
    let (base_rate, base_push_rate) = (median_rate(&runs[0]), push_rate(&runs[0]));
    for (batch, drains) in modes.iter().zip(&runs) {
        let requests: Vec<Duration> = drains.iter().flat_map(|d| d.requests.iter().copied()).collect();
        let mut m = summarize(&format!("batch {batch}, median of {rounds} [ops/s ratio]"), requests);
        m.per_second = median_rate(drains);
        m.ratio_p50 = m.per_second / base_rate;
        measurements.push(m);
        let per_second = push_rate(drains);
        measurements.push(Measurement {
            name: format!("batch {batch}, push requests only [ops/s ratio]"),
            samples: 0,
            p50_us: 0.0,
            p95_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            per_second,
            ratio_p50: per_second / base_push_rate,
        });
    }
    Ok(Report { scenario: "upstream-drain".into(), measurements })
}
