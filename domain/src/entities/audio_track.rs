use super::{EntityRef, EntityType, SyncEntity};
use crate::{
    error::ValidationError,
    ids::{AudioTrackId, ProjectId, UserId},
    time::Timestamp,
    validate::required_text,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An audio track in a project. The audio itself is a content-addressed blob named by its
/// SHA-256 (`audio_sha256`); the track row syncs as soon as it is written, the blob follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioTrack {
    id: AudioTrackId,
    project_id: ProjectId,
    name: String,
    duration_ms: i64,
    audio_sha256: Option<String>,
    uploaded_by: UserId,
    created_at: Timestamp,
}

/// Changes to an [`AudioTrack`]. Duration and audio are fixed once a track exists (comments are
/// anchored to positions in it); upload a new track to replace the audio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioTrackPatch {
    /// A new name.
    pub name: Option<String>,
}

impl AudioTrack {
    /// Longest allowed name, in characters.
    pub const MAX_NAME: usize = 200;
    /// Longest allowed duration: 24 hours.
    pub const MAX_DURATION_MS: i64 = 24 * 60 * 60 * 1_000;

    /// A new track in `project_id`, with a fresh id.
    pub fn new(
        project_id: ProjectId,
        uploaded_by: UserId,
        name: &str,
        duration_ms: i64,
        audio_sha256: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Self::restore(AudioTrackId::new(), project_id, uploaded_by, name, duration_ms, audio_sha256, now)
    }

    /// Rebuilds a track from stored or received parts, validating them.
    pub fn restore(
        id: AudioTrackId,
        project_id: ProjectId,
        uploaded_by: UserId,
        name: &str,
        duration_ms: i64,
        audio_sha256: Option<&str>,
        created_at: Timestamp,
    ) -> Result<Self, ValidationError> {
        if !(1..=Self::MAX_DURATION_MS).contains(&duration_ms) {
            return Err(ValidationError::new(
                "duration_ms",
                format!("must be between 1 and {} ms", Self::MAX_DURATION_MS),
            ));
        }
        let audio_sha256 = match audio_sha256 {
            None => None,
            Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(hash.to_ascii_lowercase())
            }
            Some(_) => return Err(ValidationError::new("audio_sha256", "must be 64 hexadecimal digits")),
        };
        Ok(Self {
            id,
            project_id,
            name: required_text("name", name, Self::MAX_NAME)?,
            duration_ms,
            audio_sha256,
            uploaded_by,
            created_at,
        })
    }

    /// This track with `patch` applied, validated.
    pub fn patched(&self, patch: &AudioTrackPatch) -> Result<Self, ValidationError> {
        Self::restore(
            self.id,
            self.project_id,
            self.uploaded_by,
            patch.name.as_deref().unwrap_or(&self.name),
            self.duration_ms,
            self.audio_sha256.as_deref(),
            self.created_at,
        )
    }

    /// The id.
    pub fn id(&self) -> AudioTrackId {
        self.id
    }
    /// The project holding the track.
    pub fn project_id(&self) -> ProjectId {
        self.project_id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The length of the audio in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        self.duration_ms
    }
    /// The SHA-256 of the audio file, lowercase hex, once one is attached.
    pub fn audio_sha256(&self) -> Option<&str> {
        self.audio_sha256.as_deref()
    }
    /// Who added the track.
    pub fn uploaded_by(&self) -> UserId {
        self.uploaded_by
    }
    /// When the track was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

impl SyncEntity for AudioTrack {
    const ENTITY_TYPE: EntityType = EntityType::AudioTrack;

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        vec![EntityRef::new(EntityType::Project, self.project_id.as_uuid())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_and_hash_are_checked() {
        let hash = "AB".repeat(32);
        let table: [(&str, i64, Option<&str>, Option<&str>); 6] = [
            ("valid without audio", 1_000, None, None),
            ("valid with audio", 1_000, Some(&hash), None),
            ("zero duration", 0, None, Some("duration_ms")),
            ("negative duration", -5, None, Some("duration_ms")),
            ("over a day", AudioTrack::MAX_DURATION_MS + 1, None, Some("duration_ms")),
            ("short hash", 1_000, Some("abc"), Some("audio_sha256")),
        ];
        for (case, duration, sha, failing) in table {
            let result =
                AudioTrack::new(ProjectId::new(), UserId::new(), "Take 1", duration, sha, Timestamp(0));
            assert_eq!(result.as_ref().err().map(|e| e.field), failing, "{case}");
        }
        let track = AudioTrack::new(ProjectId::new(), UserId::new(), "T", 5, Some(&hash), Timestamp(0))
            .expect("valid");
        assert_eq!(track.audio_sha256(), Some("ab".repeat(32).as_str()), "hash is normalised");
    }

    #[test]
    fn references_its_project() {
        let project = ProjectId::new();
        let track = AudioTrack::new(project, UserId::new(), "T", 5, None, Timestamp(0)).expect("valid");
        assert_eq!(track.references(), [EntityRef::new(EntityType::Project, project.as_uuid())]);
    }
}
