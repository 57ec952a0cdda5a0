//! Growth with and without purging: `--retention-mutations` mutations into a server store (two
//! in five track creates, two in five renames, one in five deletes, in pushes of 500, 400
//! tracks to a project), then the database's size; then a purge of all that history
//! (`Retention::Versions(0)`: tombstones lose their fields, dedupe records go) and the size
//! again. Sizes are taken after `DieselServerStore::vacuum` (SQLite: VACUUM and a WAL
//! checkpoint; PostgreSQL: VACUUM FULL), so they are what the data needs, not what the file
//! happens to hold. The timed part is the
//! purge; its baseline is the VACUUM of the same database before it.

use super::{
    server::{track, Writer},
    summarize, BenchArgs, Report,
};
use anyhow::Context;
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use trackflow_domain::{
    ports::{Retention, ServerStore},
    protocol::Mutation,
    OperationKind, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project};
use trackflow_server_store::{DieselServerStore, ScratchDatabase};

/// Mutations per push.
const BATCH: usize = 500;
/// Tracks per project. (A delete looks for the deleted track's children among its project's
/// rows, so much larger projects make the deletes, not the purge, the slow part.)
const TRACKS_PER_PROJECT: usize = 400;

pub(super) async fn retention(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut databases =
        vec![("sqlite", dir.join("retention-server.db").to_string_lossy().into_owned(), None)];
    if let Some(admin) = &args.postgres {
        let scratch = ScratchDatabase::create(admin, "trackflow_bench").context("a scratch database")?;
        databases.push(("postgres", scratch.url().to_owned(), Some(scratch)));
    }
    let mut measurements = Vec::new();
    for (label, url, _scratch) in databases {
        let opened = url.clone();
        let store =
            Arc::new(tokio::task::spawn_blocking(move || DieselServerStore::open(&opened, 4)).await??);
        let pushed = write(&store, args.retention_mutations).await?;
        let (vacuum, before) = compact(&store).await?;
        let started = Instant::now();
        let purged = store.purge(Timestamp(0), Retention::Versions(0)).await?;
        let took = started.elapsed();
        let (_, after) = compact(&store).await?;
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        measurements.push(summarize(&format!("{label} VACUUM before the purge (baseline)"), vec![vacuum]));
        let mut m = summarize(
            &format!(
                "{label} purge: {pushed} mutations, {:.1} MiB without purging, {:.1} MiB after ({:.2}); \
                 {} tombstones emptied, {} records dropped",
                mib(before),
                mib(after),
                after as f64 / before as f64,
                purged.tombstones,
                purged.records
            ),
            vec![took],
        );
        m.ratio_p50 = took.as_secs_f64() / vacuum.as_secs_f64();
        measurements.push(m);
    }
    Ok(Report { scenario: "retention".into(), measurements })
}

/// Pushes `total` mutations: creates, then renames, then deletes of half the tracks. Returns
/// how many it pushed.
async fn write(store: &Arc<DieselServerStore>, total: usize) -> anyhow::Result<usize> {
    let owner = UserId::new();
    let mut writer = Writer::new();
    let creates = total * 2 / 5;
    let projects: Vec<Project> = (0..creates.div_ceil(TRACKS_PER_PROJECT).max(1))
        .map(|n| Project::new(owner, &format!("P{n}"), None, Timestamp(1_800_000_000_000)))
        .collect::<Result<_, _>>()?;
    for chunk in projects.chunks(BATCH) {
        let request =
            writer.request(|w| chunk.iter().map(|p| w.mutation(OperationKind::Create, p)).collect());
        store.push(owner, request).await?;
    }
    let tracks: Vec<AudioTrack> =
        (0..creates).map(|i| track(projects[i / TRACKS_PER_PROJECT].id(), owner, i)).collect();
    let mut pushed = projects.len();
    let phases: [(OperationKind, &[AudioTrack]); 3] = [
        (OperationKind::Create, &tracks),
        (OperationKind::Update, &tracks),
        (OperationKind::Delete, &tracks[..total.saturating_sub(2 * creates).min(creates)]),
    ];
    for (kind, of) in phases {
        for chunk in of.chunks(BATCH) {
            let request =
                writer.request(|w| chunk.iter().map(|t| w.mutation(kind, t)).collect::<Vec<Mutation>>());
            store.push(owner, request).await?;
            pushed += chunk.len();
        }
    }
    Ok(pushed)
}

/// VACUUMs the store's database; returns how long that took and its size after, bytes.
async fn compact(store: &DieselServerStore) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let size = store.vacuum().await?;
    Ok((started.elapsed(), size))
}
