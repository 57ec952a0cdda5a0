//! Convergence, as a property: three to five devices of one user make random creates, updates
//! and deletes while offline and sync in a random order; afterwards every device holds exactly
//! what the server holds, and no acknowledged edit of a field that nobody else touched is lost.
//!
//! Cases: `TRACKFLOW_CONVERGENCE_CASES` (64 by default, what CI runs). The seed is printed at the
//! start; `TRACKFLOW_PROPTEST_SEED=<seed>` replays a run.

use crate::upstream::{Client, Server};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner},
};
use std::{collections::BTreeMap, io::Write as _};
use trackflow_domain::{ports::Repository, Timestamp, UserId};
use trackflow_music::{AudioTrack, AudioTrackPatch, Project, ProjectId, ProjectPatch};
use uuid::Uuid;

const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// What a device does.
#[derive(Debug, Clone)]
enum Action {
    /// Adds a track named `Track {0}`.
    CreateTrack(u8),
    /// Renames the `pick`-th visible track (modulo how many there are).
    RenameTrack { pick: usize, name: u8 },
    /// Deletes the `pick`-th visible track.
    DeleteTrack { pick: usize },
    /// Renames the project.
    RenameProject(u8),
    /// Sets the project's description.
    DescribeProject(u8),
    /// Pushes what it queued and pulls what changed.
    Sync,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => any::<u8>().prop_map(Action::CreateTrack),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(pick, name)| Action::RenameTrack { pick, name }),
        1 => any::<usize>().prop_map(|pick| Action::DeleteTrack { pick }),
        2 => any::<u8>().prop_map(Action::RenameProject),
        2 => any::<u8>().prop_map(Action::DescribeProject),
        2 => Just(Action::Sync),
    ]
}

/// A run: how many devices, and who does what, in order.
fn case() -> impl Strategy<Value = (usize, Vec<(usize, Action)>)> {
    (3_usize..=5)
        .prop_flat_map(|devices| (Just(devices), prop::collection::vec((0..devices, action()), 1..30)))
}

/// What a device shows: the project's name and description, and each visible track's name.
type View = (String, Option<String>, BTreeMap<Uuid, String>);

async fn view(client: &Client, project: ProjectId) -> View {
    let held = client.projects.get(project).await.expect("get").expect("the project is never deleted");
    let tracks = client.tracks.list_by_parent(project.into()).await.expect("tracks");
    (
        held.name().to_owned(),
        held.description().map(str::to_owned),
        tracks.iter().map(|t| (t.id().as_uuid(), t.name().to_owned())).collect(),
    )
}

/// The fields each device wrote, with the value it wrote last.
#[derive(Default)]
struct Writes(BTreeMap<(Uuid, &'static str), BTreeMap<usize, Option<String>>>);

impl Writes {
    fn record(&mut self, entity: Uuid, field: &'static str, device: usize, value: Option<String>) {
        self.0.entry((entity, field)).or_default().insert(device, value);
    }
}

async fn run(devices: usize, actions: Vec<(usize, Action)>) -> Result<(), TestCaseError> {
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let mut clients = Vec::new();
    for _ in 0..devices {
        clients.push(Client::new(user, &server.running.url(), &token).await);
    }
    let project = Project::new(user, "Start", None, NOW).expect("valid");
    let project = clients[0].projects.create(project).await.expect("create").id();
    for client in &clients {
        client.sync().await;
    }

    let mut writes = Writes::default();
    for (device, action) in actions {
        let client = &clients[device];
        let visible = client.tracks.list_by_parent(project.into()).await.expect("tracks");
        match action {
            Action::CreateTrack(n) => {
                let name = format!("Track {n}");
                let track = AudioTrack::new(project, user, &name, 1_000, None, NOW).expect("valid");
                let track = client.tracks.create(track).await.expect("create");
                writes.record(track.id().as_uuid(), "name", device, Some(name));
            }
            Action::RenameTrack { pick, name } if !visible.is_empty() => {
                let track = &visible[pick % visible.len()];
                let name = format!("Renamed {name}");
                let patch = AudioTrackPatch { name: Some(name.clone()), ..Default::default() };
                client.tracks.update(track.id(), patch).await.expect("rename");
                writes.record(track.id().as_uuid(), "name", device, Some(name));
            }
            Action::DeleteTrack { pick } if !visible.is_empty() => {
                client.tracks.delete(visible[pick % visible.len()].id()).await.expect("delete");
            }
            Action::RenameTrack { .. } | Action::DeleteTrack { .. } => {}
            Action::RenameProject(n) => {
                let name = format!("Project {n}");
                let patch = ProjectPatch { name: Some(name.clone()), ..Default::default() };
                client.projects.update(project, patch).await.expect("rename");
                writes.record(project.as_uuid(), "name", device, Some(name));
            }
            Action::DescribeProject(n) => {
                let text = format!("About {n}");
                let patch = ProjectPatch { description: Some(Some(text.clone())), ..Default::default() };
                client.projects.update(project, patch).await.expect("describe");
                writes.record(project.as_uuid(), "description", device, Some(text));
            }
            Action::Sync => client.sync().await,
        }
    }
    // Everyone syncs twice: after the first round the last device holds everything, after the
    // second every device does.
    for _ in 0..2 {
        for client in &clients {
            client.sync().await;
        }
    }

    // The server's state, as a fresh device pulls it.
    let fresh = Client::new(user, &server.running.url(), &token).await;
    fresh.sync().await;
    let expected = view(&fresh, project).await;
    for (device, client) in clients.iter().enumerate() {
        prop_assert_eq!(&view(client, project).await, &expected, "device {} differs from the server", device);
    }
    // A field one device alone wrote holds what it wrote last, unless the entity is gone.
    for ((entity, field), by_device) in &writes.0 {
        let [(device, value)] = by_device.iter().collect::<Vec<_>>()[..] else { continue };
        let held = if *entity == project.as_uuid() {
            Some(if *field == "name" { Some(expected.0.clone()) } else { expected.1.clone() })
        } else {
            expected.2.get(entity).map(|name| Some(name.clone()))
        };
        if let Some(held) = held {
            prop_assert_eq!(&held, value, "device {}'s {} of {} was lost", device, field, entity);
        }
    }
    Ok(())
}

#[test]
fn replicas_converge_whatever_the_order_of_offline_edits_and_syncs() {
    trackflow_music::install().expect("the music registry installs");
    let cases = std::env::var("TRACKFLOW_CONVERGENCE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    let seed: u64 = std::env::var("TRACKFLOW_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    // Straight to stderr, past the test harness's capture, so every run shows its seed.
    let _ = writeln!(
        std::io::stderr(),
        "convergence: {cases} cases, seed {seed} (TRACKFLOW_PROPTEST_SEED={seed} replays this run)"
    );
    let seed_bytes: Vec<u8> = seed.to_le_bytes().repeat(4);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = runner.run(&case(), |(devices, actions)| runtime.block_on(run(devices, actions)));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (devices, actions))) => {
            panic!("seed {seed}: {reason}\nminimal case: {devices} devices, actions {actions:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("seed {seed}: aborted: {reason}"),
    }
}
