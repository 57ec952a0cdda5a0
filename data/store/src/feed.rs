//! The change feed: each write transaction that changes what a reader sees reports its changes
//! ([`Changes`]), and the store publishes them as one [`ChangeEvent`] after the commit.
//!
//! Order: a reporting transaction holds the feed's lock from before it begins until its event
//! is sent, so events leave in commit order. SQLite runs one write transaction at a time anyway,
//! so the lock costs nothing but its own few nanoseconds; writes that report nothing (the
//! outbox's bookkeeping) do not take it. Slow subscribers: the events go through a bounded
//! broadcast channel, whose oldest events a lagging subscriber loses (and is told so) instead
//! of holding up writes.

use super::{
    live::{LiveQueries, Registration},
    tables::TableSql,
};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};
use tokio::sync::broadcast;
use trackflow_db::error::StoreResult;
use trackflow_domain::{
    entities::AnyEntity,
    ports::{ChangeFeed, ChangeSubscription, Missed},
    sync::{ChangeEvent, ChangeKind, ChangeOrigin, EntityChange, LiveQuery},
    EntityRef, EntityType,
};
use uuid::Uuid;

/// The store's feed (one per [`super::LocalStore`] and its clones).
pub(crate) struct Feed {
    sender: broadcast::Sender<Arc<ChangeEvent>>,
    /// The last event's number, locked while a reporting transaction runs (see the module).
    last: Mutex<u64>,
    /// The last event's number once it is sent: every event up to it has committed.
    published: AtomicU64,
    /// The live queries, told of each event by the committing thread.
    live: Arc<LiveQueries>,
}

impl Feed {
    /// A feed whose subscribers may fall `capacity` events behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::Sender::new(capacity.max(1)),
            last: Mutex::new(0),
            published: AtomicU64::new(0),
            live: Arc::default(),
        }
    }

    /// A subscription to every event of a transaction that begins after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        // Under the lock, so that a transaction running now (which decided without this
        // subscriber whether to gather its changes) cannot send to it.
        let _last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        self.sender.subscribe()
    }

    /// Runs `work`, a write transaction that reports what it changes into a [`Changes`], and
    /// publishes them as one event once it has returned (committed). A failed transaction
    /// publishes nothing.
    pub fn publish<T>(&self, work: impl FnOnce(&mut Changes) -> StoreResult<T>) -> StoreResult<T> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = self.sender.receiver_count() > 0 || self.live.any();
        let mut changes = Changes { wanted, list: Vec::new() };
        let value = work(&mut changes)?;
        if !changes.list.is_empty() {
            *last += 1;
            let event = ChangeEvent { seq: *last, changes: changes.list };
            // Published before a live query is woken, so that the query's read, which notes
            // what it has seen first, counts this event as seen and does not read twice.
            self.published.store(*last, Ordering::Release);
            self.live.hand_out(&event);
            if self.sender.receiver_count() > 0 {
                // Every subscriber may have gone meanwhile; then there is nobody to tell.
                let _ = self.sender.send(Arc::new(event));
            }
        }
        Ok(value)
    }

    /// Opens a live query of `entity_type` (see [`LiveQueries`]). Open it before reading the
    /// query's first result.
    pub fn open_live(&self, entity_type: EntityType, query: LiveQuery) -> Registration {
        // Under the lock, like a subscription: a transaction running now decided without it
        // whether to report its changes.
        let _last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        self.live.open(entity_type, query)
    }

    /// The number of the last event sent: a read that starts now sees what every event up to
    /// it changed.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }
}

/// The changes one transaction reports. Nothing is gathered while nobody subscribes.
pub(crate) struct Changes {
    wanted: bool,
    list: Vec<EntityChange>,
}

impl Changes {
    /// A report nobody reads: for work done before anyone can subscribe (opening the store).
    pub fn unwanted() -> Self {
        Self { wanted: false, list: Vec::new() }
    }

    /// Whether anyone will read the report: a transaction may skip what it reads only for it.
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// Reports that `entity` changed; `before` is its state before the change, if it had one.
    pub fn entity(
        &mut self,
        entity: &AnyEntity,
        before: Option<&AnyEntity>,
        kind: ChangeKind,
        origin: ChangeOrigin,
    ) {
        if self.wanted {
            let after = entity.fields();
            let before = before.map(AnyEntity::fields);
            let fields: Vec<&BTreeMap<String, Value>> = before.iter().chain([&after]).collect();
            self.entity_with(entity, &fields, kind, origin);
        }
    }

    /// Reports that `entity`, whose wire fields (before and after the change) are at hand,
    /// changed.
    pub fn entity_with(
        &mut self,
        entity: &AnyEntity,
        fields: &[&BTreeMap<String, Value>],
        kind: ChangeKind,
        origin: ChangeOrigin,
    ) {
        if self.wanted {
            self.push(entity.entity_ref(), entity.parent(), kind, origin, fields);
        }
    }

    /// Reports a change of a row known by its reference and fields.
    fn push(
        &mut self,
        entity: EntityRef,
        parent: Option<EntityRef>,
        kind: ChangeKind,
        origin: ChangeOrigin,
        fields: &[&BTreeMap<String, Value>],
    ) {
        let mut keys = Vec::new();
        for fields in fields {
            for (name, key) in keys_of(entity.entity_type, fields) {
                if !keys.contains(&(name.to_owned(), key)) {
                    keys.push((name.to_owned(), key));
                }
            }
        }
        self.list.push(EntityChange { entity, kind, origin, parent, keys });
    }

    /// Reports every live entity inside `parent`, however deep, as hidden with it or shown
    /// with it (`kind`): what a reader of them sees change although their rows do not.
    pub fn inside(
        &mut self,
        conn: &mut diesel::SqliteConnection,
        parent: EntityRef,
        kind: ChangeKind,
        origin: ChangeOrigin,
    ) -> StoreResult<()> {
        if !self.wanted {
            return Ok(());
        }
        for &child_type in EntityType::all() {
            if child_type.parent_type() != Some(parent.entity_type) {
                continue;
            }
            let table = TableSql::of(child_type);
            let Some(rows) = table.list_inside(conn, parent.id) else { continue };
            for row in rows? {
                let id: Uuid = super::rows::parse(table.table, &row.id)?;
                let fields = row.fields(table.table)?;
                let child = EntityRef::new(child_type, id);
                self.push(child, Some(parent), kind, origin, &[&fields]);
                self.inside(conn, child, kind, origin)?;
            }
        }
        Ok(())
    }
}

/// The ids a row's declared indexes and membership grant match on.
fn keys_of(
    entity_type: EntityType,
    fields: &BTreeMap<String, Value>,
) -> impl Iterator<Item = (&'static str, Uuid)> + '_ {
    let indexed = entity_type.indexes().iter().map(|index| index.field);
    // The parent's field too: a row moved from one parent to another changes both lists.
    let parent = entity_type.parent().map(|parent| parent.field);
    indexed.chain(entity_type.member_field()).chain(parent).filter_map(move |name| {
        let key = fields.get(name)?.as_str()?.parse().ok()?;
        Some((name, key))
    })
}

/// A store's feed as the domain's port sees a subscription.
pub(crate) struct Subscription(pub broadcast::Receiver<Arc<ChangeEvent>>);

#[async_trait::async_trait]
impl ChangeSubscription for Subscription {
    async fn next(&mut self) -> Option<Result<Arc<ChangeEvent>, Missed>> {
        match self.0.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Err(Missed(missed))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The store's change feed as a shaku component under the domain's [`ChangeFeed`] port.
#[derive(shaku::Component)]
#[shaku(interface = ChangeFeed)]
pub struct SqliteChangeFeed {
    /// The local database whose commits it reports.
    store: super::LocalStore,
}

impl SqliteChangeFeed {
    /// The feed of `store`.
    pub fn new(store: super::LocalStore) -> Self {
        Self { store }
    }
}

impl ChangeFeed for SqliteChangeFeed {
    fn subscribe(&self) -> Box<dyn ChangeSubscription> {
        self.store.changes()
    }
}
