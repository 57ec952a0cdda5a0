use crate::{AudioComment, AudioTrackId, Project, ProjectId};
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_domain::{
    entities::FieldReader, entities::Parent, entities::Scope, entities::ScopeKind, ports::WriteContext,
    serde_json::Value, uuid::Uuid, validate::required_text, EntityRef, Priority, RepositoryError, SyncEntity,
    Timestamp, UserId, ValidationError,
};

/// An audio track in a project. The audio itself is a content-addressed blob named by its
/// SHA-256 (`audio_sha256`); the track row syncs as soon as it is written, the blob follows.
/// Serialises to its wire fields. It is deliberately not `Deserialize`: every way in goes
/// through the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudioTrack {
    id: AudioTrackId,
    project_id: ProjectId,
    name: String,
    duration_ms: i64,
    audio_sha256: Option<String>,
    uploaded_by: UserId,
    created_at: Timestamp,
}

/// Changes to an [`AudioTrack`]. Its audio may be attached later or replaced; the duration is
/// the audio's length, so it changes only together with the audio (and never below a comment's
/// position: comments are anchored to positions in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioTrackPatch {
    /// A new name.
    pub name: Option<String>,
    /// The SHA-256 of the uploaded audio: attached, or replacing the current audio.
    pub audio_sha256: Option<String>,
    /// The length of that audio, in milliseconds (only with `audio_sha256`).
    pub duration_ms: Option<i64>,
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
        if patch.duration_ms.is_some() && patch.audio_sha256.is_none() {
            return Err(ValidationError::new("duration_ms", "changes only with the audio it measures"));
        }
        Self::restore(
            self.id,
            self.project_id,
            self.uploaded_by,
            patch.name.as_deref().unwrap_or(&self.name),
            patch.duration_ms.unwrap_or(self.duration_ms),
            patch.audio_sha256.as_deref().or(self.audio_sha256.as_deref()),
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
    type Id = AudioTrackId;
    type Patch = AudioTrackPatch;

    const NAME: &'static str = "audio_track";
    const PARENT: Option<Parent> = Some(Parent { entity_type: Project::ENTITY_TYPE, field: "project_id" });
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const PRIORITY: Priority = Priority::Medium;
    const TABLE: &'static str = "audio_tracks";
    const SCOPE_FIELD: &'static str = "project_id";
    const BLOB_FIELD: Option<&'static str> = Some("audio_sha256");
    const FIELDS: &'static [&'static str] =
        &["project_id", "name", "duration_ms", "audio_sha256", "uploaded_by", "created_at"];
    /// The audio and its duration are not listed: they may be replaced, together.
    const IMMUTABLE: &'static [&'static str] = &["project_id", "uploaded_by", "created_at"];

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Self::restore(
            AudioTrackId::from_uuid(id),
            f.required("project_id")?,
            f.required("uploaded_by")?,
            &f.required::<String>("name")?,
            f.required("duration_ms")?,
            f.optional::<String>("audio_sha256")?.as_deref(),
            f.required("created_at")?,
        )
    }

    fn scope(&self) -> Scope {
        Scope::Shared(self.project_id.into())
    }

    fn author(&self) -> Option<UserId> {
        Some(self.uploaded_by)
    }

    fn patched(&self, patch: &AudioTrackPatch) -> Result<Self, ValidationError> {
        AudioTrack::patched(self, patch)
    }

    /// Shorter audio may not leave comments past the track's end.
    fn check_write(
        &self,
        before: Option<&Self>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        if before.is_none_or(|b| b.duration_ms <= self.duration_ms) {
            return Ok(());
        }
        let comments: Vec<AudioComment> = store.children_of(self.id.as_uuid())?;
        let past: Vec<i64> =
            comments.iter().map(AudioComment::timestamp_ms).filter(|at| *at > self.duration_ms).collect();
        match past.iter().max() {
            None => Ok(()),
            Some(last) => Err(ValidationError::new(
                "duration_ms",
                format!(
                    "{} comment(s) lie past the new end ({} ms; the last at {last} ms): delete them first",
                    past.len(),
                    self.duration_ms
                ),
            )
            .into()),
        }
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        vec![EntityRef::new(Project::ENTITY_TYPE, self.project_id.as_uuid())]
    }

    fn parent(&self) -> Option<EntityRef> {
        Some(EntityRef::new(Project::ENTITY_TYPE, self.project_id.as_uuid()))
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
    fn audio_is_attached_and_replaced_with_its_duration() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let track =
            AudioTrack::new(ProjectId::new(), UserId::new(), "T", 5, None, Timestamp(0)).expect("valid");
        let attach = |t: &AudioTrack, hash: &str, duration_ms: Option<i64>| {
            t.patched(&AudioTrackPatch {
                audio_sha256: Some(hash.to_owned()),
                duration_ms,
                ..Default::default()
            })
        };
        let with_audio = attach(&track, &a, Some(7)).expect("attached");
        assert_eq!((with_audio.audio_sha256(), with_audio.duration_ms()), (Some(a.as_str()), 7));
        assert_eq!(attach(&with_audio, &a.to_uppercase(), None).expect("same hash again"), with_audio);
        let replaced = attach(&with_audio, &b, Some(9)).expect("replaced");
        assert_eq!((replaced.audio_sha256(), replaced.duration_ms()), (Some(b.as_str()), 9));
        assert_eq!(attach(&track, "xyz", None).unwrap_err().field, "audio_sha256");
        let duration_alone = AudioTrackPatch { duration_ms: Some(3), ..Default::default() };
        assert_eq!(track.patched(&duration_alone).unwrap_err().field, "duration_ms", "only with its audio");
        assert_eq!(attach(&track, &a, Some(0)).unwrap_err().field, "duration_ms", "validated");
    }

    #[test]
    fn references_its_project() {
        let project = ProjectId::new();
        let track = AudioTrack::new(project, UserId::new(), "T", 5, None, Timestamp(0)).expect("valid");
        assert_eq!(track.references(), [EntityRef::new(Project::ENTITY_TYPE, project.as_uuid())]);
    }
}
