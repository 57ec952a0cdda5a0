//! Many listeners: `--listeners` event streams open on one `trackflow server` process while
//! `--listener-writers` writers push one track at a time into projects of their own.
//!
//! Nine listeners in ten are members (viewers) of one writer's project; the rest of none. Each
//! stream's pokes are recorded as they arrive. At the end every push is matched, for every
//! stream entitled to its project, with the first poke on that stream naming the project at
//! the push's version or later: none may be missing (lost), and no stream may ever be told of
//! a project it does not read (a stranger poked). Either is an error, not a figure. The
//! latency is from sending the push to that poke's arrival; the baseline is the push's own
//! round trip in the same run. Server memory per stream is the server process's resident
//! memory with every stream open, less before, divided by the streams.

use super::{
    downstream::memory_of,
    server::{post_json, pushers, sign_up, spawn_server, track, Endpoint, Pusher},
    summarize, BenchArgs, Report,
};
use anyhow::{bail, ensure, Context};
use futures_util::{stream, StreamExt};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use trackflow_domain::{
    protocol::{MutationOutcome, Poke, PushResponse},
    CollaboratorRole, OperationKind, Timestamp,
};
use trackflow_music::{ProjectCollaborator, ProjectId};
use trackflow_server_store::ScratchDatabase;

/// Sign-ups in flight at once while setting up (each hashes a password on the server).
const SIGN_UPS_AT_ONCE: usize = 8;

/// A poke as a stream received it.
struct Received {
    listener: usize,
    at: Instant,
    poke: Poke,
}

/// A push a writer made: its project, the version it wrote, when it was sent.
struct Pushed {
    project: ProjectId,
    version: i64,
    sent: Instant,
}

pub(super) async fn listeners(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let (url, _scratch) = match &args.postgres {
        Some(admin) => {
            let scratch = ScratchDatabase::create(admin, "trackflow_bench").context("a scratch database")?;
            (scratch.url().to_owned(), Some(scratch))
        }
        None => (dir.join("listeners-server.db").to_string_lossy().into_owned(), None),
    };
    let server = spawn_server(&url, &dir.join("listeners-blobs")).await?;
    let endpoint = server.endpoint.clone();
    let mut writers = pushers(&endpoint, args.listener_writers.max(1)).await?;

    // Listeners, and what each may read: nine in ten a viewer of one writer's project.
    let signed: Vec<anyhow::Result<_>> = stream::iter(0..args.listeners)
        .map(|_| sign_up(&endpoint))
        .buffered(SIGN_UPS_AT_ONCE)
        .collect()
        .await;
    let listeners: Vec<_> = signed.into_iter().collect::<anyhow::Result<_>>()?;
    let entitled: Vec<Option<ProjectId>> =
        (0..listeners.len()).map(|i| (i % 10 != 9).then(|| writers[i % writers.len()].project)).collect();
    grant(&endpoint, &mut writers, &listeners, &entitled).await?;

    let before = memory_of(server.pid).map_or(0, |(now, _)| now);
    let (received, mut pokes) = mpsc::unbounded_channel();
    let ready = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for (i, (_, token)) in listeners.iter().enumerate() {
        streams.push(tokio::spawn(listen(
            endpoint.clone(),
            token.clone(),
            i,
            received.clone(),
            ready.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::SeqCst) < listeners.len() {
        ensure!(Instant::now() < deadline, "only {} streams opened", ready.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_stream = memory_of(server.pid).map_or(0, |(now, _)| now).saturating_sub(before)
        / listeners.len().max(1) as u64;

    let run = Duration::from_secs(args.listener_seconds);
    let pause = Duration::from_millis(args.listener_pause_ms);
    let tasks: Vec<_> =
        writers.into_iter().map(|writer| tokio::spawn(write(endpoint.clone(), writer, run, pause))).collect();
    let mut pushes = Vec::new();
    let mut round_trips = Vec::new();
    for task in tasks {
        let (pushed, trips) = task.await??;
        pushes.extend(pushed);
        round_trips.extend(trips);
    }
    // Quiet for two seconds: every poke has arrived (bounded, in case one never does).
    let mut got: Vec<Received> = Vec::new();
    let quiet_deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(Some(poke)) = tokio::time::timeout(Duration::from_secs(2), pokes.recv()).await {
        got.push(poke);
        if Instant::now() > quiet_deadline {
            break;
        }
    }
    for stream in &streams {
        stream.abort();
    }

    let (latencies, pairs) = judge(&pushes, &got, &entitled)?;
    let push_count = pushes.len();
    let mut measurements = vec![
        summarize(
            &format!("push round trip ({} writers, {push_count} pushes)", args.listener_writers),
            round_trips,
        ),
        summarize(
            &format!("push sent to poke received, {} streams ({pairs} pairs, none lost)", listeners.len()),
            latencies,
        ),
    ];
    let base = measurements[0].p50_us;
    measurements[1].ratio_p50 = measurements[1].p50_us / base;
    let mut memory = summarize(
        &format!("server memory per open stream: {per_stream} bytes ({} open)", listeners.len()),
        Vec::new(),
    );
    memory.ratio_p50 = 0.0;
    measurements.push(memory);
    Ok(Report { scenario: "listeners".into(), measurements })
}

/// Each writer makes its share of the listeners viewers of its project.
async fn grant(
    endpoint: &Endpoint,
    writers: &mut [Pusher],
    listeners: &[(trackflow_domain::UserId, String)],
    entitled: &[Option<ProjectId>],
) -> anyhow::Result<()> {
    for writer in writers.iter_mut() {
        let members: Vec<_> = listeners
            .iter()
            .zip(entitled)
            .filter(|(_, project)| **project == Some(writer.project))
            .map(|((user, _), _)| *user)
            .collect();
        for chunk in members.chunks(500) {
            let mut grants = Vec::new();
            for user in chunk {
                grants.push(ProjectCollaborator::new(
                    writer.project,
                    *user,
                    CollaboratorRole::Viewer,
                    Timestamp(1),
                )?);
            }
            let request = writer
                .writer
                .request(|w| grants.iter().map(|g| w.mutation(OperationKind::Create, g)).collect());
            push(endpoint, &writer.token, serde_json::to_vec(&request)?).await?;
        }
    }
    Ok(())
}

/// Sends one push; returns its answer.
async fn push(endpoint: &Endpoint, token: &str, body: Vec<u8>) -> anyhow::Result<PushResponse> {
    let (_, answer) = post_json(endpoint, "/v1/sync/push", token, body).await?;
    Ok(serde_json::from_slice(&answer)?)
}

/// One writer: a track at a time into its project for `run`, pausing between pushes.
async fn write(
    endpoint: Endpoint,
    mut writer: Pusher,
    run: Duration,
    pause: Duration,
) -> anyhow::Result<(Vec<Pushed>, Vec<Duration>)> {
    let started = Instant::now();
    let (mut pushed, mut trips) = (Vec::new(), Vec::new());
    let mut i = 0;
    while started.elapsed() < run {
        let request = writer
            .writer
            .request(|w| vec![w.mutation(OperationKind::Create, &track(writer.project, writer.user, i))]);
        let body = serde_json::to_vec(&request)?;
        let sent = Instant::now();
        let answer = push(&endpoint, &writer.token, body).await?;
        trips.push(sent.elapsed());
        let MutationOutcome::Applied { version } = answer.results[0].outcome else {
            bail!("a push was not applied: {:?}", answer.results[0].outcome)
        };
        pushed.push(Pushed { project: writer.project, version, sent });
        i += 1;
        tokio::time::sleep(pause).await;
    }
    Ok((pushed, trips))
}

/// One event stream: every poke it receives, with its arrival, until aborted.
async fn listen(
    endpoint: Endpoint,
    token: String,
    listener: usize,
    received: mpsc::UnboundedSender<Received>,
    ready: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let mut response =
        endpoint.client.get(format!("{}/v1/events", endpoint.url)).bearer_auth(&token).send().await?;
    ensure!(response.status().is_success(), "events: {}", response.status());
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await? {
        let at = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let name = event.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim);
            let data = event.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim);
            match (name, data) {
                (Some("ready"), _) => {
                    ready.fetch_add(1, Ordering::SeqCst);
                }
                (Some("poke"), Some(data)) => {
                    let poke: Poke = serde_json::from_str(data)?;
                    let _ = received.send(Received { listener, at, poke });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Matches every push with its poke on every entitled stream. Returns the latencies and how
/// many (push, stream) pairs there were; an error if a pair has no poke or a stream was told
/// of a project it does not read.
fn judge(
    pushes: &[Pushed],
    got: &[Received],
    entitled: &[Option<ProjectId>],
) -> anyhow::Result<(Vec<Duration>, usize)> {
    // Each stream's pokes per project, in arrival order: (arrival, version).
    let mut by_stream: Vec<BTreeMap<String, Vec<(Instant, i64)>>> = vec![BTreeMap::new(); entitled.len()];
    let mut strangers = 0;
    for r in got {
        let allowed: BTreeSet<String> = entitled[r.listener].iter().map(|p| format!("project:{p}")).collect();
        // "Pull everything" (a stream or queue fell behind) covers every scope it reads.
        let everything: Vec<String> = allowed.iter().cloned().collect();
        for scope in r.poke.scopes.as_ref().unwrap_or(&everything) {
            if allowed.contains(scope) {
                by_stream[r.listener].entry(scope.clone()).or_default().push((r.at, r.poke.version));
            } else {
                strangers += 1;
            }
        }
    }
    ensure!(strangers == 0, "{strangers} pokes named a project their stream may not read");
    let mut members: BTreeMap<ProjectId, Vec<usize>> = BTreeMap::new();
    for (i, project) in entitled.iter().enumerate() {
        if let Some(project) = project {
            members.entry(*project).or_default().push(i);
        }
    }
    let (mut latencies, mut lost, mut pairs) = (Vec::new(), 0, 0);
    for p in pushes {
        let scope = format!("project:{}", p.project);
        for &listener in members.get(&p.project).into_iter().flatten() {
            pairs += 1;
            let poked = by_stream[listener]
                .get(&scope)
                .and_then(|pokes| pokes.iter().find(|(at, version)| *version >= p.version && *at >= p.sent));
            match poked {
                Some((at, _)) => latencies.push(at.duration_since(p.sent)),
                None => lost += 1,
            }
        }
    }
    ensure!(lost == 0, "{lost} of {pairs} (push, entitled stream) pairs got no poke");
    Ok((latencies, pairs))
}
