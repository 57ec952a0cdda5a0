//! `trackflow demo`: a guided tour of what works today — an offline session of a music
//! collaborator, every write landing in the local database and the outbox at once.

use crate::wiring::LocalModule;
use shaku::HasComponent;
use std::time::Instant;
use trackflow_domain::{
    ports::{
        AudioCommentRepository, AudioTrackRepository, Clock, CollaboratorRepository,
        PendingOperationsRepository, PlaylistRepository, ProjectRepository, SessionStorage,
        UserProfileRepository,
    },
    AudioComment, AudioTrack, CollaboratorRole, OperationKind, Playlist, Project, ProjectCollaborator,
    ProjectPatch, UserId,
};

/// Runs the tour against `module` and prints what happens.
pub async fn run(module: &LocalModule) -> anyhow::Result<()> {
    let clock: &dyn Clock = module.resolve_ref();
    let sessions: &dyn SessionStorage = module.resolve_ref();
    let profiles: &dyn UserProfileRepository = module.resolve_ref();
    let projects: &dyn ProjectRepository = module.resolve_ref();
    let tracks: &dyn AudioTrackRepository = module.resolve_ref();
    let comments: &dyn AudioCommentRepository = module.resolve_ref();
    let playlists: &dyn PlaylistRepository = module.resolve_ref();
    let members: &dyn CollaboratorRepository = module.resolve_ref();
    let outbox: &dyn PendingOperationsRepository = module.resolve_ref();

    println!("TrackFlow Sync demo — offline-first writes (no server involved yet)\n");
    let started = Instant::now();
    let existing = match sessions.load().await? {
        Some(session) => profiles.get(session.user_id).await?,
        None => None,
    };
    let me = match existing {
        Some(profile) => profile.id(),
        None => {
            let profile = crate::local_user::create(module, "Demo Producer", "producer@example.com").await?;
            println!("• created profile {} <{}>", profile.name(), profile.email());
            profile.id()
        }
    };

    let project = projects
        .create(Project::new(me, "Night Drive EP", Some("Four tracks, one late night"), clock.now())?)
        .await?;
    println!("• created project \"{}\"", project.name());

    let mut added = Vec::new();
    for (name, seconds) in [("Intro", 72), ("Neon Streets", 215), ("Afterglow", 198)] {
        let track = tracks
            .create(AudioTrack::new(project.id(), me, name, seconds * 1_000, None, clock.now())?)
            .await?;
        println!("• added track \"{}\" ({})", track.name(), crate::cli::format_position(track.duration_ms()));
        added.push(track);
    }

    let comment = comments
        .create(AudioComment::new(&added[1], me, "Bass drops too early here", 63_500, clock.now())?)
        .await?;
    println!(
        "• commented at {} on \"{}\": {}",
        crate::cli::format_position(comment.timestamp_ms()),
        added[1].name(),
        comment.content()
    );
    match AudioComment::new(&added[0], me, "Past the end", 90_000, clock.now()) {
        Err(e) => println!("• refused a comment past the end of \"{}\": {e}", added[0].name()),
        Ok(_) => anyhow::bail!("a comment past the end of a track was accepted"),
    }

    let order = vec![added[2].id(), added[0].id(), added[1].id()];
    let playlist =
        playlists.create(Playlist::new(project.id(), "Listening order", order, clock.now())?).await?;
    println!("• created playlist \"{}\" with {} tracks", playlist.name(), playlist.track_ids().len());

    let guest = UserId::new();
    members
        .create(ProjectCollaborator::new(project.id(), guest, CollaboratorRole::Editor, clock.now())?)
        .await?;
    println!("• invited user {guest} as editor");

    let project = projects
        .update(
            project.id(),
            ProjectPatch { name: Some("Night Drive EP (mix 2)".into()), ..Default::default() },
        )
        .await?;
    println!("• renamed the project to \"{}\" (only the changed field is queued)", project.name());
    tracks.delete(added[0].id()).await?;
    println!("• deleted track \"{}\" (a tombstone; reads no longer show it)", added[0].name());
    let elapsed = started.elapsed();

    let counts = outbox.counts().await?;
    let queued = outbox.list(None).await?;
    println!("\nAll of that took {:.1} ms and touched no network.", elapsed.as_secs_f64() * 1e3);
    println!("The outbox now holds {} operations waiting for the sync server:", counts.pending);
    for op in queued.iter().rev().take(4).rev() {
        let fields: Vec<&str> = op.changed_fields.keys().map(String::as_str).collect();
        let detail = match op.kind {
            OperationKind::Update => format!(" fields [{}]", fields.join(", ")),
            _ => String::new(),
        };
        println!("  {:<8} {:<6} {}{detail}", op.priority, op.kind, op.entity);
    }
    println!("  ... and {} more. See them all with `trackflow queue`.", queued.len().saturating_sub(4));
    let live = tracks.list_by_project(project.id()).await?;
    println!("\nProject \"{}\" now lists {} live tracks.", project.name(), live.len());
    Ok(())
}
