//! Offline-first repositories, one per entity. Every write changes the local store and queues
//! its outbox operation in one transaction and returns without touching the network; reads are
//! served from the local store and never show deleted (tombstoned) rows.

use crate::{
    entities::{
        AudioComment, AudioCommentPatch, AudioTrack, AudioTrackPatch, Playlist, PlaylistPatch, Project,
        ProjectCollaborator, ProjectCollaboratorPatch, ProjectPatch, UserProfile, UserProfilePatch,
    },
    error::RepositoryError,
    ids::{AudioCommentId, AudioTrackId, CollaboratorId, PlaylistId, ProjectId, UserId},
};
use async_trait::async_trait;
use shaku::Interface;

/// Projects.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProjectRepository: Interface {
    /// Stores a new project and queues its create.
    async fn create(&self, project: Project) -> Result<Project, RepositoryError>;
    /// Applies `patch` and queues an update of the fields that changed (none: nothing queued).
    async fn update(&self, id: ProjectId, patch: ProjectPatch) -> Result<Project, RepositoryError>;
    /// Tombstones the project (and, locally, everything inside it) and queues its delete.
    async fn delete(&self, id: ProjectId) -> Result<(), RepositoryError>;
    /// One live project.
    async fn get(&self, id: ProjectId) -> Result<Option<Project>, RepositoryError>;
    /// The live projects `user` owns or collaborates on, oldest first.
    async fn list_by_user(&self, user: UserId) -> Result<Vec<Project>, RepositoryError>;
}

/// Audio tracks.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AudioTrackRepository: Interface {
    /// Stores a new track in a live project and queues its create.
    async fn create(&self, track: AudioTrack) -> Result<AudioTrack, RepositoryError>;
    /// Applies `patch` and queues an update of the fields that changed.
    async fn update(&self, id: AudioTrackId, patch: AudioTrackPatch) -> Result<AudioTrack, RepositoryError>;
    /// Tombstones the track (and, locally, its comments) and queues its delete.
    async fn delete(&self, id: AudioTrackId) -> Result<(), RepositoryError>;
    /// One live track.
    async fn get(&self, id: AudioTrackId) -> Result<Option<AudioTrack>, RepositoryError>;
    /// The live tracks of a project, oldest first.
    async fn list_by_project(&self, project: ProjectId) -> Result<Vec<AudioTrack>, RepositoryError>;
}

/// Comments on audio tracks.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AudioCommentRepository: Interface {
    /// Stores a new comment on a live track (checking its position against the track as
    /// stored) and queues its create.
    async fn create(&self, comment: AudioComment) -> Result<AudioComment, RepositoryError>;
    /// Applies `patch` and queues an update of the fields that changed.
    async fn update(
        &self,
        id: AudioCommentId,
        patch: AudioCommentPatch,
    ) -> Result<AudioComment, RepositoryError>;
    /// Tombstones the comment and queues its delete.
    async fn delete(&self, id: AudioCommentId) -> Result<(), RepositoryError>;
    /// One live comment.
    async fn get(&self, id: AudioCommentId) -> Result<Option<AudioComment>, RepositoryError>;
    /// The live comments of a track, by position in the track.
    async fn list_by_track(&self, track: AudioTrackId) -> Result<Vec<AudioComment>, RepositoryError>;
}

/// User profiles.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UserProfileRepository: Interface {
    /// Stores a new profile and queues its create.
    async fn create(&self, profile: UserProfile) -> Result<UserProfile, RepositoryError>;
    /// Applies `patch` and queues an update of the fields that changed.
    async fn update(&self, id: UserId, patch: UserProfilePatch) -> Result<UserProfile, RepositoryError>;
    /// Tombstones the profile and queues its delete.
    async fn delete(&self, id: UserId) -> Result<(), RepositoryError>;
    /// One live profile.
    async fn get(&self, id: UserId) -> Result<Option<UserProfile>, RepositoryError>;
    /// Every live profile this replica knows (its user's and their collaborators').
    async fn list(&self) -> Result<Vec<UserProfile>, RepositoryError>;
}

/// Playlists.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PlaylistRepository: Interface {
    /// Stores a new playlist of live tracks of its project and queues its create.
    async fn create(&self, playlist: Playlist) -> Result<Playlist, RepositoryError>;
    /// Applies `patch` and queues an update of the fields that changed.
    async fn update(&self, id: PlaylistId, patch: PlaylistPatch) -> Result<Playlist, RepositoryError>;
    /// Tombstones the playlist and queues its delete.
    async fn delete(&self, id: PlaylistId) -> Result<(), RepositoryError>;
    /// One live playlist.
    async fn get(&self, id: PlaylistId) -> Result<Option<Playlist>, RepositoryError>;
    /// The live playlists of a project, oldest first.
    async fn list_by_project(&self, project: ProjectId) -> Result<Vec<Playlist>, RepositoryError>;
}

/// Project memberships.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CollaboratorRepository: Interface {
    /// Adds a member to a live project and queues the create. A user holds at most one live
    /// membership per project.
    async fn create(&self, collaborator: ProjectCollaborator)
        -> Result<ProjectCollaborator, RepositoryError>;
    /// Changes a member's role and queues the update.
    async fn update(
        &self,
        id: CollaboratorId,
        patch: ProjectCollaboratorPatch,
    ) -> Result<ProjectCollaborator, RepositoryError>;
    /// Removes a member and queues the delete.
    async fn delete(&self, id: CollaboratorId) -> Result<(), RepositoryError>;
    /// One live membership.
    async fn get(&self, id: CollaboratorId) -> Result<Option<ProjectCollaborator>, RepositoryError>;
    /// The live members of a project, oldest first.
    async fn list_by_project(&self, project: ProjectId) -> Result<Vec<ProjectCollaborator>, RepositoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntityRef, EntityType, Timestamp};
    use mockall::predicate::eq;

    /// Code written against the port runs unchanged against the generated mock.
    async fn rename_or_report(
        repo: &dyn ProjectRepository,
        id: ProjectId,
    ) -> Result<String, RepositoryError> {
        let patch = ProjectPatch { name: Some("Renamed".into()), ..Default::default() };
        repo.update(id, patch).await.map(|p| p.name().to_owned())
    }

    #[tokio::test]
    async fn ports_are_mockable() {
        let project = Project::new(UserId::new(), "Demo", None, Timestamp(0)).expect("valid");
        let (known, unknown) = (project.id(), ProjectId::new());
        let mut repo = MockProjectRepository::new();
        repo.expect_update()
            .with(eq(known), mockall::predicate::always())
            .times(1)
            .returning(move |_, patch| Ok(project.patched(&patch).expect("valid")));
        repo.expect_update().with(eq(unknown), mockall::predicate::always()).times(1).returning(|id, _| {
            Err(RepositoryError::NotFound(EntityRef::new(EntityType::Project, id.as_uuid())))
        });

        assert_eq!(rename_or_report(&repo, known).await.expect("renamed"), "Renamed");
        let err = rename_or_report(&repo, unknown).await.expect_err("unknown project");
        assert_eq!(err.to_string(), format!("project {} not found", unknown.as_uuid()));
    }
}
