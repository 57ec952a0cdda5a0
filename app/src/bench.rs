//! `trackflow bench`: measurements that always run their baseline in the same process and
//! report ratios and percentiles. Results and the commands that produced them live in
//! docs/PERFORMANCE.md. Add a scenario by adding a [`Scenario`] variant and its function.

use anyhow::Context;
use clap::{Args, ValueEnum};
use diesel::{connection::SimpleConnection, prelude::*};
use serde::Serialize;
use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};
use trackflow_data::{
    local::configure_connection, LocalStore, LocalStoreOptions, SqliteAudioTrackRepository,
    SqliteProjectRepository, SystemClock,
};
use trackflow_domain::{
    ports::{AudioTrackRepository, ProjectRepository},
    AudioTrack, Project, Timestamp, UserId,
};

/// Options of `trackflow bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Timed operations per measurement.
    #[arg(long, default_value_t = 5_000)]
    pub iterations: usize,
    /// Untimed operations before each measurement.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Where to create the database files (default: a fresh temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Local create+enqueue latency against a bare one-row Diesel insert transaction.
    LocalWrite,
}

/// Latency statistics of one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Timed operations.
    pub samples: usize,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Operations per second over the whole timed run (sequential, one at a time).
    pub per_second: f64,
    /// p50 relative to the scenario's baseline (the baseline itself is 1.0).
    pub ratio_p50: f64,
}

/// All measurements of one scenario; the first is its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// Measurements, baseline first.
    pub measurements: Vec<Measurement>,
}

/// Runs the chosen scenarios and prints their reports.
pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    let mut reports = Vec::new();
    for scenario in scenarios {
        let report = match scenario {
            Scenario::LocalWrite => local_write(&dir, &args).await?,
        };
        if !json {
            print_report(&report);
        }
        reports.push(report);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

fn print_report(report: &Report) {
    println!("scenario: {}", report.scenario);
    println!(
        "  {:<48} {:>8} {:>10} {:>10} {:>12} {:>8}",
        "measurement", "n", "p50 µs", "p99 µs", "ops/s", "ratio"
    );
    for m in &report.measurements {
        println!(
            "  {:<48} {:>8} {:>10.1} {:>10.1} {:>12.0} {:>8.2}",
            m.name, m.samples, m.p50_us, m.p99_us, m.per_second, m.ratio_p50
        );
    }
}

/// Times `iterations` sequential calls of `op` after `warmup` untimed ones.
async fn measure<F, Fut>(name: &str, args: &BenchArgs, mut op: F) -> anyhow::Result<Measurement>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for i in 0..args.warmup {
        op(i).await?;
    }
    let mut samples = Vec::with_capacity(args.iterations);
    let started = Instant::now();
    for i in 0..args.iterations {
        let t = Instant::now();
        op(args.warmup + i).await?;
        samples.push(t.elapsed());
    }
    Ok(summarize(name, samples, started.elapsed()))
}

fn summarize(name: &str, mut samples: Vec<Duration>, total: Duration) -> Measurement {
    samples.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        // Nearest rank.
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e6
    };
    Measurement {
        name: name.to_owned(),
        samples: samples.len(),
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        per_second: samples.len() as f64 / total.as_secs_f64().max(f64::EPSILON),
        ratio_p50: 1.0,
    }
}

fn with_ratios(scenario: &str, mut measurements: Vec<Measurement>) -> Report {
    let baseline = measurements
        .first()
        .map_or(1.0, |m| m.p50_us)
        .max(f64::EPSILON);
    for m in &mut measurements {
        m.ratio_p50 = m.p50_us / baseline;
    }
    Report {
        scenario: scenario.to_owned(),
        measurements,
    }
}

mod baseline_schema {
    #![allow(missing_docs)]
    diesel::table! {
        bench_rows (id) {
            id -> Text,
            name -> Text,
            created_at -> BigInt,
        }
    }
}
use baseline_schema::bench_rows;

const BENCH_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL)";

fn insert_bench_row(conn: &mut SqliteConnection, i: usize) -> QueryResult<usize> {
    conn.immediate_transaction(|conn| {
        diesel::insert_into(bench_rows::table)
            .values((
                bench_rows::id.eq(uuid::Uuid::now_v7().to_string()),
                bench_rows::name.eq(format!("row {i}")),
                bench_rows::created_at.eq(i as i64),
            ))
            .execute(conn)
    })
}

async fn open_store(path: &Path) -> anyhow::Result<LocalStore> {
    Ok(LocalStore::open(LocalStoreOptions::new(path), Arc::new(SystemClock)).await?)
}

/// Local create+enqueue against a bare one-row insert transaction, each on its own fresh file
/// database with the same connection settings.
async fn local_write(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    // Baseline: a bare Diesel insert transaction of one row, on the calling thread.
    let baseline_path = dir.join("bench-baseline.db");
    let mut conn = SqliteConnection::establish(&baseline_path.to_string_lossy())?;
    configure_connection(&mut conn, Duration::from_secs(5))?;
    conn.batch_execute(BENCH_TABLE)?;
    let bare = measure("bare insert transaction (direct, same thread)", args, |i| {
        let result = insert_bench_row(&mut conn, i)
            .map(drop)
            .map_err(anyhow::Error::from);
        std::future::ready(result)
    })
    .await?;
    drop(conn);

    // The same bare insert through the store's blocking helper and pool: the async hop alone.
    let hop_store = open_store(&dir.join("bench-hop.db")).await?;
    hop_store
        .with_connection(|conn| Ok(conn.batch_execute(BENCH_TABLE)?))
        .await?;
    let hop = measure("bare insert transaction (via blocking pool)", args, |i| {
        let store = hop_store.clone();
        async move {
            store
                .with_connection(move |conn| Ok(insert_bench_row(conn, i)?))
                .await?;
            Ok(())
        }
    })
    .await?;

    // The real thing: a project create with its outbox operation, in one transaction.
    let store = open_store(&dir.join("bench-local.db")).await?;
    let projects = SqliteProjectRepository::new(store.clone());
    let owner = UserId::new();
    let create = measure("project create + enqueue (repository)", args, |i| {
        let projects = &projects;
        async move {
            let project = Project::new(owner, &format!("Project {i}"), None, Timestamp(i as i64))?;
            projects.create(project).await?;
            Ok(())
        }
    })
    .await?;

    // A child: checks its parent and records the dependency on the parent's queued create.
    let parent = projects
        .create(Project::new(owner, "Parent", None, Timestamp(0))?)
        .await?
        .id();
    let tracks = SqliteAudioTrackRepository::new(store.clone());
    let child = measure("track create + enqueue (checks parent)", args, |i| {
        let tracks = &tracks;
        async move {
            let track = AudioTrack::new(
                parent,
                owner,
                &format!("Take {i}"),
                180_000,
                None,
                Timestamp(i as i64),
            )?;
            tracks.create(track).await?;
            Ok(())
        }
    })
    .await?;

    Ok(with_ratios("local-write", vec![bare, hop, create, child]))
}
