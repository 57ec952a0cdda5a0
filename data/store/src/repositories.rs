//! The offline-first repository: the domain's generic [`Repository`] port over the local store,
//! one implementation for every type. Writes go through the shared transaction code in
//! `records`; what differs per type (its order, its indexes, its write check) comes from its
//! declaration.

use super::{
    live::Registration,
    records::{typed, visible},
    tables::{StoredRow, TableSql},
    LocalStore,
};
use async_trait::async_trait;
use diesel::SqliteConnection;
use shaku::{Component, Module, ModuleBuildContext};
use std::{collections::HashMap, marker::PhantomData, sync::Arc};
use trackflow_db::error::StoreResult;
use trackflow_domain::{
    entities::AnyEntity,
    ports::{LiveResults, Repository},
    sync::LiveQuery,
    EntityRef, EntityType, RepositoryError, SyncEntity, ValidationError,
};
use uuid::Uuid;

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

/// The repositories of every type over one store, as one shaku component (resolved as
/// `Arc<Repositories>`): code that knows its types takes the repository of each
/// ([`Repositories::of`]), and code that knows a type only by name reads its rows
/// ([`Repositories::visible`]). No module lists a program's types one by one.
#[derive(Clone)]
pub struct Repositories {
    store: LocalStore,
}

impl Repositories {
    /// The repositories over `store`.
    pub fn new(store: LocalStore) -> Self {
        Self { store }
    }

    /// The repository of `E`.
    pub fn of<E: SyncEntity>(&self) -> Arc<dyn Repository<E>> {
        Arc::new(SqliteRepository::<E>::new(self.store.clone()))
    }

    /// Every visible entity of `entity_type`, in its declared order: what a tool that knows the
    /// type only by name shows (an export, a comparison with the server).
    pub async fn visible(&self, entity_type: EntityType) -> Result<Vec<AnyEntity>, RepositoryError> {
        self.store
            .read(move |conn| {
                let rows = TableSql::of(entity_type).list_all(conn)?;
                visible_entities(conn, entity_type, rows)
            })
            .await
    }
}

impl<M: Module> Component<M> for Repositories {
    type Interface = Repositories;
    type Parameters = RepositoryParameters;

    fn build(_: &mut ModuleBuildContext<M>, params: RepositoryParameters) -> Box<Repositories> {
        Box::new(Self::new(params.store.expect("the repositories were built without their store")))
    }
}

/// Parameters of a [`SqliteRepository`] or [`Repositories`] component: the store it works on.
#[derive(Default)]
pub struct RepositoryParameters {
    /// The local database (required).
    pub store: Option<LocalStore>,
}

impl<M: Module, E: SyncEntity> Component<M> for SqliteRepository<E> {
    type Interface = dyn Repository<E>;
    type Parameters = RepositoryParameters;

    fn build(_: &mut ModuleBuildContext<M>, params: RepositoryParameters) -> Box<dyn Repository<E>> {
        let store =
            params.store.unwrap_or_else(|| panic!("the {} repository was built without its store", E::NAME));
        Box::new(Self::new(store))
    }
}

/// The entities of `rows` whose parent is visible (each parent looked up once).
fn visible_only<E: SyncEntity>(conn: &mut SqliteConnection, rows: Vec<StoredRow>) -> StoreResult<Vec<E>> {
    visible_entities(conn, E::ENTITY_TYPE, rows)?.into_iter().map(typed).collect()
}

/// The entities of `rows`, of `entity_type`, whose parent is visible (each parent looked up
/// once).
fn visible_entities(
    conn: &mut SqliteConnection,
    entity_type: EntityType,
    rows: Vec<StoredRow>,
) -> StoreResult<Vec<AnyEntity>> {
    let mut parents: HashMap<EntityRef, bool> = HashMap::new();
    let mut kept = Vec::with_capacity(rows.len());
    for row in rows {
        let entity = row.decode(entity_type)?.entity;
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
impl<E: SyncEntity> Repository<E> for SqliteRepository<E> {
    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, id = %entity.entity_id()))]
    async fn create(&self, entity: E) -> Result<E, RepositoryError> {
        self.store.create_entity(entity).await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, %id))]
    async fn update(&self, id: E::Id, patch: E::Patch) -> Result<E, RepositoryError> {
        self.store.update_entity(id.into(), move |e: &E| e.patched(&patch)).await
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
                let rows = TableSql::of(E::ENTITY_TYPE).list_all(conn)?;
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
        self.store
            .list(Some(parent_ref), move |conn| {
                TableSql::of(E::ENTITY_TYPE).list_inside(conn, parent).unwrap_or_else(|| Ok(Vec::new()))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, ?query))]
    async fn subscribe(&self, query: LiveQuery) -> Result<Box<dyn LiveResults<E>>, RepositoryError> {
        // Registered before the first read, so nothing committed after that read is missed.
        let wake = self.store.live_query(E::ENTITY_TYPE, query);
        let seen = self.store.published_changes();
        let live = Live { repository: Self::new(self.store.clone()), query, wake, seen, first: None };
        let first = live.read().await?;
        Ok(Box::new(Live { first: Some(first), ..live }))
    }

    #[tracing::instrument(skip_all, fields(entity_type = E::NAME, index, %key))]
    async fn list_by(&self, index: &'static str, key: Uuid) -> Result<Vec<E>, RepositoryError> {
        self.store
            .read(move |conn| match TableSql::of(E::ENTITY_TYPE).list_by(conn, index, key) {
                Some(rows) => visible_only(conn, rows?),
                None => {
                    Err(ValidationError::new("index", format!("a {} has no index '{index}'", E::NAME)).into())
                }
            })
            .await
    }
}

impl<E: SyncEntity> SqliteRepository<E> {
    /// The result of `query` now.
    async fn read(&self, query: LiveQuery) -> Result<Vec<E>, RepositoryError> {
        match query {
            LiveQuery::Get(id) => Ok(self.store.get_visible(id).await?.into_iter().collect()),
            LiveQuery::ByParent(parent) => self.list_by_parent(parent).await,
            LiveQuery::By(index, key) => self.list_by(index, key).await,
        }
    }
}

/// A live query over the local store: the query's result read again after each committed
/// transaction whose changes can affect it (see the store's `live` module).
struct Live<E> {
    repository: SqliteRepository<E>,
    query: LiveQuery,
    /// Tells the number of the last change event that can affect the result.
    wake: Registration,
    /// Every event up to this one had committed when the last result was read.
    seen: u64,
    /// The result read when it was subscribed, not returned yet.
    first: Option<Vec<E>>,
}

#[async_trait]
impl<E: SyncEntity> LiveResults<E> for Live<E> {
    async fn next(&mut self) -> Option<Result<Vec<E>, RepositoryError>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        let seen = self.seen;
        // An event the last read already saw needs no new result.
        self.wake.changed.wait_for(|&last| last > seen).await.ok()?;
        self.seen = self.repository.store.published_changes();
        Some(self.read().await)
    }
}

impl<E: SyncEntity> Live<E> {
    /// The query's result now; a query that follows its rows is filed under them.
    async fn read(&self) -> Result<Vec<E>, RepositoryError> {
        let result = self.repository.read(self.query).await?;
        if self.query.follows_its_rows(E::ENTITY_TYPE) {
            let shown: Vec<EntityRef> = result.iter().map(SyncEntity::entity_ref).collect();
            let store = &self.repository.store;
            self.wake.follow_rows(&shown, self.seen, || store.published_changes());
        }
        Ok(result)
    }
}
