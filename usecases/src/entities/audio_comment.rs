//! Audio comments: remarks anchored at a position in a track.

use super::sync_use_case;
use trackflow_domain::EntityType;

sync_use_case! {
    /// Applies pulled comments. A comment lives inside its track: it never lands before the
    /// track is stored here. A comment pulled first (the track on a later page, or in a pull
    /// still running) waits in the store and is applied in the transaction that stores its
    /// track.
    SyncAudioCommentsUseCase, EntityType::AudioComment, depends_on: [EntityType::AudioTrack]
}
