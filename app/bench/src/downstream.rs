//! Downstream: what a client pays to catch up with the server, through the real
//! `SyncDataManager` and HTTP remote against a loopback server (SQLite store).
//!
//! The server holds `--downstream-rows` rows (default 100,000) of one user: a profile,
//! [`PROJECTS`] projects, and in each project tracks and comments on them, half and half. The
//! client runs in a process of its own (`trackflow-bench client`, driven over its stdin and
//! stdout), so its memory is its own, as on a user's machine; the server and a TCP proxy that
//! counts the bytes crossing the wire both ways (headers included) run in this process.
//!
//! Three measurements, in rounds, each round with a fresh client:
//!
//! - **Full fetch** (the baseline, and what the original design did on every sync): list the
//!   scopes and fetch every page of every scope from the start, 1,000 rows a page, projects four
//!   at a time like the manager, without storing anything.
//! - **Initial sync**: the client pulls everything into its empty store (`pull(true)`); rows
//!   per second and the client process's peak resident memory during the sync.
//! - **Incremental pull**: the client of the initial sync, holding every row, after another
//!   device changed [`CHANGES`] tracks, taking turns: all in one project (a different one each
//!   time), or one in each project, so that every project's head moved and each is pulled;
//!   `pull(true)` end to end: the scopes request, a pull of each project whose head moved, and
//!   the merge.
//!
//! Each sync is checked: the initial one must store every row, the incremental one must apply
//! exactly the changes, or the benchmark fails.

use super::{
    server::{track, Writer},
    summarize,
    upstream::sign_up,
    BenchArgs, Measurement, Report, SERVER_CONNECTIONS,
};
use anyhow::{bail, ensure, Context};
use clap::Args;
use futures_util::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use shaku::HasComponent;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};
use trackflow::link::Link;
use trackflow_client::wiring::client_module;
use trackflow_domain::{
    ports::{AccessToken, RemoteDataSource, ServerStore, Session, SessionStorage},
    protocol::{Mutation, PullRequest, PullResponse, ScopeHead, MAX_PULL_LIMIT},
    OperationKind, Timestamp, UserId,
};
use trackflow_music::{AudioComment, AudioTrack, Project, UserProfile};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::DieselServerStore;
use trackflow_store::{LocalStore, LocalStoreOptions, SystemClock};
use trackflow_usecases::{PullError, PullReport, SyncDataManager, SyncDataOptions};
use uuid::Uuid;

/// Projects holding the rows.
const PROJECTS: usize = 10;
/// Changes an incremental pull brings.
const CHANGES: usize = 10;
/// Mutations per seeding push.
const SEED_BATCH: usize = 500;

/// Resident memory of this process: (now, peak since the last [`reset_peak_memory`]), in
/// bytes, from /proc (Linux only; `None` elsewhere).
pub(super) fn memory() -> Option<(u64, u64)> {
    memory_at("/proc/self/status")
}

/// [`memory`] of another process.
pub(super) fn memory_of(pid: u32) -> Option<(u64, u64)> {
    memory_at(&format!("/proc/{pid}/status"))
}

fn memory_at(path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time this process has used, user and system, in microseconds (from /proc, proc(5);
/// `None` elsewhere).
fn cpu_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux platform Rust supports.
    Some(ticks * 10_000)
}

/// Starts a new peak of resident memory at the current size (proc(5), clear_refs value 5).
pub(super) fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The server side of the scenario: a seeded server behind a counting proxy.
struct Seeded {
    server: RunningServer,
    store: Arc<DieselServerStore>,
    proxy: Link,
    user: UserId,
    token: String,
    /// Rows the user may read.
    rows: usize,
    /// The other device writing the changes.
    writer: Writer,
    /// Each project's tracks.
    tracks: Vec<Vec<AudioTrack>>,
    /// How many changes the writer has made, for fresh names.
    changed: usize,
}

/// Starts a server in `dir` and fills it with `rows` rows of one user.
async fn seed(dir: &Path, rows: usize) -> anyhow::Result<Seeded> {
    // A profile, the projects, and at least one track in each.
    let least = 1 + 2 * PROJECTS;
    ensure!(rows >= least, "--downstream-rows must be at least {least}");
    std::fs::create_dir_all(dir)?;
    let url = dir.join("server.db").to_string_lossy().into_owned();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || DieselServerStore::open(&url, SERVER_CONNECTIONS)).await??,
    );
    let server =
        RunningServer::start("127.0.0.1:0".parse()?, AppState::new(store.clone(), ServerConfig::default()))
            .await?;
    let proxy = Link::start(server.addr()).await?;
    let user = UserId::new();
    let token = sign_up(&server.url(), user).await?;

    let now = Timestamp(1_800_000_000_000);
    let mut writer = Writer::new();
    let mut mutations: Vec<Mutation> = Vec::with_capacity(rows);
    let profile = UserProfile::new(user, "Bench", "bench@example.com", now)?;
    mutations.push(writer.mutation(OperationKind::Create, &profile));
    let per_project = (rows - 1 - PROJECTS) / PROJECTS;
    let mut tracks = Vec::new();
    for p in 0..PROJECTS {
        let project = Project::new(user, &format!("Project {p}"), None, now)?;
        mutations.push(writer.mutation(OperationKind::Create, &project));
        // The first project takes the remainder.
        let share = per_project + if p == 0 { (rows - 1 - PROJECTS) % PROJECTS } else { 0 };
        let n_tracks = share.div_ceil(2);
        let mut mine = Vec::with_capacity(n_tracks);
        for t in 0..n_tracks {
            let track = track(project.id(), user, t);
            mutations.push(writer.mutation(OperationKind::Create, &track));
            mine.push(track);
        }
        for c in 0..share - n_tracks {
            let on = &mine[c % n_tracks];
            let comment = AudioComment::new(on, user, &format!("Comment {c}"), 1_000, now)?;
            mutations.push(writer.mutation(OperationKind::Create, &comment));
        }
        tracks.push(mine);
    }
    ensure!(mutations.len() == rows, "seeded {} rows, expected {rows}", mutations.len());
    for batch in mutations.chunks(SEED_BATCH) {
        let request = writer.request(|_| batch.to_vec());
        store.push(user, request).await.context("seeding the server")?;
    }
    Ok(Seeded { server, store, proxy, user, token, rows, writer, tracks, changed: 0 })
}

impl Seeded {
    /// The other device changes [`CHANGES`] tracks: in one project (a different one each
    /// time), or spread over the projects, one each (so every project's head moves).
    async fn change(&mut self, spread: bool) -> anyhow::Result<()> {
        let n = self.changed;
        let renamed: Vec<AudioTrack> = (0..CHANGES)
            .map(|k| {
                let (project, index) = if spread { (k, n) } else { (n, n * CHANGES + k) };
                let tracks = &self.tracks[project % self.tracks.len()];
                let t = &tracks[index % tracks.len()];
                let name = format!("Take {} (edit {})", k, self.changed);
                AudioTrack::restore(
                    t.id(),
                    t.project_id(),
                    t.uploaded_by(),
                    &name,
                    t.duration_ms(),
                    t.audio_sha256(),
                    t.created_at(),
                )
            })
            .collect::<Result<_, _>>()?;
        self.changed += 1;
        let request =
            self.writer.request(|w| renamed.iter().map(|t| w.mutation(OperationKind::Update, t)).collect());
        self.store.push(self.user, request).await?;
        Ok(())
    }
}

/// The environment variable handing the client process its access token.
const TOKEN_VARIABLE: &str = "TRACKFLOW_BENCH_TOKEN";

/// Options of the hidden `trackflow-bench client` command: the client side of the downstream
/// scenario. It reads commands from stdin, one per line: `fetch` (the full fetch) or `pull`
/// (`pull(true)`), and answers each with one JSON line (rows, microseconds, memory and CPU
/// time). The token comes in `TRACKFLOW_BENCH_TOKEN`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(long)]
    url: String,
    /// The signed-in user.
    #[arg(long)]
    user: Uuid,
    /// Where the client's database lives.
    #[arg(long)]
    dir: PathBuf,
}

/// What one client command did.
#[derive(Debug, Serialize, Deserialize)]
struct Step {
    /// Rows fetched or applied.
    rows: u64,
    /// Wall-clock time of the command.
    micros: u64,
    /// Resident memory before it, bytes (0 where /proc is missing).
    rss_before: u64,
    /// Peak resident memory during it, bytes (0 where /proc is missing).
    peak_rss: u64,
    /// CPU time the client process spent in it, microseconds (0 where /proc is missing).
    cpu_micros: u64,
}

/// The client process: a fresh store signed in to the server, pulling on command.
pub async fn client(args: ClientArgs) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_VARIABLE).with_context(|| format!("{TOKEN_VARIABLE} is not set"))?;
    std::fs::create_dir_all(&args.dir)?;
    let store =
        LocalStore::open(LocalStoreOptions::new(args.dir.join("client.db")), Arc::new(SystemClock)).await?;
    let module = client_module(&store)?;
    let session: Arc<dyn SessionStorage> = module.resolve();
    session
        .save(Session {
            user_id: UserId::from_uuid(args.user),
            server_url: Some(args.url),
            access_token: Some(AccessToken::new(token)),
        })
        .await?;
    let options = SyncDataOptions { page_size: MAX_PULL_LIMIT, ..SyncDataOptions::default() };
    let remote: Arc<dyn RemoteDataSource> = module.resolve();
    let manager = SyncDataManager::new(remote.clone(), module.resolve(), module.resolve(), options);

    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        let measured = reset_peak_memory();
        let before = memory();
        let cpu_before = cpu_time();
        let started = Instant::now();
        let rows = match command.trim() {
            "fetch" => full_fetch(remote.as_ref()).await?,
            "pull" => applied(manager.pull(true).await?)?,
            other => bail!("unknown command {other:?}"),
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let (rss_before, peak_rss) = match (measured, before, memory()) {
            (true, Some((rss, _)), Some((_, peak))) => (rss, peak),
            _ => (0, 0),
        };
        let cpu_micros = cpu_time().zip(cpu_before).map_or(0, |(after, before)| after - before);
        let step = Step { rows, micros, rss_before, peak_rss, cpu_micros };
        println!("{}", serde_json::to_string(&step)?);
    }
    Ok(())
}

/// The baseline: every page of every scope from the start, fetched and dropped. Returns the
/// rows fetched.
async fn full_fetch(remote: &dyn RemoteDataSource) -> anyhow::Result<u64> {
    let scopes = remote.scopes().await?.scopes;
    let counts: Vec<anyhow::Result<u64>> = stream::iter(scopes)
        .map(|ScopeHead { scope, .. }| async move {
            let (mut cursor, mut rows) = (None, 0);
            loop {
                let request = PullRequest { cursor, limit: MAX_PULL_LIMIT, scope: Some(scope.clone()) };
                match remote.pull(request).await? {
                    PullResponse::Changes { changes, next_cursor, has_more, .. } => {
                        rows += changes.len() as u64;
                        cursor = Some(next_cursor);
                        if !has_more {
                            return Ok(rows);
                        }
                    }
                    PullResponse::Reset => bail!("a pull from the start answered reset"),
                }
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    counts.into_iter().sum()
}

/// A running client process.
struct ClientProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl ClientProcess {
    /// Starts `trackflow-bench client` with a fresh store in `dir`, signed in through the proxy.
    async fn start(seeded: &Seeded, dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("client")
            .args(["--url", &seeded.proxy.url(), "--user", &seeded.user.to_string()])
            .arg("--dir")
            .arg(dir)
            .env(TOKEN_VARIABLE, &seeded.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the client process")?;
        let stdin = child.stdin.take().context("the client's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("the client's stdout")?).lines();
        Ok(Self { child, stdin, stdout })
    }

    /// Runs one command in the client, measuring the bytes that crossed the proxy and the CPU
    /// time of this process (the server's side) meanwhile.
    async fn run(&mut self, proxy: &Link, command: &str) -> anyhow::Result<(Step, Run)> {
        let (bytes_before, cpu_before) = (proxy.bytes(), cpu_time());
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = self.stdout.next_line().await?.context("the client process ended early")?;
        let step: Step = serde_json::from_str(&line)?;
        let server_cpu = cpu_time().zip(cpu_before).map_or(0, |(after, before)| after - before);
        let run = Run {
            took: Duration::from_micros(step.micros),
            bytes: proxy.bytes() - bytes_before,
            client_cpu: Duration::from_micros(step.cpu_micros),
            server_cpu: Duration::from_micros(server_cpu),
        };
        Ok((step, run))
    }

    /// Closes its stdin and waits for it to exit successfully.
    async fn finish(self) -> anyhow::Result<()> {
        let Self { mut child, stdin, .. } = self;
        drop(stdin);
        let status = child.wait().await?;
        ensure!(status.success(), "the client process failed: {status}");
        Ok(())
    }
}

/// Rows a pull applied, over all scopes; any scope's failure fails the benchmark.
fn applied(outcomes: Vec<(String, Result<PullReport, PullError>)>) -> anyhow::Result<u64> {
    let mut applied = 0;
    for (scope, outcome) in outcomes {
        let report = outcome.with_context(|| format!("pulling {scope}"))?;
        applied += report.counts.values().map(|c| c.applied).sum::<u64>();
    }
    Ok(applied)
}

/// One timed client command: its wall-clock time and the bytes it moved.
struct Run {
    took: Duration,
    bytes: u64,
    /// CPU time of the client process.
    client_cpu: Duration,
    /// CPU time of this process (server and proxy) meanwhile.
    server_cpu: Duration,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 0 => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        n => values[n / 2],
    }
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The scenario: `--downstream-rounds` rounds (default 3), each with a fresh client process
/// making a full fetch, an initial sync, and `--downstream-pulls` incremental pulls (default
/// 50).
pub(super) async fn downstream(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut seeded = seed(&dir.join("downstream"), args.downstream_rows).await?;
    let rows = seeded.rows as u64;
    let rounds = args.downstream_rounds.max(1);
    let (mut fetches, mut syncs) = (Vec::new(), Vec::new());
    // Incremental pulls: [changes in one project, changes spread over all of them].
    let mut pulls: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut memory = Vec::new();
    for round in 0..rounds {
        let mut client =
            ClientProcess::start(&seeded, &dir.join(format!("downstream-client-{round}"))).await?;
        let (fetch, run) = client.run(&seeded.proxy, "fetch").await?;
        ensure!(fetch.rows == rows, "the full fetch brought {} rows, expected {rows}", fetch.rows);
        fetches.push(run);

        let (sync, run) = client.run(&seeded.proxy, "pull").await?;
        ensure!(sync.rows == rows, "the initial sync applied {} rows, expected {rows}", sync.rows);
        syncs.push(run);
        memory.push((sync.rss_before, sync.peak_rss));

        for i in 0..2 * args.downstream_pulls {
            let spread = i % 2 == 1;
            seeded.change(spread).await?;
            let (pull, run) = client.run(&seeded.proxy, "pull").await?;
            ensure!(
                pull.rows == CHANGES as u64,
                "an incremental pull applied {} rows, expected {CHANGES}",
                pull.rows
            );
            pulls[usize::from(spread)].push(run);
        }
        client.finish().await?;
    }
    let Seeded { server, proxy, .. } = seeded;
    drop(proxy);
    server.shutdown().await?;

    let rows_per_second =
        |runs: &[Run]| median(runs.iter().map(|r| rows as f64 / r.took.as_secs_f64()).collect());
    let bytes = |runs: &[Run]| median(runs.iter().map(|r| r.bytes as f64).collect());
    let latencies = |runs: &[Run]| runs.iter().map(|r| r.took).collect::<Vec<_>>();
    // Median CPU seconds of the client and of the server side, to see which one the wall time
    // waited for.
    let cpu = |runs: &[Run]| {
        let client = median(runs.iter().map(|r| r.client_cpu.as_secs_f64()).collect());
        let server = median(runs.iter().map(|r| r.server_cpu.as_secs_f64()).collect());
        format!("CPU s client {client:.2}, server {server:.2}")
    };
    let fetch_bytes = bytes(&fetches);

    let mut fetch = summarize(
        &format!("full fetch, {rows} rows ({fetch_bytes:.0} bytes; {}) [rows/s]", cpu(&fetches)),
        latencies(&fetches),
    );
    fetch.per_second = rows_per_second(&fetches);
    let mut sync = summarize(
        &format!("initial sync, {rows} rows ({:.0} bytes; {}) [rows/s]", bytes(&syncs), cpu(&syncs)),
        latencies(&syncs),
    );
    sync.per_second = rows_per_second(&syncs);
    sync.ratio_p50 = sync.p50_us / fetch.p50_us;
    let mut measurements = vec![fetch, sync];
    for (runs, where_) in pulls.iter().zip(["in 1 project", &format!("over {PROJECTS} projects")]) {
        let pull_bytes = bytes(runs);
        let mut pull = summarize(
            &format!("incremental pull, {CHANGES} changes {where_} ({pull_bytes:.0} bytes) [pulls/s]"),
            latencies(runs),
        );
        pull.ratio_p50 = pull.p50_us / measurements[0].p50_us;
        measurements.push(pull);
        measurements.push(Measurement {
            name: format!("bytes: full fetch / incremental pull {where_}"),
            samples: runs.len(),
            p50_us: 0.0,
            p95_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            per_second: 0.0,
            ratio_p50: fetch_bytes / pull_bytes.max(1.0),
        });
    }
    if let Some((before, peak)) =
        memory.iter().copied().filter(|(_, peak)| *peak > 0).max_by_key(|(_, peak)| *peak)
    {
        measurements.push(Measurement {
            name: format!(
                "initial sync: client peak RSS {:.1} MiB (from {:.1} MiB) [peak/start]",
                mib(peak),
                mib(before)
            ),
            samples: memory.len(),
            p50_us: 0.0,
            p95_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            per_second: 0.0,
            ratio_p50: peak as f64 / before.max(1) as f64,
        });
    }
    Ok(Report { scenario: "downstream".into(), measurements })
}
