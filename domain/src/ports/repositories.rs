//! The offline-first repository of every synced type, one generic port. Every write changes the
//! local store and queues its outbox operation in one transaction and returns without touching
//! the network; reads are served from the local store and never show deleted (tombstoned) rows
//! or rows inside a deleted parent.

use crate::{entities::SyncEntity, error::RepositoryError};
use async_trait::async_trait;
use shaku::Interface;
use uuid::Uuid;

/// The repository of the synced type `E`. Resolve it from a module as
/// `dyn Repository<Project>`; what differs per type (its write check, its order, its indexes)
/// is the type's, not the port's.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Repository<E: SyncEntity>: Interface {
    /// Stores a new entity (inside a live parent, if its type has one; after its type's write
    /// check) and queues its create.
    async fn create(&self, entity: E) -> Result<E, RepositoryError>;
    /// Applies `patch` and queues an update of the fields that changed (none: nothing queued).
    async fn update(&self, id: E::Id, patch: E::Patch) -> Result<E, RepositoryError>;
    /// Tombstones the entity (and, locally, everything inside it) and queues its delete.
    async fn delete(&self, id: E::Id) -> Result<(), RepositoryError>;
    /// One live entity.
    async fn get(&self, id: E::Id) -> Result<Option<E>, RepositoryError>;
    /// Every live entity of the type, in its type's order.
    async fn list(&self) -> Result<Vec<E>, RepositoryError>;
    /// The live entities inside `parent`, in their type's order; nothing if the parent is
    /// hidden or missing. A type without a parent has none to list by.
    async fn list_by_parent(&self, parent: Uuid) -> Result<Vec<E>, RepositoryError>;
    /// The live entities that the type's declared `index` finds under `key` (projects by
    /// `member`: the projects a user owns or collaborates on). An index the type does not
    /// declare is a validation error.
    async fn list_by(&self, index: &'static str, key: Uuid) -> Result<Vec<E>, RepositoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntityRef, EntityType, Project, ProjectId, ProjectPatch, Timestamp, UserId};
    use mockall::predicate::eq;

    /// Code written against the port runs unchanged against the generated mock.
    async fn rename_or_report(
        repo: &dyn Repository<Project>,
        id: ProjectId,
    ) -> Result<String, RepositoryError> {
        let patch = ProjectPatch { name: Some("Renamed".into()), ..Default::default() };
        repo.update(id, patch).await.map(|p| p.name().to_owned())
    }

    #[tokio::test]
    async fn ports_are_mockable() {
        let project = Project::new(UserId::new(), "Demo", None, Timestamp(0)).expect("valid");
        let (known, unknown) = (project.id(), ProjectId::new());
        let mut repo = MockRepository::<Project>::new();
        repo.expect_update()
            .with(eq(known), mockall::predicate::always())
            .times(1)
            .returning(move |_, patch| Ok(project.patched(&patch).expect("valid")));
        repo.expect_update().with(eq(unknown), mockall::predicate::always()).times(1).returning(|id, _| {
            Err(RepositoryError::NotFound(EntityRef::new(EntityType::Project, id.as_uuid())))
        });

        assert_eq!(rename_or_report(&repo, known).await.expect("renamed"), "Renamed");
        let err = rename_or_report(&repo, unknown).await.expect_err("unknown project");
        assert_eq!(err.to_string(), format!("project {} not found", unknown.as_uuid()));
    }
}
