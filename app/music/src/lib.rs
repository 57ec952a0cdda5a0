//! # trackflow-music
//!
//! TrackFlow Sync's first model, and its demo: music collaboration. A user has a profile; a
//! project is the root of a shared scope, owned by its creator, shared with collaborators
//! (editors and viewers); inside it live audio tracks (each naming its audio file), comments
//! anchored at a position in a track, and playlists of its tracks.
//!
//! Each type is declared once, in its own file, by its `SyncEntity` implementation, and listed
//! in [`registry`]: the same public API any other program uses (`examples/tasks` is another).
//! The engine crates name none of these types.

mod audio_comment;
mod audio_track;
mod collaborator;
mod playlist;
mod project;
mod user_profile;

pub use audio_comment::{AudioComment, AudioCommentPatch};
pub use audio_track::{AudioTrack, AudioTrackPatch};
pub use collaborator::{ProjectCollaborator, ProjectCollaboratorPatch};
pub use playlist::{Playlist, PlaylistPatch};
pub use project::{Project, ProjectPatch};
pub use user_profile::{UserProfile, UserProfilePatch};

use trackflow_domain::entities::{AppMigration, Registry, RegistryError};

trackflow_domain::typed_id!(
    /// Identifies a [`Project`].
    ProjectId, "project"
);
trackflow_domain::typed_id!(
    /// Identifies an [`AudioTrack`].
    AudioTrackId, "audio track"
);
trackflow_domain::typed_id!(
    /// Identifies an [`AudioComment`].
    AudioCommentId, "audio comment"
);
trackflow_domain::typed_id!(
    /// Identifies a [`Playlist`].
    PlaylistId, "playlist"
);
trackflow_domain::typed_id!(
    /// Identifies a [`ProjectCollaborator`] membership.
    CollaboratorId, "collaborator"
);

/// The music model's types, parents before children, with their tables.
pub fn registry() -> Registry {
    Registry::new()
        .with::<UserProfile>()
        .and_then(Registry::with::<Project>)
        .and_then(Registry::with::<ProjectCollaborator>)
        .and_then(Registry::with::<AudioTrack>)
        .and_then(Registry::with::<AudioComment>)
        .and_then(Registry::with::<Playlist>)
        .and_then(|registry| registry.with_schema(SCHEMA))
        .expect("the music types are listed parents first, with one migration per version")
}

/// The local tables of the music model's types, applied when a local database opens.
pub const SCHEMA: &[AppMigration] = &[AppMigration {
    version: "2026-11-27-000000_music",
    up: include_str!("../migrations/2026-11-27-000000_music/up.sql"),
}];

/// Installs [`registry`] as the process's registry: call it at start, before anything reads an
/// entity type by name. Installing it again is no error; installing it after another program's
/// registry is.
pub fn install() -> Result<&'static Registry, RegistryError> {
    registry().install()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_time_ordered() {
        let a = ProjectId::new();
        let b = ProjectId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b, "UUID v7 ids generated in sequence sort in sequence");
    }

    #[test]
    fn parse_round_trips_and_names_the_kind_on_error() {
        let id = AudioTrackId::new();
        assert_eq!(id.to_string().parse::<AudioTrackId>(), Ok(id));
        let err = "not-a-uuid".parse::<AudioTrackId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid audio track id 'not-a-uuid': expected a UUID");
    }
}
