//! The offline-first repositories: the domain's repository ports over the local store. Writes
//! go through the shared transaction code in `records`; this file holds only what differs per
//! entity — its lists and its extra checks.

use super::{
    blobs::audio_upload,
    records::{no_check, require_visible, WriteClock},
    rows::{AudioCommentRow, AudioTrackRow, CollaboratorRow, PlaylistRow, ProjectRow, UserProfileRow},
    schema::{audio_comments, audio_tracks, playlists, project_collaborators, projects, user_profiles},
    LocalStore,
};
use async_trait::async_trait;
use diesel::prelude::*;
use shaku::Component;
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    ports::{
        AudioCommentRepository, AudioTrackRepository, CollaboratorRepository, PlaylistRepository,
        ProjectRepository, UserProfileRepository,
    },
    AudioComment, AudioCommentId, AudioCommentPatch, AudioTrack, AudioTrackId, AudioTrackPatch,
    CollaboratorId, EntityRef, EntityType, OperationId, Playlist, PlaylistId, PlaylistPatch, Project,
    ProjectCollaborator, ProjectCollaboratorPatch, ProjectId, ProjectPatch, RepositoryError, UserId,
    UserProfile, UserProfilePatch, ValidationError,
};

/// Declares a repository component holding the store, with a plain constructor for code that
/// does not use the shaku module.
macro_rules! repository {
    ($(#[$doc:meta])* $name:ident: $interface:ident) => {
        $(#[$doc])*
        #[derive(Component)]
        #[shaku(interface = $interface)]
        pub struct $name {
            /// The local database.
            store: LocalStore,
        }

        impl $name {
            /// A repository over `store`.
            pub fn new(store: LocalStore) -> Self {
                Self { store }
            }
        }
    };
}

repository!(
    /// Projects in the local store.
    SqliteProjectRepository: ProjectRepository
);
repository!(
    /// Audio tracks in the local store.
    SqliteAudioTrackRepository: AudioTrackRepository
);
repository!(
    /// Audio comments in the local store.
    SqliteAudioCommentRepository: AudioCommentRepository
);
repository!(
    /// User profiles in the local store.
    SqliteUserProfileRepository: UserProfileRepository
);
repository!(
    /// Playlists in the local store.
    SqlitePlaylistRepository: PlaylistRepository
);
repository!(
    /// Project memberships in the local store.
    SqliteCollaboratorRepository: CollaboratorRepository
);

#[async_trait]
impl ProjectRepository for SqliteProjectRepository {
    #[tracing::instrument(skip_all, fields(id = %project.id()))]
    async fn create(&self, project: Project) -> Result<Project, RepositoryError> {
        self.store.create_entity(project, no_check).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn update(&self, id: ProjectId, patch: ProjectPatch) -> Result<Project, RepositoryError> {
        self.store.update_entity(id.as_uuid(), move |p: &Project| p.patched(&patch), no_check).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn delete(&self, id: ProjectId) -> Result<(), RepositoryError> {
        self.store.delete_entity::<Project>(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: ProjectId) -> Result<Option<Project>, RepositoryError> {
        self.store.get_visible(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%user))]
    async fn list_by_user(&self, user: UserId) -> Result<Vec<Project>, RepositoryError> {
        self.store
            .list(None, move |conn| {
                let user = user.to_string();
                let member_of = project_collaborators::table
                    .filter(project_collaborators::user_id.eq(user.clone()))
                    .filter(project_collaborators::deleted.eq(false))
                    .select(project_collaborators::project_id);
                projects::table
                    .filter(projects::deleted.eq(false))
                    .filter(projects::owner_id.eq(user).or(projects::id.eq_any(member_of)))
                    .order((projects::created_at, projects::id))
                    .select(ProjectRow::as_select())
                    .load(conn)
            })
            .await
    }
}

#[async_trait]
impl AudioTrackRepository for SqliteAudioTrackRepository {
    #[tracing::instrument(skip_all, fields(id = %track.id()))]
    async fn create(&self, track: AudioTrack) -> Result<AudioTrack, RepositoryError> {
        self.store.create_entity(track, audio_upload).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn update(&self, id: AudioTrackId, patch: AudioTrackPatch) -> Result<AudioTrack, RepositoryError> {
        self.store.update_entity(id.as_uuid(), move |t: &AudioTrack| t.patched(&patch), audio_upload).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn delete(&self, id: AudioTrackId) -> Result<(), RepositoryError> {
        self.store.delete_entity::<AudioTrack>(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: AudioTrackId) -> Result<Option<AudioTrack>, RepositoryError> {
        self.store.get_visible(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%project))]
    async fn list_by_project(&self, project: ProjectId) -> Result<Vec<AudioTrack>, RepositoryError> {
        self.store
            .list(Some(EntityRef::new(EntityType::Project, project.as_uuid())), move |conn| {
                audio_tracks::table
                    .filter(audio_tracks::project_id.eq(project.to_string()))
                    .filter(audio_tracks::deleted.eq(false))
                    .order((audio_tracks::created_at, audio_tracks::id))
                    .select(AudioTrackRow::as_select())
                    .load(conn)
            })
            .await
    }
}

/// A comment's position must lie within its track as stored.
fn check_comment(
    conn: &mut SqliteConnection,
    _clock: &WriteClock,
    comment: &AudioComment,
    _before: Option<&AudioComment>,
) -> StoreResult<Vec<OperationId>> {
    let track = require_visible::<AudioTrack>(conn, comment.track_id().as_uuid())?;
    comment.check_track(&track.entity)?;
    Ok(Vec::new())
}

#[async_trait]
impl AudioCommentRepository for SqliteAudioCommentRepository {
    #[tracing::instrument(skip_all, fields(id = %comment.id()))]
    async fn create(&self, comment: AudioComment) -> Result<AudioComment, RepositoryError> {
        self.store.create_entity(comment, check_comment).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn update(
        &self,
        id: AudioCommentId,
        patch: AudioCommentPatch,
    ) -> Result<AudioComment, RepositoryError> {
        self.store.update_entity(id.as_uuid(), move |c: &AudioComment| c.patched(&patch), check_comment).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn delete(&self, id: AudioCommentId) -> Result<(), RepositoryError> {
        self.store.delete_entity::<AudioComment>(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: AudioCommentId) -> Result<Option<AudioComment>, RepositoryError> {
        self.store.get_visible(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%track))]
    async fn list_by_track(&self, track: AudioTrackId) -> Result<Vec<AudioComment>, RepositoryError> {
        self.store
            .list(Some(EntityRef::new(EntityType::AudioTrack, track.as_uuid())), move |conn| {
                audio_comments::table
                    .filter(audio_comments::track_id.eq(track.to_string()))
                    .filter(audio_comments::deleted.eq(false))
                    .order((audio_comments::timestamp_ms, audio_comments::created_at, audio_comments::id))
                    .select(AudioCommentRow::as_select())
                    .load(conn)
            })
            .await
    }
}

#[async_trait]
impl UserProfileRepository for SqliteUserProfileRepository {
    #[tracing::instrument(skip_all, fields(id = %profile.id()))]
    async fn create(&self, profile: UserProfile) -> Result<UserProfile, RepositoryError> {
        self.store.create_entity(profile, no_check).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn update(&self, id: UserId, patch: UserProfilePatch) -> Result<UserProfile, RepositoryError> {
        self.store.update_entity(id.as_uuid(), move |p: &UserProfile| p.patched(&patch), no_check).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn delete(&self, id: UserId) -> Result<(), RepositoryError> {
        self.store.delete_entity::<UserProfile>(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: UserId) -> Result<Option<UserProfile>, RepositoryError> {
        self.store.get_visible(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all)]
    async fn list(&self) -> Result<Vec<UserProfile>, RepositoryError> {
        self.store
            .list(None, |conn| {
                user_profiles::table
                    .filter(user_profiles::deleted.eq(false))
                    .order((user_profiles::name, user_profiles::id))
                    .select(UserProfileRow::as_select())
                    .load(conn)
            })
            .await
    }
}

/// Every track a write adds to a playlist must be a visible track of the playlist's project.
/// Tracks it already held may have been deleted since; they stay until the playlist is edited.
fn check_playlist(
    conn: &mut SqliteConnection,
    _clock: &WriteClock,
    playlist: &Playlist,
    before: Option<&Playlist>,
) -> StoreResult<Vec<OperationId>> {
    let held = before.map(Playlist::track_ids).unwrap_or_default();
    for track_id in playlist.track_ids().iter().filter(|t| !held.contains(t)) {
        let track = require_visible::<AudioTrack>(conn, track_id.as_uuid())?;
        if track.entity.project_id() != playlist.project_id() {
            return Err(ValidationError::new(
                "track_ids",
                format!("track {track_id} belongs to another project"),
            )
            .into());
        }
    }
    Ok(Vec::new())
}

#[async_trait]
impl PlaylistRepository for SqlitePlaylistRepository {
    #[tracing::instrument(skip_all, fields(id = %playlist.id()))]
    async fn create(&self, playlist: Playlist) -> Result<Playlist, RepositoryError> {
        self.store.create_entity(playlist, check_playlist).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn update(&self, id: PlaylistId, patch: PlaylistPatch) -> Result<Playlist, RepositoryError> {
        self.store.update_entity(id.as_uuid(), move |p: &Playlist| p.patched(&patch), check_playlist).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn delete(&self, id: PlaylistId) -> Result<(), RepositoryError> {
        self.store.delete_entity::<Playlist>(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: PlaylistId) -> Result<Option<Playlist>, RepositoryError> {
        self.store.get_visible(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%project))]
    async fn list_by_project(&self, project: ProjectId) -> Result<Vec<Playlist>, RepositoryError> {
        self.store
            .list(Some(EntityRef::new(EntityType::Project, project.as_uuid())), move |conn| {
                playlists::table
                    .filter(playlists::project_id.eq(project.to_string()))
                    .filter(playlists::deleted.eq(false))
                    .order((playlists::created_at, playlists::id))
                    .select(PlaylistRow::as_select())
                    .load(conn)
            })
            .await
    }
}

/// A user joins a project at most once, and the owner is never a collaborator.
fn check_membership(
    conn: &mut SqliteConnection,
    _clock: &WriteClock,
    member: &ProjectCollaborator,
    _before: Option<&ProjectCollaborator>,
) -> StoreResult<Vec<OperationId>> {
    let project = require_visible::<Project>(conn, member.project_id().as_uuid())?;
    if project.entity.owner_id() == member.user_id() {
        return Err(ValidationError::new("user_id", "is the project's owner").into());
    }
    let existing: i64 = project_collaborators::table
        .filter(project_collaborators::project_id.eq(member.project_id().to_string()))
        .filter(project_collaborators::user_id.eq(member.user_id().to_string()))
        .filter(project_collaborators::deleted.eq(false))
        .filter(project_collaborators::id.ne(member.id().to_string()))
        .count()
        .get_result(conn)?;
    if existing > 0 {
        return Err(StoreError::Conflict(format!(
            "user {} is already a collaborator of project {}",
            member.user_id(),
            member.project_id()
        )));
    }
    Ok(Vec::new())
}

#[async_trait]
impl CollaboratorRepository for SqliteCollaboratorRepository {
    #[tracing::instrument(skip_all, fields(id = %collaborator.id()))]
    async fn create(
        &self,
        collaborator: ProjectCollaborator,
    ) -> Result<ProjectCollaborator, RepositoryError> {
        self.store.create_entity(collaborator, check_membership).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn update(
        &self,
        id: CollaboratorId,
        patch: ProjectCollaboratorPatch,
    ) -> Result<ProjectCollaborator, RepositoryError> {
        self.store
            .update_entity(id.as_uuid(), move |c: &ProjectCollaborator| c.patched(&patch), no_check)
            .await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn delete(&self, id: CollaboratorId) -> Result<(), RepositoryError> {
        self.store.delete_entity::<ProjectCollaborator>(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: CollaboratorId) -> Result<Option<ProjectCollaborator>, RepositoryError> {
        self.store.get_visible(id.as_uuid()).await
    }

    #[tracing::instrument(skip_all, fields(%project))]
    async fn list_by_project(&self, project: ProjectId) -> Result<Vec<ProjectCollaborator>, RepositoryError> {
        self.store
            .list(Some(EntityRef::new(EntityType::Project, project.as_uuid())), move |conn| {
                project_collaborators::table
                    .filter(project_collaborators::project_id.eq(project.to_string()))
                    .filter(project_collaborators::deleted.eq(false))
                    .order((project_collaborators::created_at, project_collaborators::id))
                    .select(CollaboratorRow::as_select())
                    .load(conn)
            })
            .await
    }
}
