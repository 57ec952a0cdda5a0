//! Audio tracks: the recordings in a project.

use super::sync_use_case;
use trackflow_domain::EntityType;

sync_use_case! {
    /// Applies pulled audio tracks. A track lives inside its project and waits for it. Its
    /// duration and its audio hash are fixed once set, so a merge only ever moves the name;
    /// the audio itself is a content-addressed blob, fetched apart from the row.
    SyncAudioTracksUseCase, EntityType::AudioTrack, depends_on: [EntityType::Project]
}
