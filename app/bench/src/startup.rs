//! `startup` (issue 22): a client process started over a big local database, from its start to
//! the first list of a project's tracks, against the same over a small database; and the
//! memory of the first upstream pass over a long outbox, against a short one.
//!
//! The times are measured by this process from spawning the client (`trackflow-bench open`) to
//! the line it prints after its first list: everything a program does before it can show data
//! (loading the binary, the runtime, registering the types, opening and checking the
//! database, wiring the engine, reading its history) is inside. The database files were just
//! written, so the page cache is warm, as it is when an app restarts.

use super::{
    downstream::{memory, reset_peak_memory},
    open_store, pulled, summarize, BenchArgs, Report,
};
use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use shaku::HasComponent;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
use trackflow_client::{EngineOptions, SyncEngine};
use trackflow_domain::{
    ports::{
        AccessToken, ApplyPlan, ConflictPolicies, DownstreamRepository, Repository, Session, SessionStorage,
    },
    protocol::EntityState,
    EntityType, Timestamp, UserId,
};
use trackflow_executors::PendingOperationsManager;
use trackflow_music::{AudioTrack, Project};
use trackflow_store::{Offload, SqliteDownstreamRepository, SqliteRepository};
use uuid::Uuid;

/// Tracks in each pulled project (with the project, a page of rows).
const TRACKS_PER_PROJECT: usize = 499;

/// The small database of the baseline: rows and queued operations.
const SMALL: (usize, usize) = (1_000, 100);

/// Process starts timed per database.
const STARTS: usize = 15;

/// Options of the hidden `trackflow-bench open` command: a client process that opens the
/// engine over `--dir`, lists `--project`'s tracks (with `--first-pass`, then runs one upstream
/// pass) and prints one JSON line: their number, the time of each step, memory.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The client's data directory.
    #[arg(long)]
    dir: PathBuf,
    /// The project whose tracks are listed.
    #[arg(long)]
    project: Uuid,
    /// Run one upstream pass (against a server that is not there) and report its memory.
    #[arg(long)]
    first_pass: bool,
}

/// What the `open` process reports.
#[derive(Debug, Serialize, Deserialize)]
struct Opened {
    /// Tracks listed.
    tracks: usize,
    /// Microseconds from `main` to the list, by step: the store opened (and migrated), the
    /// engine wired, its history read, the tracks listed.
    steps_us: [u64; 4],
    /// Resident memory when the list was read, bytes.
    rss: u64,
    /// Peak resident memory during the first upstream pass (0 without `--first-pass`), bytes.
    pass_peak_rss: u64,
}

/// The `open` process: the engine opened over `dir` the way an app opens it.
pub async fn open(args: OpenArgs) -> anyhow::Result<()> {
    // SyncEngine::open, step by step, to time each step.
    let started = Instant::now();
    let store = trackflow_client::wiring::open_store(&args.dir).await?;
    let opened_store = started.elapsed();
    let engine = SyncEngine::over(store, EngineOptions { realtime: false, ..EngineOptions::default() })?;
    let wired = started.elapsed();
    engine.load_history().await;
    let history = started.elapsed();
    let tracks = engine.repository::<AudioTrack>().list_by_parent(args.project).await?;
    let listed = started.elapsed();
    let steps_us =
        [opened_store, wired - opened_store, history - wired, listed - history].map(|d| d.as_micros() as u64);
    let rss = memory().map_or(0, |(now, _)| now);
    let mut pass_peak_rss = 0;
    if args.first_pass {
        let upstream: &PendingOperationsManager = engine.module.resolve_ref();
        anyhow::ensure!(reset_peak_memory(), "this system cannot reset the peak of resident memory");
        upstream.process().await?;
        pass_peak_rss = memory().map_or(0, |(_, peak)| peak);
    }
    println!("{}", serde_json::to_string(&Opened { tracks: tracks.len(), steps_us, rss, pass_peak_rss })?);
    engine.shutdown().await;
    Ok(())
}

pub(super) async fn startup(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let small = seed(&dir.join("startup-small"), SMALL.0, SMALL.1).await?;
    let big = seed(&dir.join("startup-big"), args.startup_rows, args.startup_queued).await?;
    let (mut small_times, mut big_times) = (Vec::new(), Vec::new());
    let (mut small_steps, mut big_steps) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let (took, opened) = start(&small, false).await?;
        small_times.push(took);
        small_steps.push(opened.steps_us);
        let (took, opened) = start(&big, false).await?;
        big_times.push(took);
        big_steps.push(opened.steps_us);
    }
    let small_name = format!("{} rows, {} queued", SMALL.0, SMALL.1);
    let big_name = format!("{} rows, {} queued", args.startup_rows, args.startup_queued);
    let mut measurements = vec![
        summarize(&format!("process start to first list, {small_name} (baseline)"), small_times),
        summarize(&format!("process start to first list, {big_name}"), big_times),
    ];
    for (name, steps) in [(&small_name, small_steps), (&big_name, big_steps)] {
        for (step, what) in
            ["store opened", "engine wired", "history read", "tracks listed"].into_iter().enumerate()
        {
            let samples = steps.iter().map(|s| Duration::from_micros(s[step])).collect();
            let mut measurement = summarize(&format!("  of which {what}, {name}"), samples);
            measurement.ratio_p50 = 0.0;
            measurements.push(measurement);
        }
    }
    // The first upstream pass's memory, a short queue against a long one.
    let long = seed(&dir.join("startup-queue"), SMALL.0, args.startup_pass_queued).await?;
    for (seeded, queued) in [(&small, SMALL.1), (&long, args.startup_pass_queued)] {
        let (_, opened) = start(seeded, true).await?;
        let grew = opened.pass_peak_rss.saturating_sub(opened.rss);
        let name = format!(
            "first upstream pass, {queued} queued: peak resident memory {:.1} MiB, +{:.1} MiB ({:.0} bytes per queued operation)",
            mib(opened.pass_peak_rss),
            mib(grew),
            grew as f64 / queued.max(1) as f64,
        );
        let mut measurement = summarize(&name, Vec::new());
        measurement.ratio_p50 = 0.0;
        measurements.push(measurement);
    }
    let baseline = measurements[0].p50_us.max(f64::EPSILON);
    measurements[1].ratio_p50 = measurements[1].p50_us / baseline;
    Ok(Report { scenario: "startup".into(), measurements })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A client database, the project whose tracks a start lists, and how many it holds.
struct Seeded {
    dir: PathBuf,
    project: Uuid,
    tracks: usize,
}

/// A client database in `dir` holding `rows` pulled rows (projects of [`TRACKS_PER_PROJECT`]
/// tracks) and `queued` local creates waiting for upstream, signed in to a server that is not
/// there (so the first pass tries, fails to connect and stops).
async fn seed(dir: &Path, rows: usize, queued: usize) -> anyhow::Result<Seeded> {
    std::fs::create_dir_all(dir)?;
    let store = open_store(&dir.join(trackflow_client::wiring::DATABASE_FILE), Offload::Auto).await?;
    let owner = UserId::new();
    let downstream = SqliteDownstreamRepository::new(store.clone());
    let plan = ApplyPlan::new(EntityType::all().to_vec(), ConflictPolicies::default())?;
    let mut project: Option<(Uuid, usize)> = None;
    let mut written = 0;
    let mut page_number = 0;
    while written < rows {
        let pulled_project = Project::new(owner, &format!("Pulled {page_number}"), None, Timestamp(0))?;
        let tracks = TRACKS_PER_PROJECT.min(rows - written - 1);
        let page: Vec<EntityState> = std::iter::once(Ok(pulled(&pulled_project)))
            .chain((0..tracks).map(|t| {
                let track = AudioTrack::new(
                    pulled_project.id(),
                    owner,
                    &format!("Take {t}"),
                    1_000,
                    None,
                    Timestamp(0),
                )?;
                Ok::<_, anyhow::Error>(pulled(&track))
            }))
            .collect::<Result<_, _>>()?;
        written += page.len();
        page_number += 1;
        downstream.apply_page("all", page, Vec::new(), format!("c{page_number}"), &plan).await?;
        project.get_or_insert((pulled_project.id().as_uuid(), tracks));
    }
    // Local writes, queued for upstream: tracks in a project of this device.
    let projects = SqliteRepository::<Project>::new(store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(store.clone());
    let mine = projects.create(Project::new(owner, "Mine", None, Timestamp(0))?).await?;
    for i in 1..queued {
        tracks
            .create(AudioTrack::new(mine.id(), owner, &format!("Mine {i}"), 1_000, None, Timestamp(0))?)
            .await?;
    }
    let session: &dyn SessionStorage = &trackflow_store::SqliteSessionStorage::new(store.clone());
    session
        .save(Session {
            user_id: owner,
            // Nothing listens on the discard port: a push fails at once to connect.
            server_url: Some("http://127.0.0.1:9".into()),
            access_token: Some(AccessToken::new("none")),
        })
        .await?;
    let (project, tracks) = project.unwrap_or((mine.id().as_uuid(), queued.saturating_sub(1)));
    Ok(Seeded { dir: dir.to_owned(), project, tracks })
}

/// Starts `trackflow-bench open` over `seeded` and times it until its first list is printed.
async fn start(seeded: &Seeded, first_pass: bool) -> anyhow::Result<(Duration, Opened)> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("open").arg("--dir").arg(&seeded.dir).args(["--project", &seeded.project.to_string()]);
    if first_pass {
        command.arg("--first-pass");
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().context("starting the open process")?;
    let stdout = child.stdout.take().context("the open process's stdout")?;
    let line =
        BufReader::new(stdout).lines().next_line().await?.context("the open process printed nothing")?;
    let took = started.elapsed();
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "the open process failed: {status}");
    let opened: Opened = serde_json::from_str(&line)?;
    anyhow::ensure!(opened.tracks == seeded.tracks, "listed {} tracks of {}", opened.tracks, seeded.tracks);
    Ok((took, opened))
}
