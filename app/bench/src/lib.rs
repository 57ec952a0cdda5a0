//! `trackflow-bench`: measurements that always run their baseline in the same process and
//! report ratios and percentiles. Results and the commands that produced them live in
//! docs/PERFORMANCE.md. Add a scenario by adding a [`Scenario`] variant and its function.

use anyhow::Context;
use clap::{Args, ValueEnum};
use diesel::{connection::SimpleConnection, prelude::*};
use serde::Serialize;
use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};
use trackflow_domain::{
    ports::Repository, protocol::EntityState, Hlc, NodeId, SyncEntity, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project, ProjectId};
use trackflow_store::{
    configure_connection, LocalStore, LocalStoreOptions, Offload, SqliteRepository, SystemClock,
};

/// Options of `trackflow-bench`.
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
    /// Consecutive calls of one measurement before the next takes its turn.
    #[arg(long, default_value_t = 250)]
    pub block: usize,
    /// Where to create the benchmark's fresh directory of database files (default: the system's
    /// temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also run the server scenarios on PostgreSQL: a URL whose server may create (and drop) a
    /// scratch database, e.g. postgres://postgres@127.0.0.1:5432/test.
    #[arg(long, env = "TRACKFLOW_BENCH_POSTGRES_URL", value_name = "URL")]
    pub postgres: Option<String>,
    /// Operations queued for each upstream drain (upstream-drain).
    #[arg(long, default_value_t = 10_000)]
    pub drain_ops: usize,
    /// Concurrent clients of `server-push` (each in its own project); the largest is also
    /// `scale-out`'s.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16])]
    pub push_clients: Vec<usize>,
    /// Event streams open in `listeners`, one user each (nine in ten a member of one writer's
    /// project, the rest of none).
    #[arg(long, default_value_t = 1_000)]
    pub listeners: usize,
    /// Writers in `listeners`, each pushing into a project of its own.
    #[arg(long, default_value_t = 50)]
    pub listener_writers: usize,
    /// Seconds the writers of `listeners` write.
    #[arg(long, default_value_t = 60)]
    pub listener_seconds: u64,
    /// Pause of each writer of `listeners` between its pushes, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub listener_pause_ms: u64,
    /// Mutations pushed before `retention` measures the database.
    #[arg(long, default_value_t = 1_000_000)]
    pub retention_mutations: usize,
    /// Mutations per push of `server-push` and `scale-out`.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100, 500])]
    pub push_batches: Vec<usize>,
    /// Rounds of upstream-drain, each one drain per batch size, in an order that rotates.
    #[arg(long, default_value_t = 3)]
    pub drain_rounds: usize,
    /// Batch sizes upstream-drain compares; the first is the baseline (default: one operation
    /// per request, then the upstream processor's default batch size).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 500])]
    pub drain_batch_sizes: Vec<usize>,
    /// Rows of the user's data on the server (downstream).
    #[arg(long, default_value_t = 100_000)]
    pub downstream_rows: usize,
    /// Rounds of downstream, each a full fetch, an initial sync into a fresh client, and
    /// `--downstream-pulls` incremental pulls into it.
    #[arg(long, default_value_t = 3)]
    pub downstream_rounds: usize,
    /// Pulled rows of the big client database (startup).
    #[arg(long, default_value_t = 1_000_000)]
    pub startup_rows: usize,
    /// Operations queued in the big client database (startup).
    #[arg(long, default_value_t = 10_000)]
    pub startup_queued: usize,
    /// Operations queued for the first upstream pass whose memory is measured (startup).
    #[arg(long, default_value_t = 100_000)]
    pub startup_pass_queued: usize,
    /// Incremental pulls per downstream round.
    #[arg(long, default_value_t = 50)]
    pub downstream_pulls: usize,
    /// Renames timed per mode of propagation (each reaches 9 clients).
    #[arg(long, default_value_t = 30)]
    pub propagation_writes: usize,
    /// The polling baseline's interval (propagation).
    #[arg(long, default_value_t = 1_000)]
    pub poll_interval_ms: u64,
    /// Size of the audio file (audio).
    #[arg(long, default_value_t = 50)]
    pub audio_mib: usize,
    /// Uploads and downloads timed (audio).
    #[arg(long, default_value_t = 3)]
    pub audio_rounds: usize,
}

/// The benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Local create+enqueue latency against a bare one-row Diesel insert transaction.
    LocalWrite,
    /// Sync server push throughput (batches of `--push-batches` from `--push-clients` clients,
    /// each in its own project) against a trivial JSON endpoint on the same server.
    ServerPush,
    /// `--listeners` event streams on one server process while `--listener-writers` writers
    /// push for `--listener-seconds`: every entitled stream poked, none a stranger; push sent to
    /// poke received against the push's own round trip; server memory per stream.
    Listeners,
    /// The server database's size after `--retention-mutations` mutations, without purging and
    /// after a purge of that history, against the VACUUM of the same database.
    Retention,
    /// Push throughput through two `trackflow server` processes sharing one PostgreSQL
    /// database against one, the same clients split between them (needs `--postgres`).
    ScaleOut,
    /// Sync server pull latency and size for 10 changes in a 1,000-row and a 100,000-row
    /// database, against a trivial JSON endpoint on the same server.
    ServerPull,
    /// Upstream drain throughput of `--drain-ops` queued operations to a loopback server,
    /// batched (500 per request) against one operation per request.
    UpstreamDrain,
    /// Downstream: an incremental pull of 10 changes into a client holding `--downstream-rows`
    /// rows and an initial sync of them (rows/s, peak memory), against a full fetch of the
    /// user's data, with the bytes each moved.
    Downstream,
    /// Change propagation from a write on one client to nine others: realtime pokes against
    /// periodic polling.
    Propagation,
    /// Upload and download of a `--audio-mib` file with peak memory, against a copy on disk.
    /// Run it alone (`trackflow-bench audio`) for a peak that is the transfer's own.
    Audio,
    /// Live queries: commit to a subscriber's new result after a local write and a pulled page,
    /// against reading the query directly; a local write with 0, 10 and 1,000 live queries open
    /// on other parents; memory per open live query.
    Live,
    /// A client process started over a database of `--startup-rows` rows and
    /// `--startup-queued` queued operations, to its first list of a project's tracks, against
    /// a small database; memory of the first upstream pass over `--startup-pass-queued`
    /// operations against a short queue.
    Startup,
}

/// Pooled server connections of the benchmarks' servers: the default of `trackflow server`.
const SERVER_CONNECTIONS: u32 = 8;

mod downstream;
pub use downstream::{client as downstream_client, ClientArgs};
mod delay;
pub use delay::{relay as delay_relay, DelayArgs};
mod listeners;
mod live;
mod startup;
pub use startup::{open as open_client, OpenArgs};
mod realtime;
mod retention;
mod server;
mod upstream;

/// Latency statistics of one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Timed operations.
    pub samples: usize,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 95th percentile latency, microseconds.
    pub p95_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: f64,
    /// Slowest operation, microseconds.
    pub max_us: f64,
    /// Operations per second: for sequential measurements, calls per second of summed latency;
    /// for concurrent ones (server push), operations per second of wall-clock time.
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

/// Runs the chosen scenarios and prints their reports. Measurements run inside a spawned
/// task on a runtime worker, where an application's code runs.
pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let reports = tokio::spawn(run_scenarios(args)).await??;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print_report(report);
        }
    }
    Ok(())
}

async fn run_scenarios(args: BenchArgs) -> anyhow::Result<Vec<Report>> {
    // A fresh directory per run, inside --dir if given, so no run reuses another's files.
    let temp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("creating a directory for the benchmark databases")?;
    let dir = temp.path().to_path_buf();
    let scenarios =
        if args.scenarios.is_empty() { Scenario::value_variants().to_vec() } else { args.scenarios.clone() };
    let mut reports = Vec::new();
    for scenario in scenarios {
        reports.push(match scenario {
            Scenario::LocalWrite => local_write(&dir, &args).await?,
            Scenario::ServerPush => server::push(&dir, &args).await?,
            Scenario::ServerPull => server::pull(&dir, &args).await?,
            Scenario::ScaleOut => server::scale_out(&dir, &args).await?,
            Scenario::Listeners => listeners::listeners(&dir, &args).await?,
            Scenario::Retention => retention::retention(&dir, &args).await?,
            Scenario::UpstreamDrain => upstream::drain_upstream(&dir, &args).await?,
            Scenario::Downstream => downstream::downstream(&dir, &args).await?,
            Scenario::Propagation => realtime::propagation(&dir, &args).await?,
            Scenario::Audio => realtime::audio(&dir, &args).await?,
            Scenario::Live => live::live(&dir, &args).await?,
            Scenario::Startup => startup::startup(&dir, &args).await?,
        });
    }
    Ok(reports)
}

fn print_report(report: &Report) {
    println!("scenario: {}", report.scenario);
    println!(
        "  {:<50} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "measurement", "n", "p50 µs", "p95 µs", "p99 µs", "p99.9 µs", "max µs", "ops/s", "ratio"
    );
    for m in &report.measurements {
        println!(
            "  {:<50} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>7.2}",
            m.name, m.samples, m.p50_us, m.p95_us, m.p99_us, m.p999_us, m.max_us, m.per_second, m.ratio_p50
        );
    }
}

/// One timed operation of a scenario; the argument is the iteration number.
type Op<'a> =
    Box<dyn FnMut(usize) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> + Send + 'a>;

/// Times every operation `args.iterations` times after `args.warmup` untimed calls. The
/// operations take turns in blocks of `args.block` calls, so slow drifts in background noise
/// (other processes, CPU frequency) fall on baseline and subject alike and the ratios stay
/// honest, while each block still runs with warm caches as a real burst of writes would.
async fn measure_interleaved(args: &BenchArgs, ops: Vec<(&str, Op<'_>)>) -> anyhow::Result<Vec<Measurement>> {
    let (names, mut ops): (Vec<&str>, Vec<Op<'_>>) = ops.into_iter().unzip();
    for op in &mut ops {
        for i in 0..args.warmup {
            op(i).await?;
        }
    }
    let block = args.block.max(1);
    let mut samples = vec![Vec::with_capacity(args.iterations); ops.len()];
    let mut done = 0;
    while done < args.iterations {
        let this_block = block.min(args.iterations - done);
        for (k, op) in ops.iter_mut().enumerate() {
            for i in done..done + this_block {
                let started = Instant::now();
                op(args.warmup + i).await?;
                samples[k].push(started.elapsed());
            }
        }
        done += this_block;
    }
    Ok(names.into_iter().zip(samples).map(|(name, s)| summarize(name, s)).collect())
}

/// Percentiles by nearest rank; throughput is sequential: calls per second of summed latency.
pub(crate) fn summarize(name: &str, mut samples: Vec<Duration>) -> Measurement {
    let total: Duration = samples.iter().sum();
    samples.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e6
    };
    Measurement {
        name: name.to_owned(),
        samples: samples.len(),
        p50_us: percentile(0.50),
        p95_us: percentile(0.95),
        p99_us: percentile(0.99),
        p999_us: percentile(0.999),
        max_us: percentile(1.0),
        per_second: samples.len() as f64 / total.as_secs_f64().max(f64::EPSILON),
        ratio_p50: 1.0,
    }
}

fn with_ratios(scenario: &str, mut measurements: Vec<Measurement>) -> Report {
    let baseline = measurements.first().map_or(1.0, |m| m.p50_us).max(f64::EPSILON);
    for m in &mut measurements {
        m.ratio_p50 = m.p50_us / baseline;
    }
    Report { scenario: scenario.to_owned(), measurements }
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

async fn open_store(path: &Path, offload: Offload) -> anyhow::Result<LocalStore> {
    let options = LocalStoreOptions { offload, ..LocalStoreOptions::new(path) };
    Ok(LocalStore::open(options, Arc::new(SystemClock)).await?)
}

/// A bare one-row insert through the store's blocking helper: what the offload costs alone.
fn bare_via_store(store: LocalStore) -> Op<'static> {
    Box::new(move |i| {
        let store = store.clone();
        Box::pin(async move {
            store.with_connection(move |conn| Ok(insert_bench_row(conn, i)?)).await?;
            Ok(())
        })
    })
}

fn create_project(projects: Arc<SqliteRepository<Project>>, owner: UserId) -> Op<'static> {
    Box::new(move |i| {
        let projects = Arc::clone(&projects);
        Box::pin(async move {
            let project = Project::new(owner, &format!("Project {i}"), None, Timestamp(i as i64))?;
            projects.create(project).await?;
            Ok(())
        })
    })
}

/// A track created (and queued) in `parent` per call.
pub(crate) fn create_track(
    tracks: Arc<SqliteRepository<AudioTrack>>,
    parent: ProjectId,
    owner: UserId,
) -> Op<'static> {
    Box::new(move |i| {
        let tracks = Arc::clone(&tracks);
        Box::pin(async move {
            let track =
                AudioTrack::new(parent, owner, &format!("Take {i}"), 180_000, None, Timestamp(i as i64))?;
            tracks.create(track).await?;
            Ok(())
        })
    })
}

/// Local create+enqueue against a bare one-row Diesel insert transaction. Every measurement
/// has its own fresh file database with the same connection settings.
async fn local_write(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    // Baseline: a bare Diesel insert transaction of one row, on the calling thread.
    let mut conn = SqliteConnection::establish(&dir.join("bench-baseline.db").to_string_lossy())?;
    configure_connection(&mut conn, Duration::from_secs(5))?;
    conn.batch_execute(BENCH_TABLE)?;
    let conn = std::sync::Mutex::new(conn);
    let bare: Op<'static> = Box::new(move |i| {
        let result = match conn.lock() {
            Ok(mut conn) => insert_bench_row(&mut conn, i).map(drop).map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!("baseline connection poisoned")),
        };
        Box::pin(std::future::ready(result))
    });

    let mut hops = Vec::new();
    for (offload, file) in
        [(Offload::Auto, "bench-hop-auto.db"), (Offload::SpawnBlocking, "bench-hop-spawn.db")]
    {
        let store = open_store(&dir.join(file), offload).await?;
        store.with_connection(|conn| Ok(conn.batch_execute(BENCH_TABLE)?)).await?;
        hops.push(bare_via_store(store));
    }
    let owner = UserId::new();
    let auto = open_store(&dir.join("bench-local-auto.db"), Offload::Auto).await?;
    let spawn = open_store(&dir.join("bench-local-spawn.db"), Offload::SpawnBlocking).await?;
    let projects = Arc::new(SqliteRepository::<Project>::new(auto));
    let child_store = open_store(&dir.join("bench-local-child.db"), Offload::Auto).await?;
    let parent = SqliteRepository::<Project>::new(child_store.clone())
        .create(Project::new(owner, "Parent", None, Timestamp(0))?)
        .await?
        .id();
    let tracks = Arc::new(SqliteRepository::<AudioTrack>::new(child_store));
    let track = create_track(tracks, parent, owner);
    let [hop_auto, hop_spawn]: [Op<'_>; 2] =
        hops.try_into().map_err(|_| anyhow::anyhow!("two offload modes"))?;

    let measurements = measure_interleaved(
        args,
        vec![
            ("bare insert txn (direct, baseline)", bare),
            ("bare insert txn via store (auto offload)", hop_auto),
            ("bare insert txn via store (spawn_blocking)", hop_spawn),
            ("project create + enqueue (auto offload)", create_project(projects, owner)),
            (
                "project create + enqueue (spawn_blocking)",
                create_project(Arc::new(SqliteRepository::<Project>::new(spawn)), owner),
            ),
            ("track create + enqueue, parent check (auto)", track),
        ],
    )
    .await?;
    Ok(with_ratios("local-write", measurements))
}

/// `entity` as a pull brings it, at version 1.
pub(crate) fn pulled<E: SyncEntity>(entity: &E) -> EntityState {
    let fields = entity.fields();
    let at = Hlc { wall_ms: 1, counter: 0, node: NodeId::from_uuid(uuid::Uuid::from_u128(7)) };
    EntityState {
        entity_type: E::ENTITY_TYPE,
        entity_id: entity.entity_id(),
        version: 1,
        deleted: false,
        field_hlc: fields.keys().map(|k| (k.clone(), at)).collect(),
        fields,
        deleted_with: None,
    }
}
