//! `live`: live queries and the change feed (issue 20). How long a subscriber waits for its new
//! result after a local write and after a pulled page, against reading the same query directly
//! at that moment; what open live queries on other parents add to a local write; and the memory
//! one open live query takes.

use super::{
    create_track, downstream::memory, measure_interleaved, open_store, pulled, summarize, BenchArgs,
    Measurement, Op, Report,
};
use std::{path::Path, sync::Arc, time::Instant};
use tokio::sync::mpsc;
use trackflow_domain::{
    ports::{ApplyPlan, ConflictPolicies, DownstreamRepository, Repository},
    protocol::EntityState,
    sync::LiveQuery,
    EntityType, SyncEntity, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project, ProjectPatch};
use trackflow_store::{Offload, SqliteDownstreamRepository, SqliteRepository};

/// Live queries opened to measure their memory.
const MEMORY_QUERIES: usize = 10_000;

/// Rows of a pulled page.
const PAGE_ROWS: usize = 500;

/// Pulled pages timed (each a new project and its tracks).
const PAGES: usize = 40;

pub(super) async fn live(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let owner = UserId::new();
    let mut measurements = write_cost(dir, args, owner).await?;
    measurements.extend(local_write_latency(dir, args, owner).await?);
    measurements.extend(pulled_page_latency(dir, owner).await?);
    measurements.push(memory_per_query(dir, owner).await?);
    Ok(Report { scenario: "live".into(), measurements })
}

/// Keeps `live` waiting for new results, as a UI would, until its store is gone.
fn watch<E: SyncEntity>(mut live: Box<dyn trackflow_domain::ports::LiveResults<E>>) {
    tokio::spawn(async move { while live.next().await.is_some() {} });
}

/// A track created in one project, with 0, 10 and 1,000 live queries open on the tracks of
/// other projects (each on its own store), interleaved; the first is the baseline.
async fn write_cost(dir: &Path, args: &BenchArgs, owner: UserId) -> anyhow::Result<Vec<Measurement>> {
    let mut ops: Vec<(&str, Op<'static>)> = Vec::new();
    for (open, name) in [
        (0, "track create + enqueue, no live query open (baseline)"),
        (10, "track create + enqueue, 10 live queries on other parents"),
        (1_000, "track create + enqueue, 1,000 live queries on other parents"),
    ] {
        let store = open_store(&dir.join(format!("live-cost-{open}.db")), Offload::Auto).await?;
        let projects = SqliteRepository::<Project>::new(store.clone());
        let tracks = Arc::new(SqliteRepository::<AudioTrack>::new(store));
        let parent = projects.create(Project::new(owner, "Written", None, Timestamp(0))?).await?.id();
        for i in 0..open {
            let other =
                projects.create(Project::new(owner, &format!("Watched {i}"), None, Timestamp(0))?).await?;
            let mut live = tracks.subscribe(LiveQuery::ByParent(other.id().as_uuid())).await?;
            live.next().await.transpose()?;
            watch(live);
        }
        ops.push((name, create_track(tracks, parent, owner)));
    }
    let mut measurements = measure_interleaved(args, ops).await?;
    let baseline = measurements.first().map_or(1.0, |m| m.p50_us).max(f64::EPSILON);
    for m in &mut measurements {
        m.ratio_p50 = m.p50_us / baseline;
    }
    Ok(measurements)
}

/// A project renamed, then either read directly (the baseline) or awaited through a live query
/// of it. Both are timed from the start of the write: the live query's result is handed out by
/// the writer's commit itself, often before the write returns to its caller, so "from the
/// write's return" would read zero.
async fn local_write_latency(
    dir: &Path,
    args: &BenchArgs,
    owner: UserId,
) -> anyhow::Result<Vec<Measurement>> {
    let store = open_store(&dir.join("live-latency.db"), Offload::Auto).await?;
    let projects = Arc::new(SqliteRepository::<Project>::new(store));
    let project = projects.create(Project::new(owner, "Watched", None, Timestamp(0))?).await?.id();
    let mut results = forward(projects.subscribe(LiveQuery::Get(project.as_uuid())).await?).await?;
    let (mut direct, mut live) = (Vec::new(), Vec::new());
    let warmup = args.warmup.min(500);
    for i in 0..warmup + args.iterations.min(5_000) {
        let rename = |name: String| ProjectPatch { name: Some(name), ..Default::default() };
        let started = Instant::now();
        projects.update(project, rename(format!("Name {i}"))).await?;
        let at = results.recv().await.ok_or_else(|| anyhow::anyhow!("the live query ended"))?;
        let through_live = at.saturating_duration_since(started);
        // The same write, then the query read directly.
        let started = Instant::now();
        projects.update(project, rename(format!("Direct {i}"))).await?;
        projects.get(project).await?;
        let read_directly = started.elapsed();
        // The live query's result for that write, not timed.
        results.recv().await.ok_or_else(|| anyhow::anyhow!("the live query ended"))?;
        if i >= warmup {
            live.push(through_live);
            direct.push(read_directly);
        }
    }
    let direct = summarize("local write, then the project read directly (baseline)", direct);
    let mut live = summarize("local write, then the live query's new result", live);
    live.ratio_p50 = live.p50_us / direct.p50_us.max(f64::EPSILON);
    Ok(vec![direct, live])
}

/// A page of a new project and its [`PAGE_ROWS`] tracks pulled into the store, then either
/// read directly or awaited through a live query of the project's tracks.
async fn pulled_page_latency(dir: &Path, owner: UserId) -> anyhow::Result<Vec<Measurement>> {
    let store = open_store(&dir.join("live-pull.db"), Offload::Auto).await?;
    let downstream = SqliteDownstreamRepository::new(store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(store);
    let plan = ApplyPlan::new(EntityType::all().to_vec(), ConflictPolicies::default())?;
    let (mut direct, mut live) = (Vec::new(), Vec::new());
    for i in 0..PAGES * 2 {
        let project = Project::new(owner, &format!("Pulled {i}"), None, Timestamp(0))?;
        let page: Vec<EntityState> = std::iter::once(pulled(&project))
            .chain((0..PAGE_ROWS).map(|t| {
                let track =
                    AudioTrack::new(project.id(), owner, &format!("Take {t}"), 1_000, None, Timestamp(0));
                track.map(|track| pulled(&track)).expect("a valid track")
            }))
            .collect();
        let parent = LiveQuery::ByParent(project.id().as_uuid());
        if i % 2 == 0 {
            let mut results = forward(tracks.subscribe(parent).await?).await?;
            downstream.apply_page("all", page, Vec::new(), format!("c{i}"), &plan).await?;
            let written = Instant::now();
            let at = results.recv().await.ok_or_else(|| anyhow::anyhow!("the live query ended"))?;
            live.push(at.saturating_duration_since(written));
        } else {
            downstream.apply_page("all", page, Vec::new(), format!("c{i}"), &plan).await?;
            let started = Instant::now();
            let read = tracks.list_by_parent(project.id().as_uuid()).await?;
            direct.push(started.elapsed());
            anyhow::ensure!(read.len() == PAGE_ROWS, "the page's tracks are stored");
        }
    }
    let direct = summarize("pulled page of 500 tracks: read directly after it (baseline)", direct);
    let mut live = summarize("pulled page of 500 tracks: commit to the live query's new result", live);
    live.ratio_p50 = live.p50_us / direct.p50_us.max(f64::EPSILON);
    Ok(vec![direct, live])
}

/// The resident memory [`MEMORY_QUERIES`] open live queries (each with a task waiting on it)
/// add, per query.
async fn memory_per_query(dir: &Path, owner: UserId) -> anyhow::Result<Measurement> {
    let store = open_store(&dir.join("live-memory.db"), Offload::Auto).await?;
    let projects = SqliteRepository::<Project>::new(store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(store);
    let parent = projects.create(Project::new(owner, "Watched", None, Timestamp(0))?).await?.id().as_uuid();
    let before = memory().map_or(0, |(now, _)| now);
    for _ in 0..MEMORY_QUERIES {
        let mut live = tracks.subscribe(LiveQuery::ByParent(parent)).await?;
        live.next().await.transpose()?;
        watch(live);
    }
    let after = memory().map_or(0, |(now, _)| now);
    let per_query = after.saturating_sub(before) / MEMORY_QUERIES as u64;
    let name = format!(
        "memory per open live query with a task waiting on it: {per_query} bytes ({MEMORY_QUERIES} open)"
    );
    let mut measurement = summarize(&name, Vec::new());
    measurement.ratio_p50 = 0.0;
    Ok(measurement)
}

/// A live query's results as the instants they arrived (the first result is dropped).
async fn forward<E: SyncEntity>(
    mut live: Box<dyn trackflow_domain::ports::LiveResults<E>>,
) -> anyhow::Result<mpsc::UnboundedReceiver<Instant>> {
    live.next().await.transpose()?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(result) = live.next().await {
            if result.is_err() || sender.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}
