//! Playlists: ordered selections of a project's tracks.

use super::sync_use_case;
use trackflow_domain::EntityType;

sync_use_case! {
    /// Applies pulled playlists. A playlist lives inside its project and waits for it; it
    /// refers to tracks, so it goes after the tracks on its page. A track it names that is not
    /// here (deleted, or not pulled yet) is simply not shown; the playlist is never dropped
    /// for it.
    SyncPlaylistsUseCase, EntityType::Playlist, depends_on: [EntityType::Project, EntityType::AudioTrack]
}
