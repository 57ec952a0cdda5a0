//! Two scenarios of the realtime and audio paths, each with its baseline in the same run.
//!
//! - `propagation`: one writer and nine other members of a project, each a full client
//!   ([`SyncEngine`]) on its own database, against one loopback server. The writer renames
//!   the project; the time until each of the nine holds the new name is one sample. Realtime
//!   (event-stream pokes, no periodic pulls) against periodic polling every
//!   `--poll-interval-ms` (no event stream), the original design's way.
//! - `audio`: a `--audio-mib` file uploaded from one client's cache to the server's blob store
//!   and downloaded on demand by another device, against copying the same file on the same
//!   disk; with the process's peak resident memory during the upload and during the download
//!   (client and server share the process, so the figure covers both ends).

use super::{
    downstream::{memory, mib, reset_peak_memory},
    summarize,
    upstream::sign_up,
    BenchArgs, Measurement, Report,
};
use anyhow::{ensure, Context};
use shaku::HasComponent;
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use trackflow_client::engine::{EngineOptions, SyncEngine};
use trackflow_client::wiring::repository;
use trackflow_domain::{CollaboratorRole, SyncEntity, Timestamp, UserId};
use trackflow_executors::UpstreamOptions;
use trackflow_music::{AudioTrack, Project, ProjectCollaborator, ProjectPatch};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};
use trackflow_usecases::{AudioFiles, ProbeOptions, SyncDataOptions};

/// The members who receive each write.
const RECEIVERS: usize = 9;

async fn start_server(dir: &Path, max_blob_bytes: u64) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(dir)?;
    let url = dir.join("server.db").to_string_lossy().into_owned();
    let store = tokio::task::spawn_blocking(move || DieselServerStore::open(&url, super::SERVER_CONNECTIONS))
        .await??;
    let blobs = FsBlobStorage::open(dir.join("server.blobs"))?;
    let config = ServerConfig { max_blob_bytes, ..ServerConfig::default() };
    let state = AppState::new(Arc::new(store), config).with_blobs(Arc::new(blobs));
    Ok(RunningServer::start("127.0.0.1:0".parse()?, state).await?)
}

/// A client signed in to `server` as `user`, not started.
async fn client(
    dir: &Path,
    server: &str,
    user: UserId,
    token: &str,
    options: EngineOptions,
) -> anyhow::Result<SyncEngine> {
    let engine = SyncEngine::open(dir, options).await?;
    engine.sign_in(user, server, token).await?;
    Ok(engine)
}

/// Realtime: pokes only. Polling: a forced-interval pull every `poll`, no event stream.
fn options(realtime: bool, poll: Duration) -> EngineOptions {
    let hour = Duration::from_secs(3_600);
    EngineOptions {
        upstream: UpstreamOptions { idle_poll: hour, ..UpstreamOptions::default() },
        downstream: SyncDataOptions { min_interval: Duration::ZERO, ..SyncDataOptions::default() },
        probe: ProbeOptions { first: Duration::from_millis(50), cap: Duration::from_secs(1) },
        periodic: (!realtime).then_some(poll),
        realtime,
        ..EngineOptions::default()
    }
}

/// Waits until `engine` holds `project` named `name`, re-checking after each of its runs.
async fn arrival(engine: &SyncEngine, project: &Project, name: &str) -> anyhow::Result<()> {
    let projects = repository::<Project>(&engine.module);
    let mut runs = engine.coordinator().runs();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if projects.get(project.id()).await?.is_some_and(|p| p.name() == name) {
                return anyhow::Ok(());
            }
            runs.changed().await.context("the coordinator stopped")?;
        }
    })
    .await
    .context("a change did not arrive within 60 s")?
}

/// One mode of `propagation`: `writes` renames, each timed to its arrival on every receiver.
async fn propagate(
    dir: &Path,
    realtime: bool,
    poll: Duration,
    writes: usize,
) -> anyhow::Result<Vec<Duration>> {
    let server = start_server(&dir.join("server"), 1 << 20).await?;
    let url = server.url();
    let mut engines = Vec::new();
    for i in 0..=RECEIVERS {
        let user = UserId::new();
        let token = sign_up(&url, user).await?;
        let engine =
            client(&dir.join(format!("client-{i}")), &url, user, &token, options(realtime, poll)).await?;
        engines.push((engine, user));
    }
    let (writer, owner) = (&engines[0].0, engines[0].1);
    let projects = repository::<Project>(&writer.module);
    let members = repository::<ProjectCollaborator>(&writer.module);
    let project = projects.create(Project::new(owner, "v0", None, Timestamp(1))?).await?;
    for (_, member) in &engines[1..] {
        members
            .create(ProjectCollaborator::new(project.id(), *member, CollaboratorRole::Viewer, Timestamp(1))?)
            .await?;
    }
    writer.sync_now().await;
    for (engine, _) in &mut engines {
        engine.start().await;
    }
    for (engine, _) in &engines[1..] {
        arrival(engine, &project, "v0").await?;
        if let Some(listener) = engine.realtime() {
            let mut connected = listener.connected();
            tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c)).await??;
        }
    }
    let mut samples = Vec::with_capacity(writes * RECEIVERS);
    for i in 1..=writes {
        // A write comes at any moment of the polling cycle, not just after a poll: without the
        // pause, each write would follow the previous arrival, i.e. a poll, and wait a whole
        // interval.
        tokio::time::sleep(poll.mul_f64(phase(i))).await;
        let name = format!("v{i}");
        let started = Instant::now();
        projects
            .update(project.id(), ProjectPatch { name: Some(name.clone()), ..Default::default() })
            .await?;
        let waits = engines[1..].iter().map(|(engine, _)| {
            let (name, project) = (name.clone(), project.clone());
            async move {
                arrival(engine, &project, &name).await?;
                anyhow::Ok(started.elapsed())
            }
        });
        for latency in futures_util::future::join_all(waits).await {
            samples.push(latency?);
        }
    }
    for (engine, _) in engines {
        engine.shutdown().await;
    }
    server.shutdown().await?;
    Ok(samples)
}

/// `trackflow-bench propagation`.
pub(super) async fn propagation(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let poll = Duration::from_millis(args.poll_interval_ms);
    let mut measurements = Vec::new();
    let polling = propagate(&dir.join("polling"), false, poll, args.propagation_writes).await?;
    measurements.push(summary(
        &format!("polling every {} ms, write to 9 clients [arrivals/s]", args.poll_interval_ms),
        polling,
    ));
    let realtime = propagate(&dir.join("realtime"), true, poll, args.propagation_writes).await?;
    measurements.push(summary("realtime pokes, write to 9 clients [arrivals/s]", realtime));
    Ok(super::with_ratios("propagation", measurements))
}

/// A fraction in [0, 1) that spreads evenly as `i` grows (the golden ratio's fractional part):
/// the same phases in both modes, without a random source.
fn phase(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_749_895).fract()
}

/// [`summarize`] with the 95th percentile in the name: it is the target's figure.
fn summary(name: &str, samples: Vec<Duration>) -> Measurement {
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    let p95 = sorted.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    summarize(&format!("{name} (p95 {p95:.1} ms)"), samples)
}

/// `trackflow-bench audio`.
pub(super) async fn audio(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let size = args.audio_mib * 1024 * 1024;
    let server = start_server(&dir.join("server"), size as u64 + 1).await?;
    let url = server.url();
    let user = UserId::new();
    let token = sign_up(&url, user).await?;
    let source = dir.join("take.wav");
    trackflow::demo::write_recording(&source, size)?;
    let mut copies = Vec::new();
    let mut uploads = Vec::new();
    let mut downloads = Vec::new();
    let mut upload_peaks = Vec::new();
    let mut download_peaks = Vec::new();
    for round in 0..args.audio_rounds {
        // Baseline: the same bytes copied on the same disk.
        let copy = dir.join(format!("copy-{round}.wav"));
        let started = Instant::now();
        std::fs::copy(&source, &copy)?;
        copies.push(started.elapsed());
        std::fs::remove_file(&copy)?;

        // A fresh file per round (the server would skip a blob it holds): one byte differs.
        let file = dir.join(format!("take-{round}.wav"));
        std::fs::copy(&source, &file)?;
        stamp(&file, round)?;
        let a = client(
            &dir.join(format!("a-{round}")),
            &url,
            user,
            &token,
            options(false, Duration::from_secs(3_600)),
        )
        .await?;
        let b = client(
            &dir.join(format!("b-{round}")),
            &url,
            user,
            &token,
            options(false, Duration::from_secs(3_600)),
        )
        .await?;
        let files: &AudioFiles = a.module.resolve_ref();
        let blob = files.import(file.clone()).await?;
        let projects = repository::<Project>(&a.module);
        let project = projects.create(Project::new(user, "Audio", None, Timestamp(1))?).await?;
        let tracks = repository::<AudioTrack>(&a.module);
        let track = tracks
            .create(AudioTrack::new(
                project.id(),
                user,
                "Take",
                60_000,
                Some(blob.hash.as_str()),
                Timestamp(1),
            )?)
            .await?;

        // The upload as the upstream processor makes it (streamed from the cache, before the
        // track's push), timed with the sync that carries it.
        let measured = reset_peak_memory();
        let started = Instant::now();
        let state = a.sync_now().await;
        uploads.push(started.elapsed());
        if let (true, Some((_, peak))) = (measured, memory()) {
            upload_peaks.push(peak);
        }
        ensure!(state.pending == 0 && state.failed == 0, "the track did not sync: {state:?}");

        b.sync_now().await;
        let fetch: &AudioFiles = b.module.resolve_ref();
        let measured = reset_peak_memory();
        let started = Instant::now();
        let fetched = fetch.fetch(track.entity_ref()).await?;
        downloads.push(started.elapsed());
        if let (true, Some((_, peak))) = (measured, memory()) {
            download_peaks.push(peak);
        }
        ensure!(std::fs::metadata(&fetched)?.len() == size as u64, "the download is incomplete");
        a.shutdown().await;
        b.shutdown().await;
        std::fs::remove_file(&file)?;
    }
    server.shutdown().await?;
    let mib_s = |d: &Duration| args.audio_mib as f64 / d.as_secs_f64();
    let median_rate = |samples: &[Duration]| {
        let mut rates: Vec<f64> = samples.iter().map(mib_s).collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    };
    let peak = |peaks: &[u64]| {
        peaks.iter().copied().max().map_or("n/a".to_owned(), |p| format!("{:.1} MiB", mib(p)))
    };
    let measurements = vec![
        summarize(
            &format!("copy {} MiB on disk ({:.0} MiB/s) [files/s]", args.audio_mib, median_rate(&copies)),
            copies,
        ),
        summarize(
            &format!(
                "upload {} MiB ({:.0} MiB/s, peak RSS {}) [files/s]",
                args.audio_mib,
                median_rate(&uploads),
                peak(&upload_peaks)
            ),
            uploads,
        ),
        summarize(
            &format!(
                "download {} MiB ({:.0} MiB/s, peak RSS {}) [files/s]",
                args.audio_mib,
                median_rate(&downloads),
                peak(&download_peaks)
            ),
            downloads,
        ),
    ];
    Ok(super::with_ratios("audio", measurements))
}

/// Makes `path`'s first byte depend on `round`, so every round uploads a new blob.
fn stamp(path: &Path, round: usize) -> anyhow::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&[round as u8])?;
    Ok(())
}
