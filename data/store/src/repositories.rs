//! The offline-first repository: the domain's generic [`Repository`] port over the local store,
//! one implementation for every type. Writes go through the shared transaction code in
//! `records`; what differs per type (its write check and its list queries) is its [`Listed`]
//! implementation below.

use super::{
    blobs::audio_upload,
    records::{no_check, require_visible, visible, Check, LocalEntity, WriteClock},
    rows::{AudioCommentRow, AudioTrackRow, CollaboratorRow, PlaylistRow, ProjectRow, UserProfileRow},
    schema::{audio_comments, audio_tracks, playlists, project_collaborators, projects, user_profiles},
    LocalStore,
};
use async_trait::async_trait;
use diesel::prelude::*;
use shaku::{Component, Module, ModuleBuildContext};
use std::{collections::HashMap, marker::PhantomData};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    ports::Repository, AudioComment, AudioTrack, EntityRef, OperationId, Playlist, Project,
    ProjectCollaborator, RepositoryError, UserProfile, ValidationError,
};
use uuid::Uuid;

/// What differs per type in its repository: the check its writes pass, and its list queries.
/// Each query filters out tombstones itself; visibility through parents is checked here.
pub(crate) trait Listed: LocalEntity {
    /// Checks a write against the rest of the store and returns the operations it must wait
    /// for.
    const CHECK: Check<Self> = no_check;

    /// Every live row of the type, in its order.
    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<Self::Row>>;

    /// The live rows inside `parent` (only called for a type with a parent).
    fn inside(conn: &mut SqliteConnection, parent: Uuid) -> QueryResult<Vec<Self::Row>>;

    /// The live rows that `index` finds under `key`; `None` for an index the type lacks.
    fn by_index(
        _conn: &mut SqliteConnection,
        _index: &str,
        _key: Uuid,
    ) -> Option<QueryResult<Vec<Self::Row>>> {
        None
    }
}

/// The local store's repository of `E`, a shaku component under `dyn Repository<E>`.
pub struct SqliteRepository<E> {
    store: LocalStore,
    entity: PhantomData<fn() -> E>,
}

impl<E> SqliteRepository<E> {
    /// A repository over `store`.
    pub fn new(store: LocalStore) -> Self {
        Self { store, entity: PhantomData }
    }
}

/// Parameters of a [`SqliteRepository`] component: the store it works on.
#[derive(Default)]
pub struct RepositoryParameters {
    /// The local database (required).
    pub store: Option<LocalStore>,
}

impl<M: Module, E: Listed> Component<M> for SqliteRepository<E> {
    type Interface = dyn Repository<E>;
    type Parameters = RepositoryParameters;

    fn build(_: &mut ModuleBuildContext<M>, params: RepositoryParameters) -> Box<dyn Repository<E>> {
        let store =
            params.store.unwrap_or_else(|| panic!("the {} repository was built without its store", E::NAME));
        Box::new(Self::new(store))
    }
}

/// Entities of `rows` whose parent is visible (each parent looked up once).
fn visible_only<E: LocalEntity>(conn: &mut SqliteConnection, rows: Vec<E::Row>) -> StoreResult<Vec<E>> {
    let mut parents: HashMap<EntityRef, bool> = HashMap::new();
    let mut kept = Vec::with_capacity(rows.len());
    for entity in super::records::decode_all(rows)? {
        if let Some(parent) = entity.parent() {
            let shown = match parents.get(&parent) {
                Some(shown) => *shown,
                None => *parents.entry(parent).or_insert(visible(conn, parent)?.is_some()),
            };
            if !shown {
                continue;
            }
        }
        kept.push(entity);
    }
    Ok(kept)
}

#[async_trait]
impl<E: Listed> Repository<E> for SqliteRepository<E> {
    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, id = %entity.entity_id()))]
    async fn create(&self, entity: E) -> Result<E, RepositoryError> {
        self.store.create_entity(entity, E::CHECK).await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, %id))]
    async fn update(&self, id: E::Id, patch: E::Patch) -> Result<E, RepositoryError> {
        self.store.update_entity(id.into(), move |e: &E| e.patched(&patch), E::CHECK).await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, %id))]
    async fn delete(&self, id: E::Id) -> Result<(), RepositoryError> {
        self.store.delete_entity::<E>(id.into()).await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, %id))]
    async fn get(&self, id: E::Id) -> Result<Option<E>, RepositoryError> {
        self.store.get_visible(id.into()).await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME))]
    async fn list(&self) -> Result<Vec<E>, RepositoryError> {
        self.store
            .read(|conn| {
                let rows = E::all(conn)?;
                visible_only(conn, rows)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, %parent))]
    async fn list_by_parent(&self, parent: Uuid) -> Result<Vec<E>, RepositoryError> {
        let Some(declared) = E::PARENT else {
            let reason = format!("a {} lives inside nothing", E::NAME);
            return Err(RepositoryError::Validation(ValidationError::new("parent", reason)));
        };
        let parent_ref = EntityRef::new(declared.entity_type, parent);
        self.store.list(Some(parent_ref), move |conn| E::inside(conn, parent)).await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, index, %key))]
    async fn list_by(&self, index: &'static str, key: Uuid) -> Result<Vec<E>, RepositoryError> {
        self.store
            .read(move |conn| match E::by_index(conn, index, key) {
                Some(rows) => visible_only(conn, rows?),
                None => {
                    Err(ValidationError::new("index", format!("a {} has no index '{index}'", E::NAME)).into())
                }
            })
            .await
    }
}

impl Listed for Project {
    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<ProjectRow>> {
        projects::table
            .filter(projects::deleted.eq(false))
            .order((projects::created_at, projects::id))
            .select(ProjectRow::as_select())
            .load(conn)
    }

    fn inside(_: &mut SqliteConnection, _: Uuid) -> QueryResult<Vec<ProjectRow>> {
        Ok(Vec::new())
    }

    /// `member`: the projects a user owns or collaborates on.
    fn by_index(conn: &mut SqliteConnection, index: &str, key: Uuid) -> Option<QueryResult<Vec<ProjectRow>>> {
        (index == Project::BY_MEMBER).then(|| {
            let user = key.to_string();
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
    }
}

impl Listed for UserProfile {
    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<UserProfileRow>> {
        user_profiles::table
            .filter(user_profiles::deleted.eq(false))
            .order((user_profiles::name, user_profiles::id))
            .select(UserProfileRow::as_select())
            .load(conn)
    }

    fn inside(_: &mut SqliteConnection, _: Uuid) -> QueryResult<Vec<UserProfileRow>> {
        Ok(Vec::new())
    }
}

impl Listed for AudioTrack {
    const CHECK: Check<Self> = audio_upload;

    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<AudioTrackRow>> {
        audio_tracks::table
            .filter(audio_tracks::deleted.eq(false))
            .order((audio_tracks::created_at, audio_tracks::id))
            .select(AudioTrackRow::as_select())
            .load(conn)
    }

    fn inside(conn: &mut SqliteConnection, project: Uuid) -> QueryResult<Vec<AudioTrackRow>> {
        audio_tracks::table
            .filter(audio_tracks::project_id.eq(project.to_string()))
            .filter(audio_tracks::deleted.eq(false))
            .order((audio_tracks::created_at, audio_tracks::id))
            .select(AudioTrackRow::as_select())
            .load(conn)
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

impl Listed for AudioComment {
    const CHECK: Check<Self> = check_comment;

    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<AudioCommentRow>> {
        audio_comments::table
            .filter(audio_comments::deleted.eq(false))
            .order((audio_comments::created_at, audio_comments::id))
            .select(AudioCommentRow::as_select())
            .load(conn)
    }

    /// By position in the track.
    fn inside(conn: &mut SqliteConnection, track: Uuid) -> QueryResult<Vec<AudioCommentRow>> {
        audio_comments::table
            .filter(audio_comments::track_id.eq(track.to_string()))
            .filter(audio_comments::deleted.eq(false))
            .order((audio_comments::timestamp_ms, audio_comments::created_at, audio_comments::id))
            .select(AudioCommentRow::as_select())
            .load(conn)
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

impl Listed for Playlist {
    const CHECK: Check<Self> = check_playlist;

    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<PlaylistRow>> {
        playlists::table
            .filter(playlists::deleted.eq(false))
            .order((playlists::created_at, playlists::id))
            .select(PlaylistRow::as_select())
            .load(conn)
    }

    fn inside(conn: &mut SqliteConnection, project: Uuid) -> QueryResult<Vec<PlaylistRow>> {
        playlists::table
            .filter(playlists::project_id.eq(project.to_string()))
            .filter(playlists::deleted.eq(false))
            .order((playlists::created_at, playlists::id))
            .select(PlaylistRow::as_select())
            .load(conn)
    }
}

/// A user joins a project at most once, and the owner is never a collaborator.
fn check_membership(
    conn: &mut SqliteConnection,
    _clock: &WriteClock,
    member: &ProjectCollaborator,
    before: Option<&ProjectCollaborator>,
) -> StoreResult<Vec<OperationId>> {
    if before.is_some() {
        // An update changes the role alone: who is a member, and of what, stays.
        return Ok(Vec::new());
    }
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

impl Listed for ProjectCollaborator {
    const CHECK: Check<Self> = check_membership;

    fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<CollaboratorRow>> {
        project_collaborators::table
            .filter(project_collaborators::deleted.eq(false))
            .order((project_collaborators::created_at, project_collaborators::id))
            .select(CollaboratorRow::as_select())
            .load(conn)
    }

    fn inside(conn: &mut SqliteConnection, project: Uuid) -> QueryResult<Vec<CollaboratorRow>> {
        project_collaborators::table
            .filter(project_collaborators::project_id.eq(project.to_string()))
            .filter(project_collaborators::deleted.eq(false))
            .order((project_collaborators::created_at, project_collaborators::id))
            .select(CollaboratorRow::as_select())
            .load(conn)
    }
}
