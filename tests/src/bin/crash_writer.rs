//! Writes to a local store in a loop until killed, printing one line per acknowledged write
//! (see `trackflow_tests::Ack`). Used by the crash test.
//!
//! Usage: `trackflow-crash-writer <database file> <seed>`

use anyhow::Context;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{io::Write, sync::Arc};
use trackflow_domain::{ports::Repository, Timestamp, UserId};
use trackflow_music::{AudioTrack, Project, ProjectId, ProjectPatch};
use trackflow_store::{LocalStore, LocalStoreOptions, SqliteRepository, SystemClock};
use trackflow_tests::Ack;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().context("usage: trackflow-crash-writer <database file> <seed>")?;
    let seed: u64 = args.next().context("missing seed")?.parse().context("seed must be a number")?;
    let mut rng = StdRng::seed_from_u64(seed);
    trackflow_music::install()?;

    let store = LocalStore::open(LocalStoreOptions::new(path), Arc::new(SystemClock)).await?;
    let projects = SqliteRepository::<Project>::new(store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(store);
    let owner = UserId::new();
    let mut mine: Vec<ProjectId> = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for i in 0u64.. {
        let now = Timestamp(i64::try_from(i).unwrap_or(i64::MAX));
        let ack = match (mine.is_empty(), rng.random_range(0..3)) {
            (true, _) | (false, 0) => {
                let project =
                    projects.create(Project::new(owner, &format!("Project {i}"), None, now)?).await?;
                mine.push(project.id());
                Ack::Project(project.id().as_uuid())
            }
            (false, 1) => {
                let parent = mine[rng.random_range(0..mine.len())];
                let track = AudioTrack::new(parent, owner, &format!("Take {i}"), 60_000, None, now)?;
                Ack::Track(tracks.create(track).await?.id().as_uuid())
            }
            (false, _) => {
                let target = mine[rng.random_range(0..mine.len())];
                let patch = ProjectPatch { name: Some(format!("Renamed {i}")), ..Default::default() };
                projects.update(target, patch).await?;
                Ack::Update(target.as_uuid())
            }
        };
        // The line goes out only after the write returned: it is an acknowledgement.
        writeln!(stdout, "{}", ack.to_line())?;
        stdout.flush()?;
    }
    Ok(())
}
