//! What each command does. Handlers resolve ports from the shaku module and never name a
//! concrete store type.

use super::{
    output::{Line, Printer},
    Cli, CollaboratorCommand, Command, CommentCommand, ConflictsCommand, PlaylistCommand, ProfileCommand,
    ProjectCommand, QueueCommand, TrackCommand,
};
use crate::config::{ConfigFile, Overrides, Settings};
use anyhow::{anyhow, bail, Context};
use serde_json::json;
use shaku::HasComponent;
use std::path::{Path, PathBuf};
use trackflow_client::wiring::repository;
use trackflow_client::wiring::{open_client_module, ClientModule};
use trackflow_domain::SyncEntity;
use trackflow_domain::{
    ports::{Clock, ConflictRepository, PendingOperationsRepository, SessionStorage},
    sync::ConflictResolution,
    BlobHash, EntityRef, EntityType, UserId,
};
use trackflow_executors::{upstream::health_of, UpstreamOptions};
use trackflow_music::{
    AudioComment, AudioCommentPatch, AudioTrack, AudioTrackId, AudioTrackPatch, Playlist, PlaylistPatch,
    Project, ProjectCollaborator, ProjectCollaboratorPatch, ProjectPatch, UserProfile, UserProfilePatch,
};
use uuid::Uuid;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Printer { json: cli.json };
    let dir = data_dir(cli.data_dir.clone(), cli.profile.as_deref());
    let file = match (&cli.config, &dir) {
        (Some(path), _) => ConfigFile::load(Some(path), Path::new("."))?,
        (None, Ok(dir)) => ConfigFile::load(None, dir)?,
        (None, Err(_)) => ConfigFile::default(),
    };
    let settings =
        Settings::resolve(Overrides { server: None, log: cli.log.clone(), log_format: cli.log_format }, file);
    crate::telemetry::init(&settings.log, settings.log_format);
    match cli.command {
        Command::Server(args) => return crate::server::run(args, dir?).await,
        Command::Demo => return crate::demo::run(cli.data_dir.as_deref(), cli.json).await,
        _ => {}
    }
    let data_dir = dir?;
    if let Command::Sync = cli.command {
        return super::sync::sync(&data_dir, &settings, out).await;
    }
    if let Command::Watch = cli.command {
        return super::sync::watch(&data_dir, &settings, out).await;
    }
    if let Command::Repair = cli.command {
        // Before opening the store: what is damaged may be what opening reads.
        return super::sync::repair(&data_dir, &settings, out).await;
    }
    let module = open_client_module(&data_dir).await?;
    let app = App { module: &module, out, settings: &settings };
    match cli.command {
        Command::Profile(c) => app.profile(c).await,
        Command::Project(c) => app.project(c).await,
        Command::Track(c) => app.track(c).await,
        Command::Comment(c) => app.comment(c).await,
        Command::Playlist(c) => app.playlist(c).await,
        Command::Collaborator(c) => app.collaborator(c).await,
        Command::Queue(args) => app.queue(args.action).await,
        Command::Conflicts(args) => app.conflicts(args.action, args.all).await,
        Command::Signup(args) => app.sign_up(args).await,
        Command::Login(args) => app.log_in(args).await,
        Command::Logout => app.log_out().await,
        Command::Status => app.status().await,
        Command::Demo | Command::Server(_) | Command::Sync | Command::Watch | Command::Repair => {
            unreachable!("handled above")
        }
    }
}

/// The track `id`, as the audio files name what they belong to.
fn track_ref(id: AudioTrackId) -> EntityRef {
    EntityRef::new(AudioTrack::ENTITY_TYPE, id.as_uuid())
}

/// The data directory: `--data-dir` or the platform's, and under it `profiles/NAME` for
/// `--profile NAME`.
fn data_dir(flag: Option<PathBuf>, profile: Option<&str>) -> anyhow::Result<PathBuf> {
    let base = match flag {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("dev", "TrackFlow", "trackflow")
            .map(|dirs| dirs.data_dir().to_path_buf())
            .ok_or_else(|| anyhow!("no home directory to keep data in; pass --data-dir"))?,
    };
    match profile {
        None => Ok(base),
        Some(name)
            if !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(base.join("profiles").join(name))
        }
        Some(name) => bail!("invalid --profile '{name}': use letters, digits, '-' and '_' (at most 64)"),
    }
}

/// "Not found" for an entity the user named.
fn missing(entity_type: EntityType, id: impl Into<Uuid>) -> anyhow::Error {
    trackflow_domain::RepositoryError::NotFound(EntityRef::new(entity_type, id.into())).into()
}

/// An optional text flag where "" means "clear it".
fn clearable(value: Option<String>) -> Option<Option<String>> {
    value.map(|v| if v.trim().is_empty() { None } else { Some(v) })
}

pub(super) struct App<'a> {
    pub(super) module: &'a ClientModule,
    pub(super) out: Printer,
    pub(super) settings: &'a Settings,
}

impl App<'_> {
    /// Tracks' audio files.
    fn audio(&self) -> &trackflow_usecases::AudioFiles {
        self.module.resolve_ref()
    }

    /// Copies the audio file at `path` into the local cache, after reading its length (which a
    /// `given` length must agree with): its hash and length. An empty file is no recording.
    async fn import_audio(&self, path: PathBuf, given: Option<i64>) -> anyhow::Result<(BlobHash, i64)> {
        let size = std::fs::metadata(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the audio file {}: {e}", path.display()))?
            .len();
        if size == 0 {
            anyhow::bail!("the audio file {} is empty", path.display());
        }
        let measured = path.clone();
        let duration =
            tokio::task::spawn_blocking(move || crate::audio::track_duration(&measured, given)).await??;
        Ok((self.audio().import(path).await?.hash, duration))
    }

    pub(super) fn now(&self) -> trackflow_domain::Timestamp {
        HasComponent::<dyn Clock>::resolve_ref(self.module).now()
    }

    /// The user this device acts as; its profile must exist.
    pub(super) async fn me(&self) -> anyhow::Result<UserId> {
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        let profiles = repository::<UserProfile>(self.module);
        match sessions.load().await? {
            Some(session) if profiles.get(session.user_id).await?.is_some() => Ok(session.user_id),
            Some(_) => bail!(
                "profile setup was interrupted: run `trackflow profile create --name NAME --email EMAIL` to finish it"
            ),
            None => bail!("no profile yet: run `trackflow profile create --name NAME --email EMAIL` first"),
        }
    }

    async fn profile(&self, command: ProfileCommand) -> anyhow::Result<()> {
        let profiles = repository::<UserProfile>(self.module);
        match command {
            ProfileCommand::Create { name, email } => {
                let profile = crate::local_user::create(self.module, &name, &email).await?;
                self.out.one(&profile)
            }
            ProfileCommand::Show => {
                let me = self.me().await?;
                let profile = profiles.get(me).await?.ok_or_else(|| missing(UserProfile::ENTITY_TYPE, me))?;
                self.out.one(&profile)
            }
            ProfileCommand::Update(update) => {
                let patch = UserProfilePatch {
                    name: update.name,
                    email: update.email,
                    avatar_url: clearable(update.avatar_url),
                    creative_role: clearable(update.creative_role),
                };
                let profile = profiles.update(self.me().await?, patch).await?;
                self.out.one(&profile)
            }
        }
    }

    async fn project(&self, command: ProjectCommand) -> anyhow::Result<()> {
        let projects = repository::<Project>(self.module);
        match command {
            ProjectCommand::Create { name, description } => {
                let project = Project::new(self.me().await?, &name, description.as_deref(), self.now())?;
                self.out.one(&projects.create(project).await?)
            }
            ProjectCommand::List => {
                let list = projects.list_by(Project::BY_MEMBER, self.me().await?.into()).await?;
                self.out.many(&list, "no projects yet")
            }
            ProjectCommand::Show { id } => {
                let project = projects.get(id).await?.ok_or_else(|| missing(Project::ENTITY_TYPE, id))?;
                self.out.one(&project)
            }
            ProjectCommand::Update { id, name, description } => {
                let patch = ProjectPatch { name, description: clearable(description) };
                self.out.one(&projects.update(id, patch).await?)
            }
            ProjectCommand::Delete { id } => {
                projects.delete(id).await?;
                self.out.value(&json!({ "deleted": id }), &format!("deleted project {id}"))
            }
        }
    }

    async fn track(&self, command: TrackCommand) -> anyhow::Result<()> {
        let tracks = repository::<AudioTrack>(self.module);
        match command {
            TrackCommand::Add { project, file, name, duration } => {
                let name = match (&name, &file) {
                    (Some(name), _) => name.clone(),
                    (None, Some(file)) => {
                        file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
                    }
                    (None, None) => anyhow::bail!("give --name, or an audio file to name the track after"),
                };
                let (audio, duration) = match (file, duration) {
                    (Some(file), given) => {
                        let (hash, measured) = self.import_audio(file, given).await?;
                        (Some(hash), measured)
                    }
                    (None, Some(duration)) => (None, duration),
                    (None, None) => {
                        anyhow::bail!("give --duration for a track without audio (with an audio file, its length is read from it)")
                    }
                };
                let track = AudioTrack::new(
                    project,
                    self.me().await?,
                    &name,
                    duration,
                    audio.as_ref().map(BlobHash::as_str),
                    self.now(),
                )?;
                self.out.one(&tracks.create(track).await?)
            }
            TrackCommand::Fetch { id } => {
                let path = self.audio().fetch(track_ref(id)).await?;
                self.out.value(&json!({ "track": id, "path": path }), &path.display().to_string())
            }
            TrackCommand::Pin { id } => {
                self.audio().pin(track_ref(id), true).await?;
                self.out.value(&json!({ "pinned": id }), &format!("pinned the audio of track {id}"))
            }
            TrackCommand::Unpin { id } => {
                self.audio().pin(track_ref(id), false).await?;
                self.out.value(&json!({ "unpinned": id }), &format!("unpinned the audio of track {id}"))
            }
            TrackCommand::List { project } => {
                self.require_project(project).await?;
                self.out.many(&tracks.list_by_parent(project.into()).await?, "no tracks yet")
            }
            TrackCommand::Show { id } => {
                let track = tracks.get(id).await?.ok_or_else(|| missing(AudioTrack::ENTITY_TYPE, id))?;
                self.out.one(&track)
            }
            TrackCommand::Update { id, name, file, sha256 } => {
                let (audio_sha256, duration_ms) = match file {
                    Some(file) => {
                        let (hash, measured) = self.import_audio(file, None).await?;
                        (Some(hash.as_str().to_owned()), Some(measured))
                    }
                    None => (sha256, None),
                };
                self.out.one(&tracks.update(id, AudioTrackPatch { name, audio_sha256, duration_ms }).await?)
            }
            TrackCommand::Delete { id } => {
                tracks.delete(id).await?;
                self.out.value(&json!({ "deleted": id }), &format!("deleted track {id}"))
            }
        }
    }

    async fn comment(&self, command: CommentCommand) -> anyhow::Result<()> {
        let comments = repository::<AudioComment>(self.module);
        let tracks = repository::<AudioTrack>(self.module);
        match command {
            CommentCommand::Add { track, at, text } => {
                let track =
                    tracks.get(track).await?.ok_or_else(|| missing(AudioTrack::ENTITY_TYPE, track))?;
                let comment = AudioComment::new(&track, self.me().await?, &text, at, self.now())?;
                self.out.one(&comments.create(comment).await?)
            }
            CommentCommand::List { track } => {
                tracks.get(track).await?.ok_or_else(|| missing(AudioTrack::ENTITY_TYPE, track))?;
                self.out.many(&comments.list_by_parent(track.into()).await?, "no comments yet")
            }
            CommentCommand::Show { id } => {
                let comment =
                    comments.get(id).await?.ok_or_else(|| missing(AudioComment::ENTITY_TYPE, id))?;
                self.out.one(&comment)
            }
            CommentCommand::Update { id, text } => {
                let patch = AudioCommentPatch { content: Some(text) };
                self.out.one(&comments.update(id, patch).await?)
            }
            CommentCommand::Delete { id } => {
                comments.delete(id).await?;
                self.out.value(&json!({ "deleted": id }), &format!("deleted comment {id}"))
            }
        }
    }

    async fn playlist(&self, command: PlaylistCommand) -> anyhow::Result<()> {
        let playlists = repository::<Playlist>(self.module);
        match command {
            PlaylistCommand::Create { project, name, tracks } => {
                let playlist = Playlist::new(project, &name, tracks, self.now())?;
                self.out.one(&playlists.create(playlist).await?)
            }
            PlaylistCommand::List { project } => {
                self.require_project(project).await?;
                self.out.many(&playlists.list_by_parent(project.into()).await?, "no playlists yet")
            }
            PlaylistCommand::Show { id } => {
                let playlist = playlists.get(id).await?.ok_or_else(|| missing(Playlist::ENTITY_TYPE, id))?;
                self.out.one(&playlist)
            }
            PlaylistCommand::Update { id, name, tracks, clear_tracks } => {
                let track_ids = if clear_tracks { Some(Vec::new()) } else { tracks };
                let patch = PlaylistPatch { name, track_ids };
                self.out.one(&playlists.update(id, patch).await?)
            }
            PlaylistCommand::Delete { id } => {
                playlists.delete(id).await?;
                self.out.value(&json!({ "deleted": id }), &format!("deleted playlist {id}"))
            }
        }
    }

    async fn collaborator(&self, command: CollaboratorCommand) -> anyhow::Result<()> {
        let members = repository::<ProjectCollaborator>(self.module);
        match command {
            CollaboratorCommand::Add { project, email, user, role } => {
                let user = match (user, email) {
                    (Some(user), _) => user,
                    (None, Some(email)) => self.account_of(&email).await?,
                    (None, None) => bail!("give --email or --user"),
                };
                let member = ProjectCollaborator::new(project, user, role, self.now())?;
                self.out.one(&members.create(member).await?)
            }
            CollaboratorCommand::List { project } => {
                self.require_project(project).await?;
                let profiles = repository::<UserProfile>(self.module);
                let mut listed = Vec::new();
                for collaborator in members.list_by_parent(project.into()).await? {
                    let profile = profiles.get(collaborator.user_id()).await?;
                    let (name, email) = match profile {
                        Some(p) => (Some(p.name().to_owned()), Some(p.email().to_owned())),
                        None => (None, None),
                    };
                    listed.push(super::output::Member { collaborator, name, email });
                }
                self.out.many(&listed, "no collaborators yet")
            }
            CollaboratorCommand::Update { id, role } => {
                let patch = ProjectCollaboratorPatch { role: Some(role) };
                self.out.one(&members.update(id, patch).await?)
            }
            CollaboratorCommand::Remove { id } => {
                members.delete(id).await?;
                self.out.value(&json!({ "removed": id }), &format!("removed collaborator {id}"))
            }
        }
    }

    async fn queue(&self, action: Option<QueueCommand>) -> anyhow::Result<()> {
        let outbox: &dyn PendingOperationsRepository = self.module.resolve_ref();
        match action {
            None => {}
            Some(QueueCommand::Retry { ids, all }) => {
                let n = outbox.retry_failed(if all { None } else { Some(ids) }).await?;
                return self
                    .out
                    .value(&json!({ "retried": n }), &format!("{n} failed operations will be sent again"));
            }
            Some(QueueCommand::Discard { ids }) => {
                let dropped = outbox.discard_failed(ids).await?;
                return self.out.value(
                    &json!({ "discarded": dropped }),
                    &format!("discarded {} operations (with what depended on them)", dropped.len()),
                );
            }
        }
        let counts = outbox.counts().await?;
        let health = health_of(&counts, self.now(), UpstreamOptions::default().stale_after);
        let operations = outbox.list(None).await?;
        if self.out.json {
            return self
                .out
                .value(&json!({ "health": health, "counts": counts, "operations": operations }), "");
        }
        let age = health
            .oldest_pending_age_ms
            .map(|ms| format!(", oldest {}s old", ms / 1_000))
            .unwrap_or_default();
        say!(
            "upstream {}: {} pending, {} in flight, {} failed{age}",
            serde_json::to_value(health.status)?.as_str().unwrap_or("unknown"),
            counts.pending,
            counts.in_flight,
            counts.failed
        );
        if let Some(error) = &health.last_error {
            say!("last error: {error}");
        }
        self.out.many(&operations, "nothing waiting to sync")
    }

    async fn conflicts(&self, action: Option<ConflictsCommand>, all: bool) -> anyhow::Result<()> {
        let conflicts: &dyn ConflictRepository = self.module.resolve_ref();
        match action {
            None => self.out.many(&conflicts.list(!all).await?, "no open conflicts"),
            Some(ConflictsCommand::Show { id }) => {
                let stored = conflicts.list(false).await?;
                let conflict =
                    stored.iter().find(|c| c.id == id).ok_or_else(|| anyhow!("no conflict {id}"))?;
                if self.out.json {
                    return self.out.value(conflict, "");
                }
                say!("{}", conflict.line());
                if conflict.kind == trackflow_domain::sync::ConflictKind::ParentDeleted {
                    // Nothing of theirs to compare with: what this user wrote, kept here.
                    for (field, value) in &conflict.local {
                        say!("  {field}: yours {value}");
                    }
                    return Ok(());
                }
                for field in &conflict.fields {
                    let side = |values: &std::collections::BTreeMap<String, serde_json::Value>| {
                        values.get(field).map_or_else(|| "(none)".to_owned(), ToString::to_string)
                    };
                    say!("  {field}: mine {}  theirs {}", side(&conflict.local), side(&conflict.remote));
                }
                Ok(())
            }
            Some(ConflictsCommand::Resolve { id, side, merged }) => {
                let resolution = match (side.as_deref(), merged) {
                    (_, Some(values)) => ConflictResolution::Merged(serde_json::from_str(&values).context(
                        "--merged must be a JSON object of field values, e.g. '{\"name\":\"Both\"}'",
                    )?),
                    (Some("mine"), None) => ConflictResolution::Mine,
                    (Some("theirs"), None) => ConflictResolution::Theirs,
                    (other, None) => bail!("choose mine, theirs or --merged, not {other:?}"),
                };
                let resolved = conflicts.resolve(id, resolution).await?;
                self.out.value(&resolved, &format!("resolved {id}; the chosen values are queued to sync"))
            }
        }
    }

    /// The user id of the account `email` belongs to, asked of the server.
    async fn account_of(&self, email: &str) -> anyhow::Result<UserId> {
        let email = trackflow_domain::email_address(email)?;
        let remote = self.quick_remote().context("no HTTP client for the sync server")?;
        let session = HasComponent::<dyn SessionStorage>::resolve_ref(self.module).load().await?;
        let server = session.as_ref().and_then(|s| s.server_url.clone()).unwrap_or_default();
        match remote.account(&email).await {
            Ok(Some(account)) => Ok(account.user_id),
            Ok(None) => {
                bail!("no account on {server} uses {email}: ask them to sign up first, then invite them")
            }
            Err(error) => {
                bail!("looking up {email} needs the sync server ({error}); offline, invite by --user ID")
            }
        }
    }

    async fn require_project(&self, id: trackflow_music::ProjectId) -> anyhow::Result<()> {
        let projects = repository::<Project>(self.module);
        projects
            .get(id)
            .await
            .context("reading projects")?
            .ok_or_else(|| missing(Project::ENTITY_TYPE, id))?;
        Ok(())
    }
}
