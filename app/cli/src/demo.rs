//! `trackflow demo`: the whole engine on one machine. An in-process sync server on a temporary
//! SQLite database; two musicians, each with a client of their own (own local database, own
//! network link to the server); one of them offline for a while, writing on both sides,
//! including edits of the same field; reconnection, sync, and a check that every client ends
//! holding exactly what the server holds. It exits non-zero unless they all do.

use crate::{link::Link, snapshot::Snapshot};
use anyhow::{bail, ensure, Context};
use shaku::HasComponent;
use std::{path::Path, sync::Arc, time::Instant};
use trackflow_client::engine::{EngineOptions, SyncEngine};
use trackflow_client::wiring::repository;
use trackflow_domain::{
    ports::{AccessToken, Clock, Repository, Session, SessionStorage},
    protocol::SignUpRequest,
    CollaboratorRole, SyncEntity, SyncPhase, SyncState, UserId,
};
use trackflow_music::{
    AudioComment, AudioTrack, AudioTrackPatch, Project, ProjectCollaborator, ProjectId, ProjectPatch,
};
use trackflow_remote::{AuthClient, HttpRemote, RemoteOptions};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::DieselServerStore;
use trackflow_server_store::FsBlobStorage;

/// `say!` unless the demo reports as JSON.
macro_rules! tell {
    ($quiet:expr, $($arg:tt)*) => {
        if !$quiet {
            say!($($arg)*)
        }
    };
}

/// One musician: their client and its link to the server.
struct Musician {
    name: &'static str,
    user: UserId,
    engine: SyncEngine,
    link: Link,
    /// Tells nothing as it goes (the demo reports as JSON at the end).
    quiet: bool,
}

impl Musician {
    /// A client in `dir`, with a profile, an account on `server`, and a session through a
    /// link of its own.
    async fn join(
        name: &'static str,
        email: &str,
        dir: &Path,
        server: &RunningServer,
        quiet: bool,
    ) -> anyhow::Result<Self> {
        let options = EngineOptions { periodic: None, ..EngineOptions::default() };
        let engine = SyncEngine::open(dir, options).await?;
        let profile = crate::local_user::create(&engine.module, name, email).await?;
        let user = profile.id();
        let request =
            SignUpRequest { email: email.into(), password: "demo password".into(), user_id: Some(user) };
        let token = AuthClient::new(&RemoteOptions::default())?
            .sign_up(&server.url(), &request)
            .await
            .with_context(|| format!("signing {name} up"))?
            .token;
        let link = Link::start(server.addr()).await?;
        let session = Session {
            user_id: user,
            server_url: Some(link.url()),
            access_token: Some(AccessToken::new(token)),
        };
        HasComponent::<dyn SessionStorage>::resolve_ref(engine.module.as_ref()).save(session).await?;
        Ok(Self { name, user, engine, link, quiet })
    }

    fn projects(&self) -> Arc<dyn Repository<Project>> {
        self.engine.repository::<Project>()
    }

    fn audio(&self) -> &trackflow_usecases::AudioFiles {
        self.engine.module.resolve_ref()
    }

    fn tracks(&self) -> Arc<dyn Repository<AudioTrack>> {
        self.engine.repository::<AudioTrack>()
    }

    fn comments(&self) -> Arc<dyn Repository<AudioComment>> {
        self.engine.repository::<AudioComment>()
    }

    fn now(&self) -> trackflow_domain::Timestamp {
        HasComponent::<dyn Clock>::resolve_ref(self.engine.module.as_ref()).now()
    }

    /// Syncs and says how it went.
    async fn sync(&self) -> SyncState {
        let state = self.engine.sync_now().await;
        let outcome = match state.phase {
            SyncPhase::Offline => format!("offline, {} changes wait in the outbox", state.pending),
            SyncPhase::Error => format!("failed: {}", state.last_error.as_deref().unwrap_or("?")),
            _ => format!("synced, {} pending", state.pending),
        };
        tell!(self.quiet, "  ⇅ {} syncs: {outcome}", self.name);
        state
    }

    /// What this client shows of `project`, in a few lines.
    async fn show(&self, project: ProjectId) -> anyhow::Result<()> {
        let Some(p) = self.projects().get(project).await? else {
            tell!(self.quiet, "  {}: the project is not here", self.name);
            return Ok(());
        };
        tell!(
            self.quiet,
            "  {}'s client: \"{}\" — {}",
            self.name,
            p.name(),
            p.description().unwrap_or("(no description)")
        );
        for track in self.tracks().list_by_parent(project.into()).await? {
            let comments = self.comments().list_by_parent(track.id().into()).await?;
            tell!(
                self.quiet,
                "      track \"{}\" [{}]{}",
                track.name(),
                crate::cli::format_position(track.duration_ms()),
                comments
                    .iter()
                    .map(|c| format!(
                        ", comment @{}: {}",
                        crate::cli::format_position(c.timestamp_ms()),
                        c.content()
                    ))
                    .collect::<String>()
            );
        }
        Ok(())
    }

    /// Compares this client with what the server shows its user.
    async fn check(&self) -> anyhow::Result<usize> {
        let session: Arc<dyn SessionStorage> = self.engine.module.resolve();
        let remote = HttpRemote::new(session, &RemoteOptions::default())?;
        let server = Snapshot::of_server(&remote).await?;
        let client = Snapshot::of_client(&self.engine.module).await?;
        let differences = client.differences(&server);
        if !differences.is_empty() {
            bail!("{}'s client differs from the server: {}", self.name, differences.join("; "));
        }
        tell!(
            self.quiet,
            "  ✓ {}'s client holds exactly what the server shows {}: {} rows",
            self.name,
            self.name,
            client.len()
        );
        Ok(client.len())
    }
}

/// Runs the demo in `dir` (which must be empty or absent), or in a temporary directory. With
/// `json`, it tells nothing as it goes and prints one JSON object at the end: where it ran, each
/// client's rows checked against the server, the winning project name and the time taken.
pub async fn run(dir: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = match dir {
        Some(dir) => {
            ensure!(
                !dir.exists() || std::fs::read_dir(dir)?.next().is_none(),
                "the demo needs an empty directory; {} is not",
                dir.display()
            );
            dir.to_path_buf()
        }
        None => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    tell!(json, "TrackFlow Sync demo: two musicians, one sync server, one of them offline for a while\n");

    let database = dir.join("server.db").to_string_lossy().into_owned();
    let store = tokio::task::spawn_blocking(move || DieselServerStore::open(&database, 4)).await??;
    let blobs = Arc::new(FsBlobStorage::open(dir.join("server.blobs"))?);
    let module = crate::wiring::server_module(store, blobs, ServerConfig::default());
    let state: Arc<AppState> = module.resolve();
    let server = RunningServer::start("127.0.0.1:0".parse()?, state.as_ref().clone()).await?;
    tell!(json, "1. A sync server is up at {} (SQLite in {}).", server.url(), dir.display());
    let profiles = dir.join("profiles");
    let ana = Musician::join("Ana", "ana@example.com", &profiles.join("ana"), &server, json).await?;
    let ben = Musician::join("Ben", "ben@example.com", &profiles.join("ben"), &server, json).await?;
    tell!(json, "   Ana and Ben each have a client with its own local database, and an account.\n");

    tell!(json, "2. Ana starts a project and invites Ben.");
    let project = ana
        .projects()
        .create(Project::new(ana.user, "Night Drive EP", Some("Demos for the EP"), ana.now())?)
        .await?;
    let mut intro = None;
    for (name, seconds) in [("Intro", 72), ("Neon Streets", 215)] {
        let track = ana
            .tracks()
            .create(AudioTrack::new(project.id(), ana.user, name, seconds * 1_000, None, ana.now())?)
            .await?;
        intro.get_or_insert(track);
    }
    let intro = intro.context("a track")?;
    let members = repository::<ProjectCollaborator>(&ana.engine.module);
    members
        .create(ProjectCollaborator::new(project.id(), ben.user, CollaboratorRole::Editor, ana.now())?)
        .await?;
    tell!(
        json,
        "   Ana wrote a project, two tracks and Ben's invitation locally; nothing has left her machine yet."
    );
    ana.sync().await;
    ben.sync().await;
    ben.show(project.id()).await?;

    tell!(json, "\n3. Ben's network goes down. Both keep working.");
    ben.link.cut().await;
    let neon = ben
        .tracks()
        .list_by_parent(project.id().into())
        .await?
        .into_iter()
        .find(|t| t.name() == "Neon Streets");
    let neon = neon.context("Ben has Neon Streets")?;
    ben.projects()
        .update(
            project.id(),
            ProjectPatch { name: Some("Night Drive (Ben's mix)".into()), ..Default::default() },
        )
        .await?;
    ben.tracks()
        .update(
            intro.id(),
            AudioTrackPatch { name: Some("Intro (longer fade)".into()), ..Default::default() },
        )
        .await?;
    ben.comments()
        .create(AudioComment::new(&neon, ben.user, "Bass comes in late here", 63_000, ben.now())?)
        .await?;
    tell!(json, "   Ben, offline: renames the project to \"Night Drive (Ben's mix)\", renames Intro, comments on Neon Streets.");
    let offline = ben.sync().await;
    ensure!(offline.phase == SyncPhase::Offline, "Ben's sync should find the server unreachable");
    ana.projects()
        .update(
            project.id(),
            ProjectPatch {
                name: Some("Night Drive EP (final)".into()),
                description: Some(Some("Four tracks, one late night".into())),
            },
        )
        .await?;
    let recording = dir.join("afterglow.wav");
    write_recording(&recording, 2 * 1024 * 1024)?;
    let audio = ana.audio().import(recording.clone()).await?;
    let afterglow = ana
        .tracks()
        .create(AudioTrack::new(
            project.id(),
            ana.user,
            "Afterglow",
            198_000,
            Some(audio.hash.as_str()),
            ana.now(),
        )?)
        .await?;
    tell!(json, "   Ana, online and later: renames the project to \"Night Drive EP (final)\", rewrites its description,");
    tell!(json, "   adds Afterglow with its recording (2 MiB; uploaded before the track, as the track depends on it).");
    ana.sync().await;

    tell!(json, "\n4. Ben's network comes back.");
    ben.link.restore().await?;
    ben.sync().await;
    ana.sync().await;
    tell!(json, "   Both renamed the project: field by field, the later write wins on every replica (Ana's,");
    tell!(json, "   by the hybrid logical clock). Ben's track rename and comment touched fields nobody else");
    tell!(json, "   wrote, so they survive as they are; so do Ana's description and new track.\n");
    let fetched = ben.audio().fetch(afterglow.entity_ref()).await?;
    let (hash, size) = trackflow_store::hash_file(&fetched).await?;
    ensure!(hash == audio.hash, "Ben's copy of Afterglow's audio differs from Ana's recording");
    tell!(
        json,
        "   Ben plays Afterglow: its audio downloads on demand into his cache ({:.1} MiB, same SHA-256).\n",
        size as f64 / 1048576.0
    );

    tell!(json, "5. Where everyone ended:");
    ana.show(project.id()).await?;
    ben.show(project.id()).await?;
    let names = (
        ana.projects().get(project.id()).await?.map(|p| p.name().to_owned()),
        ben.projects().get(project.id()).await?.map(|p| p.name().to_owned()),
    );
    ensure!(
        names.0.as_deref() == Some("Night Drive EP (final)") && names.0 == names.1,
        "the later rename should win on both clients, found {names:?}"
    );
    let rows = (ana.check().await?, ben.check().await?);
    tell!(json, "\nDone in {:.1} s. Every client matches the server.", started.elapsed().as_secs_f64());
    if json {
        say!(
            "{}",
            serde_json::json!({
                "converged": true,
                "server": server.url(),
                "dir": dir,
                "project": { "id": project.id(), "name": names.0 },
                "clients": [
                    { "name": ana.name, "rows": rows.0, "matches_server": true },
                    { "name": ben.name, "rows": rows.1, "matches_server": true },
                ],
                "elapsed_ms": started.elapsed().as_millis(),
            })
        );
    }
    ana.engine.shutdown().await;
    ben.engine.shutdown().await;
    server.shutdown().await?;
    Ok(())
}

/// Writes `len` bytes standing in for a recording to `path`, in chunks: noise, so nothing
/// compresses it away, and memory stays flat however long it is.
pub fn write_recording(path: &Path, len: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state: u32 = 0x2545_f491;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    while written < len {
        for byte in &mut chunk {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *byte = state as u8;
        }
        let n = chunk.len().min(len - written);
        out.write_all(&chunk[..n])?;
        written += n;
    }
    out.flush()
}
