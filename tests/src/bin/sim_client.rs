//! A device of the seeded simulation: a whole client engine (local store, upstream, downstream,
//! coordinator, realtime) in a process of its own, so the driver can SIGKILL it and start it
//! again on the same database. It reads one `trackflow_tests::sim::Command` per line on stdin
//! and answers each with one `Reply` line on stdout once the command returned (a write's reply
//! is its acknowledgement). The engine syncs in the background meanwhile.
//!
//! Usage: `trackflow-sim-client DATA_DIR USER_ID CLOCK_OFFSET_MS`: the device's clock runs
//! `CLOCK_OFFSET_MS` ahead of the machine's (negative: behind).
//! `TRACKFLOW_SIM_LOG` (a tracing filter, `debug` say) logs to stderr.

use anyhow::Context;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use trackflow::snapshot::Snapshot;
use trackflow_client::{
    domain::{
        entities::AnyEntity,
        ports::{Clock, PendingOperationsRepository, SessionStorage},
        CollaboratorRole, OperationStatus, SyncEntity, Timestamp, UserId,
    },
    executors::{queue::Backoff, UpstreamOptions},
    remote::{HttpRemote, RemoteOptions},
    shaku::HasComponent,
    store::{LocalStore, LocalStoreOptions, SystemClock},
    usecases::{AudioFiles, ProbeOptions, SyncDataOptions},
    EngineOptions, SyncEngine,
};
use trackflow_music::{
    AudioComment, AudioCommentPatch, AudioTrack, AudioTrackPatch, Playlist, PlaylistPatch, Project,
    ProjectCollaborator, ProjectCollaboratorPatch, ProjectPatch, UserProfile, UserProfilePatch,
};
use trackflow_tests::sim::{Action, Command, Dump, FailedOp, Reply, Rows, SimRole};

/// How the reason of an operation parked after transient failures begins.
const GAVE_UP: &str = "gave up after";

/// The machine's clock shifted by a fixed amount.
struct Shifted(i64);

impl Clock for Shifted {
    fn now(&self) -> Timestamp {
        SystemClock.now().plus_millis(self.0)
    }
}

/// Production behaviour with the waits of a test's scale: retries within half a second, the
/// server probed every 50–500 ms, a periodic sync every 300 ms, requests given up after 3 s.
fn options() -> EngineOptions {
    let quick = |max_attempts| Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(500),
        max_attempts,
    };
    EngineOptions {
        upstream: UpstreamOptions {
            backoff: quick(Backoff::default().max_attempts),
            offline_probe: quick(u32::MAX),
            idle_poll: Duration::from_millis(500),
            ..UpstreamOptions::default()
        },
        downstream: SyncDataOptions { min_interval: Duration::ZERO, ..SyncDataOptions::default() },
        probe: ProbeOptions { first: Duration::from_millis(50), cap: Duration::from_millis(500) },
        periodic: Some(Duration::from_millis(300)),
        remote: RemoteOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
        },
        realtime: true,
        blob_cache: None,
    }
}

struct Device {
    engine: SyncEngine,
    user: UserId,
    dir: PathBuf,
}

/// The visible rows of `E`, ordered by id.
async fn visible<E: SyncEntity>(engine: &SyncEngine) -> anyhow::Result<Vec<E>> {
    let mut rows: Vec<E> = engine
        .repositories()
        .visible(E::ENTITY_TYPE)
        .await?
        .into_iter()
        .filter_map(|any| any.downcast::<E>().ok())
        .collect();
    rows.sort_by_key(|e| AnyEntity::new(e.clone()).entity_ref().id);
    Ok(rows)
}

/// The `pick`-th of `rows` (modulo their number).
fn pick<T>(rows: Vec<T>, pick: u32) -> Option<T> {
    let n = rows.len();
    (n > 0).then(|| rows.into_iter().nth(pick as usize % n).expect("in range"))
}

fn role(role: SimRole) -> CollaboratorRole {
    match role {
        SimRole::Editor => CollaboratorRole::Editor,
        SimRole::Viewer => CollaboratorRole::Viewer,
    }
}

/// The reply to a write of `entity`: its reference and the synced values of `fields` (every
/// field for a create).
fn wrote<E: SyncEntity>(entity: &E, fields: &[&str]) -> Reply {
    let any = AnyEntity::new(entity.clone());
    let all = any.fields();
    let fields = match fields {
        [] => all,
        names => all.into_iter().filter(|(name, _)| names.contains(&name.as_str())).collect(),
    };
    let at = any.entity_ref();
    Reply::Done { entity: Some((at.entity_type.to_string(), at.id)), fields }
}

/// The reply to a delete of `entity`.
fn deleted<E: SyncEntity>(entity: &E) -> Reply {
    let at = AnyEntity::new(entity.clone()).entity_ref();
    Reply::Done { entity: Some((at.entity_type.to_string(), at.id)), fields: Default::default() }
}

impl Device {
    fn now(&self) -> Timestamp {
        HasComponent::<dyn Clock>::resolve_ref(self.engine.module.as_ref()).now()
    }

    fn outbox(&self) -> &dyn PendingOperationsRepository {
        self.engine.module.resolve_ref()
    }

    async fn act(&self, action: Action) -> anyhow::Result<Reply> {
        let engine = &self.engine;
        let (projects, tracks) = (engine.repository::<Project>(), engine.repository::<AudioTrack>());
        let comments = engine.repository::<AudioComment>();
        let playlists = engine.repository::<Playlist>();
        let collaborators = engine.repository::<ProjectCollaborator>();
        macro_rules! target {
            ($type:ty, $pick:expr) => {
                match pick(visible::<$type>(engine).await?, $pick) {
                    Some(row) => row,
                    None => return Ok(Reply::Nothing),
                }
            };
        }
        Ok(match action {
            Action::CreateProject { name } => {
                let project = Project::new(self.user, &format!("Project {name}"), None, self.now())?;
                wrote(&projects.create(project).await?, &[])
            }
            Action::RenameProject { pick, name } => {
                let id = target!(Project, pick).id();
                let patch = ProjectPatch { name: Some(format!("Project {name}")), ..Default::default() };
                wrote(&projects.update(id, patch).await?, &["name"])
            }
            Action::DescribeProject { pick, text } => {
                let id = target!(Project, pick).id();
                let patch =
                    ProjectPatch { description: Some(Some(format!("About {text}"))), ..Default::default() };
                wrote(&projects.update(id, patch).await?, &["description"])
            }
            Action::DeleteProject { pick } => {
                let project = target!(Project, pick);
                projects.delete(project.id()).await?;
                deleted(&project)
            }
            Action::CreateTrack { pick, name, audio } => {
                let project = target!(Project, pick).id();
                let (hash, duration) = match audio {
                    Some(seed) => {
                        let ms = 100 + seed % 900;
                        let file = self.dir.join(format!("take-{seed}.wav"));
                        std::fs::write(&file, trackflow_tests::audio::wav(ms))?;
                        let audio: &AudioFiles = engine.module.resolve_ref();
                        (Some(audio.import(file).await?.hash), i64::from(ms))
                    }
                    None => (None, 60_000),
                };
                let name = format!("Track {name}");
                let track = AudioTrack::new(
                    project,
                    self.user,
                    &name,
                    duration,
                    hash.as_ref().map(|h| h.as_str()),
                    self.now(),
                )?;
                wrote(&tracks.create(track).await?, &[])
            }
            Action::RenameTrack { pick, name } => {
                let id = target!(AudioTrack, pick).id();
                let patch = AudioTrackPatch { name: Some(format!("Track {name}")), ..Default::default() };
                wrote(&tracks.update(id, patch).await?, &["name"])
            }
            Action::DeleteTrack { pick } => {
                let track = target!(AudioTrack, pick);
                tracks.delete(track.id()).await?;
                deleted(&track)
            }
            Action::Comment { pick, text } => {
                let track = target!(AudioTrack, pick);
                let comment =
                    AudioComment::new(&track, self.user, &format!("Comment {text}"), 0, self.now())?;
                wrote(&comments.create(comment).await?, &[])
            }
            Action::EditComment { pick, text } => {
                let id = target!(AudioComment, pick).id();
                let patch = AudioCommentPatch { content: Some(format!("Edited {text}")) };
                wrote(&comments.update(id, patch).await?, &["content"])
            }
            Action::DeleteComment { pick } => {
                let comment = target!(AudioComment, pick);
                comments.delete(comment.id()).await?;
                deleted(&comment)
            }
            Action::EditProfile { name } => {
                let patch = UserProfilePatch {
                    name: Some(format!("Musician {name}")),
                    creative_role: Some(Some(format!("role {name}"))),
                    ..Default::default()
                };
                let profile = engine.repository::<UserProfile>().update(self.user, patch).await?;
                wrote(&profile, &["name", "creative_role"])
            }
            Action::CreatePlaylist { pick, name } => {
                let project = target!(Project, pick).id();
                let playlist = Playlist::new(project, &format!("Playlist {name}"), Vec::new(), self.now())?;
                wrote(&playlists.create(playlist).await?, &[])
            }
            Action::Reorder { pick, seed } => {
                let playlist = target!(Playlist, pick);
                let mut ids: Vec<_> = tracks
                    .list_by_parent(playlist.project_id().into())
                    .await?
                    .iter()
                    .map(|t| t.id())
                    .collect();
                let mut rng = StdRng::seed_from_u64(u64::from(seed));
                ids.shuffle(&mut rng);
                ids.truncate(1 + seed as usize % ids.len().max(1));
                let patch = PlaylistPatch { track_ids: Some(ids), ..Default::default() };
                wrote(&playlists.update(playlist.id(), patch).await?, &["track_ids"])
            }
            Action::AddCollaborator { pick, user, role: r } => {
                let project = target!(Project, pick).id();
                let user = UserId::from_uuid(user);
                if user == self.user {
                    return Ok(Reply::Nothing);
                }
                let collaborator = ProjectCollaborator::new(project, user, role(r), self.now())?;
                wrote(&collaborators.create(collaborator).await?, &[])
            }
            Action::ChangeRole { pick, role: r } => {
                let id = target!(ProjectCollaborator, pick).id();
                let patch = ProjectCollaboratorPatch { role: Some(role(r)) };
                wrote(&collaborators.update(id, patch).await?, &["role"])
            }
            Action::RemoveCollaborator { pick } => {
                let collaborator = target!(ProjectCollaborator, pick);
                collaborators.delete(collaborator.id()).await?;
                deleted(&collaborator)
            }
        })
    }

    async fn pending(&self) -> anyhow::Result<(u64, u64)> {
        let counts = self.outbox().counts().await?;
        Ok((counts.pending + counts.in_flight, counts.failed))
    }

    async fn dump(&self) -> anyhow::Result<Dump> {
        let rows = |snapshot: Snapshot| -> Rows {
            snapshot.0.into_iter().map(|(at, fields)| (at.entity_type.to_string(), at.id, fields)).collect()
        };
        let session: Arc<dyn SessionStorage> = self.engine.module.resolve();
        let remote = HttpRemote::new(session, &RemoteOptions::default())?;
        let server = rows(Snapshot::of_server(&remote).await?);
        let mine = rows(Snapshot::of_client(&self.engine.module).await?);
        let failed = self
            .outbox()
            .list(Some(OperationStatus::Failed))
            .await?
            .into_iter()
            .map(|op| FailedOp {
                id: op.id.as_uuid(),
                entity_type: op.entity.entity_type.to_string(),
                entity_id: op.entity.id,
                reason: op.last_error.unwrap_or_default(),
            })
            .collect();
        self.engine.status_provider().refresh_counts().await?;
        let status_failed = self.engine.status().borrow().failed;
        Ok(Dump { rows: mine, server, failed, pending: self.pending().await?.0, status_failed })
    }

    async fn run(&self, command: Command) -> anyhow::Result<Reply> {
        let sessions: &dyn SessionStorage = self.engine.module.resolve_ref();
        Ok(match command {
            Command::SignIn { user, server, token } => {
                self.engine.sign_in(UserId::from_uuid(user), &server, &token).await?;
                self.engine.upstream().resume();
                Reply::Done { entity: None, fields: Default::default() }
            }
            Command::SignOut => {
                if let Some(session) = sessions.load().await? {
                    sessions
                        .save(trackflow_client::domain::ports::Session { access_token: None, ..session })
                        .await?;
                }
                Reply::Done { entity: None, fields: Default::default() }
            }
            Command::CreateProfile { user, name } => {
                let email = format!("{}@sim.example", user.simple());
                let profile = UserProfile::new(UserId::from_uuid(user), &name, &email, self.now())?;
                wrote(&self.engine.repository::<UserProfile>().create(profile).await?, &[])
            }
            Command::Act(action) => match self.act(action).await {
                Ok(reply) => reply,
                // The engine refused the write locally: nothing was stored or queued.
                Err(error) => Reply::Refused { error: format!("{error:#}") },
            },
            Command::Sync => {
                self.engine.sync_now().await;
                let (pending, failed) = self.pending().await?;
                Reply::Synced { pending, failed }
            }
            Command::Settle { max_rounds } => {
                let mut passes = self.engine.upstream().passes();
                let mut round = 0;
                loop {
                    self.engine.sync_now().await;
                    passes.borrow_and_update();
                    let (pending, failed) = self.pending().await?;
                    round += 1;
                    // What waits behind a failed operation moves only when the user acts.
                    let stuck = || async {
                        let report = self.engine.upstream().process().await?;
                        anyhow::Ok(report.requests == 0 && report.next_due.is_none())
                    };
                    if pending == 0 || round >= max_rounds || stuck().await? {
                        break Reply::Synced { pending, failed };
                    }
                    // Operations backing off: the background processor sends them when they
                    // are due (within the backoff's cap) and its pass ends in a signal. The
                    // timeout only bounds a wait for a pass that has nothing to do.
                    let _ = tokio::time::timeout(Duration::from_secs(2), passes.changed()).await;
                }
            }
            Command::Dump => Reply::Dump(self.dump().await?),
            Command::Resolve => {
                let queued = self.outbox().list(None).await?;
                let (retry, discard): (Vec<_>, Vec<_>) = queued
                    .iter()
                    .filter(|op| op.status == OperationStatus::Failed)
                    .partition(|op| op.last_error.as_deref().is_some_and(|e| e.starts_with(GAVE_UP)));
                let retried = match retry.is_empty() {
                    true => 0,
                    false => self.outbox().retry_failed(Some(retry.iter().map(|op| op.id).collect())).await?,
                };
                let discarded = match discard.is_empty() {
                    true => Vec::new(),
                    false => self.outbox().discard_failed(discard.iter().map(|op| op.id).collect()).await?,
                };
                let discarded =
                    queued.iter().filter(|op| discarded.contains(&op.id)).map(|op| op.entity.id).collect();
                Reply::Resolved { retried, discarded }
            }
        })
    }
}

fn say(out: &mut impl Write, reply: &Reply) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string(reply)?)?;
    out.flush()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, user, offset] = &args[..] else {
        anyhow::bail!("usage: trackflow-sim-client DATA_DIR USER_ID CLOCK_OFFSET_MS");
    };
    let dir = Path::new(dir).to_path_buf();
    let user = UserId::from_uuid(user.parse().context("USER_ID")?);
    let offset: i64 = offset.parse().context("CLOCK_OFFSET_MS")?;
    trackflow_music::install()?;
    // Its log goes to the device's stderr file, which a failed run keeps.
    if let Ok(filter) = std::env::var("TRACKFLOW_SIM_LOG") {
        trackflow::telemetry::init(&filter, trackflow::config::LogFormat::Text);
    }
    let store =
        LocalStore::open(LocalStoreOptions::new(dir.join("client.db")), Arc::new(Shifted(offset))).await?;
    let mut engine = SyncEngine::over(store, options())?;
    engine.load_history().await;
    engine.start().await;
    let device = Device { engine, user, dir };
    let mut out = std::io::stdout().lock();
    say(&mut out, &Reply::Ready)?;
    let (lines, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = commands.recv().await {
        let command: Command =
            serde_json::from_str(&line).with_context(|| format!("bad command {line:?}"))?;
        let reply = device.run(command).await?;
        say(&mut out, &reply)?;
    }
    device.engine.shutdown().await;
    Ok(())
}
