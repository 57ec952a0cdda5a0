//! Live queries, indexed by what can affect them: after each reporting transaction the
//! committing thread looks up, for each change, the queries keyed by its entity, by its type
//! and parent, and by its type and index keys ([`LiveQuery::affected_by`], as lookups), and
//! tells only those the event's number. A query that follows its rows (a membership index) is
//! also filed under each entity of its last result. A write that concerns no open query wakes
//! nothing, so open queries on other parents cost a write a few hash lookups. A query reads
//! again only for an event its last read did not see (see [`super::feed::Feed::published`]),
//! so the events between two of its reads make one new result.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
};
use tokio::sync::watch;
use trackflow_domain::{
    sync::{ChangeEvent, EntityChange, LiveQuery},
    EntityRef, EntityType,
};
use uuid::Uuid;

/// What a change is looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// The entity itself: a query of it, or of what lives inside it.
    Entity(EntityRef),
    /// Entities of a type inside a parent.
    Inside(EntityType, EntityRef),
    /// Entities of a type whose field holds an id (the field is checked on a hit).
    Holding(EntityType, Uuid),
}

/// A key a query is filed under, with the field a [`Key::Holding`] must be in.
type Filing = (Key, Option<&'static str>);

/// The live queries open on one store.
#[derive(Default)]
pub(crate) struct LiveQueries {
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    next_id: u64,
    /// Each open query: what it is told, and the keys it is filed under.
    open: HashMap<u64, Open>,
    /// Open queries by key, with the field a [`Key::Holding`] must be in.
    by_key: HashMap<Key, Vec<(u64, Option<&'static str>)>>,
}

/// One open query.
struct Open {
    /// The number of the last event that can affect it.
    sender: watch::Sender<u64>,
    /// The keys its query is filed under.
    keys: Vec<Filing>,
    /// The rows of its last result it is also filed under, when its query follows them
    /// ([`LiveQuery::follows_its_rows`]).
    rows: Vec<Filing>,
}

impl Open {
    /// Tells it of event `seq` (no wake-up if it knew of a later one).
    fn tell(&self, seq: u64) {
        self.sender.send_if_modified(|last| {
            let newer = seq > *last;
            *last = (*last).max(seq);
            newer
        });
    }
}

/// An open live query's registration: the number of the last event that can affect it. Drop it
/// to close the query.
pub(crate) struct Registration {
    pub changed: watch::Receiver<u64>,
    id: u64,
    live: Weak<LiveQueries>,
}

impl Registration {
    /// Files the query under the entities its last result `shown` (in place of those of the
    /// result before), for a query that follows its rows. That read saw every event up to
    /// `seen`; an event published since may have changed one of them before it was filed
    /// here, so the query reads again if `published` (read under the index's lock, after any
    /// hand-out that missed the new filing) is past `seen`.
    pub fn follow_rows(&self, shown: &[EntityRef], seen: u64, published: impl FnOnce() -> u64) {
        let Some(live) = self.live.upgrade() else { return };
        let mut index = live.lock();
        let rows: Vec<Filing> = shown.iter().map(|&row| (Key::Entity(row), None)).collect();
        index.file(self.id, rows);
        let now = published();
        if now > seen {
            if let Some(open) = index.open.get(&self.id) {
                open.tell(now);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(live) = self.live.upgrade() {
            live.lock().close(self.id);
        }
    }
}

impl LiveQueries {
    fn lock(&self) -> MutexGuard<'_, Index> {
        // Every update leaves the index whole.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens `query` over `entity_type`.
    pub fn open(self: &Arc<Self>, entity_type: EntityType, query: LiveQuery) -> Registration {
        let (sender, changed) = watch::channel(0);
        let mut index = self.lock();
        index.next_id += 1;
        let id = index.next_id;
        let keys = keys(entity_type, query);
        for &(key, field) in &keys {
            index.by_key.entry(key).or_default().push((id, field));
        }
        index.open.insert(id, Open { sender, keys, rows: Vec::new() });
        Registration { changed, id, live: Arc::downgrade(self) }
    }

    /// Whether any query is open (else a transaction need not report its changes for them).
    pub fn any(&self) -> bool {
        !self.lock().open.is_empty()
    }

    /// Tells the queries `event` can affect its number. Called by the committing thread, in
    /// commit order.
    pub fn hand_out(&self, event: &ChangeEvent) {
        let index = self.lock();
        if index.open.is_empty() {
            return;
        }
        let mut told: Vec<u64> = Vec::new();
        for change in &event.changes {
            index.affected(change, |id| {
                if !told.contains(&id) {
                    told.push(id);
                }
            });
        }
        for id in told {
            if let Some(open) = index.open.get(&id) {
                open.tell(event.seq);
            }
        }
    }
}

impl Index {
    /// Calls `found` with each open query `change` can affect (possibly more than once).
    fn affected(&self, change: &EntityChange, mut found: impl FnMut(u64)) {
        let mut look_up = |key: Key, field: Option<&str>| {
            for &(id, wanted) in self.by_key.get(&key).into_iter().flatten() {
                if wanted.is_none() || wanted == field {
                    found(id);
                }
            }
        };
        look_up(Key::Entity(change.entity), None);
        if let Some(parent) = change.parent {
            look_up(Key::Inside(change.entity.entity_type, parent), None);
        }
        let parent = change.entity.entity_type.parent();
        for (field, key) in &change.keys {
            look_up(Key::Holding(change.entity.entity_type, *key), Some(field));
            // The parent it had before the change, or has after it.
            if let Some(declared) = parent.filter(|declared| declared.field == field) {
                let inside = EntityRef::new(declared.entity_type, *key);
                if change.parent != Some(inside) {
                    look_up(Key::Inside(change.entity.entity_type, inside), None);
                }
            }
        }
    }

    /// Files query `id` under `rows`, in place of the rows it was filed under.
    fn file(&mut self, id: u64, rows: Vec<Filing>) {
        let Some(open) = self.open.get_mut(&id) else { return };
        let old = std::mem::replace(&mut open.rows, rows.clone());
        self.unfile(id, &old);
        for (key, field) in rows {
            self.by_key.entry(key).or_default().push((id, field));
        }
    }

    fn close(&mut self, id: u64) {
        let Some(open) = self.open.remove(&id) else { return };
        self.unfile(id, &open.keys);
        self.unfile(id, &open.rows);
    }

    /// Removes query `id` from under `keys`.
    fn unfile(&mut self, id: u64, keys: &[Filing]) {
        for (key, _) in keys {
            if let Some(ids) = self.by_key.get_mut(key) {
                ids.retain(|(other, _)| *other != id);
                if ids.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
    }
}

/// The keys a change must carry to affect `query` over `entity_type`: the rule of
/// [`LiveQuery::affected_by`], as lookups.
fn keys(entity_type: EntityType, query: LiveQuery) -> Vec<Filing> {
    match query {
        LiveQuery::Get(id) => vec![(Key::Entity(EntityRef::new(entity_type, id)), None)],
        LiveQuery::ByParent(parent) => match entity_type.parent() {
            Some(declared) => {
                let parent = EntityRef::new(declared.entity_type, parent);
                vec![(Key::Inside(entity_type, parent), None), (Key::Entity(parent), None)]
            }
            None => Vec::new(),
        },
        LiveQuery::By(name, key) => {
            let Some(index) = entity_type.indexes().iter().find(|i| i.name == name) else {
                return Vec::new();
            };
            let mut keys = vec![(Key::Holding(entity_type, key), Some(index.field))];
            if index.members {
                for &grant in EntityType::all() {
                    if let (Some(member), true) = (grant.member_field(), grant != entity_type) {
                        keys.push((Key::Holding(grant, key), Some(member)));
                    }
                }
            }
            keys
        }
    }
}
