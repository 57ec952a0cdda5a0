use crate::{AudioTrack, AudioTrackId, PlaylistId, Project, ProjectId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::HashSet;
use trackflow_domain::{
    entities::FieldReader, entities::Parent, entities::Scope, entities::ScopeKind, ports::WriteContext,
    serde_json::Value, uuid::Uuid, validate::required_text, EntityRef, EntityType, Priority, RepositoryError,
    SyncEntity, Timestamp, ValidationError,
};

/// An ordered list of tracks of one project.
/// Serialises to its wire fields. It is deliberately not `Deserialize`: every way in goes
/// through the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Playlist {
    id: PlaylistId,
    project_id: ProjectId,
    name: String,
    track_ids: Vec<AudioTrackId>,
    created_at: Timestamp,
}

/// Changes to a [`Playlist`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaylistPatch {
    /// A new name.
    pub name: Option<String>,
    /// A new track order (replaces the whole list).
    pub track_ids: Option<Vec<AudioTrackId>>,
}

impl Playlist {
    /// Longest allowed name, in characters.
    pub const MAX_NAME: usize = 100;
    /// Most tracks in one playlist.
    pub const MAX_TRACKS: usize = 500;

    /// A new playlist in `project_id`, with a fresh id.
    pub fn new(
        project_id: ProjectId,
        name: &str,
        track_ids: Vec<AudioTrackId>,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Self::restore(PlaylistId::new(), project_id, name, track_ids, now)
    }

    /// Rebuilds a playlist from stored or received parts, validating them.
    pub fn restore(
        id: PlaylistId,
        project_id: ProjectId,
        name: &str,
        track_ids: Vec<AudioTrackId>,
        created_at: Timestamp,
    ) -> Result<Self, ValidationError> {
        if track_ids.len() > Self::MAX_TRACKS {
            return Err(ValidationError::new(
                "track_ids",
                format!("holds {} tracks; the limit is {}", track_ids.len(), Self::MAX_TRACKS),
            ));
        }
        let mut seen = HashSet::with_capacity(track_ids.len());
        if let Some(duplicate) = track_ids.iter().find(|id| !seen.insert(**id)) {
            return Err(ValidationError::new("track_ids", format!("names track {duplicate} more than once")));
        }
        Ok(Self { id, project_id, name: required_text("name", name, Self::MAX_NAME)?, track_ids, created_at })
    }

    /// This playlist with `patch` applied, validated.
    pub fn patched(&self, patch: &PlaylistPatch) -> Result<Self, ValidationError> {
        Self::restore(
            self.id,
            self.project_id,
            patch.name.as_deref().unwrap_or(&self.name),
            patch.track_ids.clone().unwrap_or_else(|| self.track_ids.clone()),
            self.created_at,
        )
    }

    /// The id.
    pub fn id(&self) -> PlaylistId {
        self.id
    }
    /// The project the playlist belongs to.
    pub fn project_id(&self) -> ProjectId {
        self.project_id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The tracks, in play order.
    pub fn track_ids(&self) -> &[AudioTrackId] {
        &self.track_ids
    }
    /// When the playlist was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

impl SyncEntity for Playlist {
    type Id = PlaylistId;
    type Patch = PlaylistPatch;

    const NAME: &'static str = "playlist";
    const PARENT: Option<Parent> = Some(Parent { entity_type: Project::ENTITY_TYPE, field: "project_id" });
    const REFERS_TO: &'static [EntityType] = &[AudioTrack::ENTITY_TYPE];
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const PRIORITY: Priority = Priority::Low;
    const TABLE: &'static str = "playlists";
    const JSON_FIELDS: &'static [&'static str] = &["track_ids"];
    const SCOPE_FIELD: &'static str = "project_id";
    const FIELDS: &'static [&'static str] = &["project_id", "name", "track_ids", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["project_id", "created_at"];

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Self::restore(
            PlaylistId::from_uuid(id),
            f.required("project_id")?,
            &f.required::<String>("name")?,
            f.optional("track_ids")?.unwrap_or_default(),
            f.required("created_at")?,
        )
    }

    fn scope(&self) -> Scope {
        Scope::Shared(self.project_id.into())
    }

    fn patched(&self, patch: &PlaylistPatch) -> Result<Self, ValidationError> {
        Playlist::patched(self, patch)
    }

    /// Every track a write adds must be a visible track of the playlist's project. Tracks it
    /// already held may have been deleted since; they stay until the playlist is edited.
    fn check_write(
        &self,
        before: Option<&Self>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        let held = before.map(Playlist::track_ids).unwrap_or_default();
        for track_id in self.track_ids().iter().filter(|t| !held.contains(t)) {
            let track: AudioTrack = store.require(track_id.as_uuid())?;
            if track.project_id() != self.project_id {
                let reason = format!("track {track_id} belongs to another project");
                return Err(ValidationError::new("track_ids", reason).into());
            }
        }
        Ok(())
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        std::iter::once(EntityRef::new(Project::ENTITY_TYPE, self.project_id.as_uuid()))
            .chain(self.track_ids.iter().map(|t| EntityRef::new(AudioTrack::ENTITY_TYPE, t.as_uuid())))
            .collect()
    }

    fn parent(&self) -> Option<EntityRef> {
        Some(EntityRef::new(Project::ENTITY_TYPE, self.project_id.as_uuid()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_may_appear_only_once() {
        let a = AudioTrackId::new();
        let b = AudioTrackId::new();
        let table = [
            ("empty", vec![], None),
            ("two tracks", vec![a, b], None),
            ("duplicate", vec![a, b, a], Some("track_ids")),
        ];
        for (case, tracks, failing) in table {
            let result = Playlist::new(ProjectId::new(), "Mix", tracks, Timestamp(0));
            assert_eq!(result.err().map(|e| e.field), failing, "{case}");
        }
    }

    #[test]
    fn size_is_bounded_and_patch_replaces_order() {
        let too_many = (0..=Playlist::MAX_TRACKS).map(|_| AudioTrackId::new()).collect();
        let err = Playlist::new(ProjectId::new(), "Big", too_many, Timestamp(0)).unwrap_err();
        assert_eq!(err.field, "track_ids");

        let (a, b) = (AudioTrackId::new(), AudioTrackId::new());
        let p = Playlist::new(ProjectId::new(), "Mix", vec![a, b], Timestamp(0)).expect("valid");
        let q =
            p.patched(&PlaylistPatch { track_ids: Some(vec![b, a]), ..Default::default() }).expect("valid");
        assert_eq!(q.track_ids(), [b, a]);
        assert_eq!(q.references().len(), 3, "the project and both tracks");
    }
}
