use crate::{AudioCommentId, AudioTrack, AudioTrackId, ProjectId};
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_domain::{
    entities::FieldReader, entities::Index, entities::Parent, entities::Scope, entities::ScopeKind,
    entities::WriteRule, ports::WriteContext, serde_json::Value, uuid::Uuid, validate::required_text,
    EntityRef, Priority, RepositoryError, SyncEntity, Timestamp, UserId, ValidationError,
};

/// A comment anchored at a position in an audio track.
/// Serialises to its wire fields. It is deliberately not `Deserialize`: every way in goes
/// through the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudioComment {
    id: AudioCommentId,
    project_id: ProjectId,
    track_id: AudioTrackId,
    author_id: UserId,
    content: String,
    timestamp_ms: i64,
    created_at: Timestamp,
}

/// Changes to an [`AudioComment`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioCommentPatch {
    /// New text.
    pub content: Option<String>,
}

impl AudioComment {
    /// Longest allowed comment, in characters.
    pub const MAX_CONTENT: usize = 2_000;

    /// A new comment on `track` at `timestamp_ms`, which must lie within the track.
    pub fn new(
        track: &AudioTrack,
        author_id: UserId,
        content: &str,
        timestamp_ms: i64,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let comment = Self::restore(
            AudioCommentId::new(),
            track.project_id(),
            track.id(),
            author_id,
            content,
            timestamp_ms,
            now,
        )?;
        comment.check_track(track)?;
        Ok(comment)
    }

    /// Rebuilds a comment from stored or received parts, validating what can be checked
    /// without the track; [`AudioComment::check_track`] checks the rest.
    pub fn restore(
        id: AudioCommentId,
        project_id: ProjectId,
        track_id: AudioTrackId,
        author_id: UserId,
        content: &str,
        timestamp_ms: i64,
        created_at: Timestamp,
    ) -> Result<Self, ValidationError> {
        if timestamp_ms < 0 {
            return Err(ValidationError::new("timestamp_ms", "must not be negative"));
        }
        Ok(Self {
            id,
            project_id,
            track_id,
            author_id,
            content: required_text("content", content, Self::MAX_CONTENT)?,
            timestamp_ms,
            created_at,
        })
    }

    /// The index of comments by their author (`Repository::list_by`).
    pub const BY_AUTHOR: &'static str = "author";

    /// Checks that the comment belongs to `track` and its position lies within it.
    pub fn check_track(&self, track: &AudioTrack) -> Result<(), ValidationError> {
        if track.id() != self.track_id {
            return Err(ValidationError::new("track_id", "names a different track"));
        }
        if track.project_id() != self.project_id {
            return Err(ValidationError::new("project_id", "is not the track's project"));
        }
        if self.timestamp_ms > track.duration_ms() {
            return Err(ValidationError::new(
                "timestamp_ms",
                format!("{} ms is past the end of the track ({} ms)", self.timestamp_ms, track.duration_ms()),
            ));
        }
        Ok(())
    }

    /// This comment with `patch` applied, validated.
    pub fn patched(&self, patch: &AudioCommentPatch) -> Result<Self, ValidationError> {
        Self::restore(
            self.id,
            self.project_id,
            self.track_id,
            self.author_id,
            patch.content.as_deref().unwrap_or(&self.content),
            self.timestamp_ms,
            self.created_at,
        )
    }

    /// The id.
    pub fn id(&self) -> AudioCommentId {
        self.id
    }
    /// The project of the commented track.
    pub fn project_id(&self) -> ProjectId {
        self.project_id
    }
    /// The commented track.
    pub fn track_id(&self) -> AudioTrackId {
        self.track_id
    }
    /// Who wrote the comment.
    pub fn author_id(&self) -> UserId {
        self.author_id
    }
    /// The text.
    pub fn content(&self) -> &str {
        &self.content
    }
    /// The position in the track, in milliseconds from its start.
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    /// When the comment was written.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

impl SyncEntity for AudioComment {
    type Id = AudioCommentId;
    type Patch = AudioCommentPatch;

    const NAME: &'static str = "audio_comment";
    const PARENT: Option<Parent> = Some(Parent { entity_type: AudioTrack::ENTITY_TYPE, field: "track_id" });
    const SCOPE: ScopeKind = ScopeKind::Shared;
    // A comment belongs to whoever wrote it: nobody else rewrites it under their name, and
    // besides its author only the project's owner removes it.
    const WRITE: WriteRule = WriteRule::AUTHORED;
    const PRIORITY: Priority = Priority::Medium;
    const TABLE: &'static str = "audio_comments";
    const SCOPE_FIELD: &'static str = "project_id";
    const ORDER: &'static [&'static str] = &["timestamp_ms", "created_at"];
    const INDEXES: &'static [Index] = &[Index::on(AudioComment::BY_AUTHOR, "author_id")];
    const FIELDS: &'static [&'static str] =
        &["project_id", "track_id", "author_id", "content", "timestamp_ms", "created_at"];
    const IMMUTABLE: &'static [&'static str] =
        &["project_id", "track_id", "author_id", "timestamp_ms", "created_at"];

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Self::restore(
            AudioCommentId::from_uuid(id),
            f.required("project_id")?,
            f.required("track_id")?,
            f.required("author_id")?,
            &f.required::<String>("content")?,
            f.required("timestamp_ms")?,
            f.required("created_at")?,
        )
    }

    fn scope(&self) -> Scope {
        Scope::Shared(self.project_id.into())
    }

    fn author(&self) -> Option<UserId> {
        Some(self.author_id)
    }

    fn patched(&self, patch: &AudioCommentPatch) -> Result<Self, ValidationError> {
        AudioComment::patched(self, patch)
    }

    /// A comment's position must lie within its track as stored.
    fn check_write(
        &self,
        _before: Option<&Self>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        let track: AudioTrack = store.require(self.track_id.as_uuid())?;
        Ok(self.check_track(&track)?)
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        vec![EntityRef::new(AudioTrack::ENTITY_TYPE, self.track_id.as_uuid())]
    }

    fn parent(&self) -> Option<EntityRef> {
        Some(EntityRef::new(AudioTrack::ENTITY_TYPE, self.track_id.as_uuid()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_must_lie_within_the_track() {
        let track =
            AudioTrack::new(ProjectId::new(), UserId::new(), "T", 60_000, None, Timestamp(0)).expect("valid");
        let table = [
            ("start", 0, None),
            ("middle", 30_000, None),
            ("exact end", 60_000, None),
            ("past the end", 60_001, Some("timestamp_ms")),
            ("negative", -1, Some("timestamp_ms")),
        ];
        for (case, at, failing) in table {
            let result = AudioComment::new(&track, UserId::new(), "nice", at, Timestamp(0));
            assert_eq!(result.err().map(|e| e.field), failing, "{case}");
        }
    }

    #[test]
    fn content_is_required_and_bounded() {
        let track =
            AudioTrack::new(ProjectId::new(), UserId::new(), "T", 10, None, Timestamp(0)).expect("valid");
        for (case, text) in [("empty", String::new()), ("too long", "c".repeat(2_001))] {
            let err = AudioComment::new(&track, UserId::new(), &text, 0, Timestamp(0)).unwrap_err();
            assert_eq!(err.field, "content", "{case}");
        }
    }

    #[test]
    fn a_comment_is_checked_against_its_own_track_only() {
        let track =
            AudioTrack::new(ProjectId::new(), UserId::new(), "T", 10, None, Timestamp(0)).expect("valid");
        let other =
            AudioTrack::new(track.project_id(), UserId::new(), "U", 10, None, Timestamp(0)).expect("valid");
        let comment = AudioComment::new(&track, UserId::new(), "x", 5, Timestamp(0)).expect("valid");
        assert_eq!(comment.check_track(&other).unwrap_err().field, "track_id");
    }
}
