//! What a replica holds, as one comparable value: every live row by entity, with its fields.
//! The demo and the end-to-end tests compare each client's snapshot with the server's, so
//! convergence is checked, not assumed.

use serde_json::Value;
use shaku::HasComponent;
use std::collections::BTreeMap;
use trackflow_client::{store::Repositories, wiring::ClientModule};
use trackflow_domain::{
    entities::AnyEntity,
    ports::RemoteDataSource,
    protocol::{PullRequest, PullResponse, MAX_PULL_LIMIT},
    EntityRef, EntityType,
};

/// Every live row of a replica, by entity, with its synced fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<EntityRef, BTreeMap<String, Value>>);

impl Snapshot {
    /// What the server shows the signed-in user of `remote`: every scope pulled from the
    /// start, tombstones left out, and rows inside a deleted parent left out as a client's
    /// repositories leave them out (a project's collaborator records outlive its delete on the
    /// server, so that its members still learn of it).
    pub async fn of_server(remote: &dyn RemoteDataSource) -> anyhow::Result<Self> {
        let mut snapshot = Self::default();
        for scope in remote.scopes().await?.scopes {
            let mut cursor = None;
            loop {
                let request = PullRequest { cursor, limit: MAX_PULL_LIMIT, scope: Some(scope.scope.clone()) };
                match remote.pull(request).await? {
                    PullResponse::Changes { changes, next_cursor, has_more, .. } => {
                        for state in changes {
                            let entity = EntityRef::new(state.entity_type, state.entity_id);
                            if state.deleted {
                                snapshot.0.remove(&entity);
                            } else {
                                snapshot.0.insert(entity, state.fields);
                            }
                        }
                        if !has_more {
                            break;
                        }
                        cursor = Some(next_cursor);
                    }
                    PullResponse::Reset => {
                        anyhow::bail!("the server answered reset to a pull from the start")
                    }
                }
            }
        }
        snapshot.hide_orphans();
        Ok(snapshot)
    }

    /// Leaves out every row whose parent is not held, until none is left.
    fn hide_orphans(&mut self) {
        loop {
            let orphans: Vec<EntityRef> = self
                .0
                .iter()
                .filter(|(entity, fields)| {
                    AnyEntity::from_fields(entity.entity_type, entity.id, fields)
                        .ok()
                        .and_then(|row| row.parent())
                        .is_some_and(|parent| !self.0.contains_key(&parent))
                })
                .map(|(entity, _)| *entity)
                .collect();
            if orphans.is_empty() {
                return;
            }
            for orphan in orphans {
                self.0.remove(&orphan);
            }
        }
    }

    /// What a client shows through its repositories: every live row of every registered type.
    pub async fn of_client(module: &ClientModule) -> anyhow::Result<Self> {
        let mut snapshot = Self::default();
        let repositories: &Repositories = module.resolve_ref();
        for &entity_type in EntityType::all() {
            for entity in repositories.visible(entity_type).await? {
                snapshot.0.insert(entity.entity_ref(), entity.fields());
            }
        }
        Ok(snapshot)
    }

    /// The rows that differ from `other`, one line each (empty when the two are equal).
    pub fn differences(&self, other: &Snapshot) -> Vec<String> {
        let mut lines = Vec::new();
        for (entity, fields) in &self.0 {
            match other.0.get(entity) {
                None => lines.push(format!("{entity}: only here")),
                Some(theirs) if theirs != fields => {
                    let fields: Vec<&str> = fields
                        .iter()
                        .filter(|(name, value)| theirs.get(*name) != Some(*value))
                        .map(|(name, _)| name.as_str())
                        .collect();
                    lines.push(format!("{entity}: fields {} differ", fields.join(", ")));
                }
                Some(_) => {}
            }
        }
        lines
            .extend(other.0.keys().filter(|e| !self.0.contains_key(e)).map(|e| format!("{e}: missing here")));
        lines
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trackflow_domain::CollaboratorRole;
    use trackflow_domain::SyncEntity;
    use trackflow_music::{AudioComment, AudioTrack, Project, ProjectCollaborator};

    use uuid::Uuid;

    #[test]
    fn differences_name_each_row_and_field_that_disagrees() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let row = |name: &str| BTreeMap::from([("name".to_owned(), json!(name)), ("n".to_owned(), json!(1))]);
        let project = |id| EntityRef::new(Project::ENTITY_TYPE, id);
        let here = Snapshot(BTreeMap::from([(project(a), row("A")), (project(b), row("B"))]));
        let there = Snapshot(BTreeMap::from([(project(a), row("A2")), (project(c), row("C"))]));
        assert_eq!(
            here.differences(&there),
            [
                format!("project {a}: fields name differ"),
                format!("project {b}: only here"),
                format!("project {c}: missing here")
            ]
        );
        assert!(here.differences(&here.clone()).is_empty());
    }

    #[test]
    fn rows_inside_a_parent_not_held_are_left_out_as_a_client_leaves_them_out() {
        trackflow_music::install().expect("the music registry installs");
        let (owner, now) = (trackflow_domain::UserId::new(), trackflow_domain::Timestamp(1));
        let kept = Project::new(owner, "Kept", None, now).expect("valid");
        let gone = Project::new(owner, "Deleted", None, now).expect("valid");
        let track = AudioTrack::new(gone.id(), owner, "Take", 1_000, None, now).expect("valid");
        let comment = AudioComment::new(&track, owner, "Nice", 0, now).expect("valid");
        let member = ProjectCollaborator::new(
            gone.id(),
            trackflow_domain::UserId::new(),
            CollaboratorRole::Viewer,
            now,
        )
        .expect("valid");
        let alive = AudioTrack::new(kept.id(), owner, "Alive", 1_000, None, now).expect("valid");
        let row = |entity: AnyEntity| (entity.entity_ref(), entity.fields());
        // The deleted project's tombstone is not held; its member record, its track and the
        // track's comment (a grandchild) are.
        let mut snapshot = Snapshot(BTreeMap::from([
            row(AnyEntity::new(kept.clone())),
            row(AnyEntity::new(alive.clone())),
            row(AnyEntity::new(track)),
            row(AnyEntity::new(comment)),
            row(AnyEntity::new(member)),
        ]));
        snapshot.hide_orphans();
        let held: Vec<EntityRef> = snapshot.0.into_keys().collect();
        assert_eq!(held, [AnyEntity::new(kept).entity_ref(), AnyEntity::new(alive).entity_ref()]);
    }
}
