//! The offline-first repository of every synced type, one generic port. Every write changes the
//! local store and queues its outbox operation in one transaction and returns without touching
//! the network; reads are served from the local store and never show deleted (tombstoned) rows
//! or rows inside a deleted parent.

use super::LiveResults;
use crate::{
    entities::{EntityRef, EntityType, SyncEntity},
    error::RepositoryError,
    sync::LiveQuery,
};
use async_trait::async_trait;
use serde_json::Value;
use shaku::Interface;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The repository of the synced type `E`. Resolve it from a module as `dyn Repository<E>`
/// (the client's `wiring::repository::<E>`); what differs per type (its write check, its order,
/// its indexes) is the type's, not the port's.
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
    /// A live query: its result at once, then a new one after every committed transaction
    /// that can change it (a change of another type or inside another parent does not). A
    /// result is read again after the transaction, so a page of 500 pulled rows gives one.
    async fn subscribe(&self, query: LiveQuery) -> Result<Box<dyn LiveResults<E>>, RepositoryError>;
}

/// An entity's id and wire fields.
pub type IdentifiedFields = (Uuid, BTreeMap<String, Value>);

/// What a type's write check may read of the local store, inside the write's transaction:
/// visible entities (not deleted, inside a visible parent), as wire fields.
pub trait WriteContext {
    /// The fields of `entity` if it is visible.
    fn visible(&mut self, entity: EntityRef) -> Result<Option<BTreeMap<String, Value>>, RepositoryError>;

    /// The ids and fields of the live entities of `entity_type` inside `parent`.
    fn children(
        &mut self,
        entity_type: EntityType,
        parent: Uuid,
    ) -> Result<Vec<IdentifiedFields>, RepositoryError>;
}

impl dyn WriteContext + '_ {
    /// The visible entity of type `P` with `id`, or [`RepositoryError::NotFound`].
    pub fn require<P: SyncEntity>(&mut self, id: Uuid) -> Result<P, RepositoryError> {
        let entity = EntityRef::new(P::ENTITY_TYPE, id);
        let fields = self.visible(entity)?.ok_or(RepositoryError::NotFound(entity))?;
        Ok(P::from_fields(id, &fields)?)
    }

    /// The live entities of type `C` inside `parent`.
    pub fn children_of<C: SyncEntity>(&mut self, parent: Uuid) -> Result<Vec<C>, RepositoryError> {
        self.children(C::ENTITY_TYPE, parent)?
            .into_iter()
            .map(|(id, fields)| Ok(C::from_fields(id, &fields)?))
            .collect()
    }
}
