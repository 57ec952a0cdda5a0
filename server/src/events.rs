//! Realtime pokes: `GET /v1/events`, a server-sent event stream per user.
//!
//! After a push commits, its handler hands the changed ids to the [`PokeHub`]'s outgoing queue.
//! One task drains it: whatever waits there is looked up in one query, merged (each scope
//! named once), and published as a [`Poke`] through the [`PokeRelay`] (the instance itself, or
//! every instance sharing the PostgreSQL database). Each instance's hub receives every poke
//! into its incoming queue, where one task again merges what waits per scope, looks up once
//! who may read those scopes, and hands each connected stream only the scopes its user may
//! read: a user who may read none of them is not poked at all. Both queues are bounded: a full
//! outgoing queue makes pushes wait to hand over (they have committed; only their answer
//! waits), a full incoming one tells every stream to pull everything, as a stream that falls
//! behind is told. Under load, many pushes to one scope become one poke.
//!
//! Events: `ready` when the stream opens (the client pulls once, to catch what it missed while
//! away), then `poke` with `{"version": .., "scopes": [..]}`; comments keep idle connections
//! open. A stream that falls behind gets `scopes: null` (pull everything) instead of the pokes
//! it missed.

use crate::{extract::AuthUser, AppState};
use async_trait::async_trait;
use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::stream::{self, Stream};
use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{broadcast, mpsc};
use trackflow_domain::{
    entities::Scope,
    ports::{PokeHandler, PokeRelay, ServerStore, ServerStoreError},
    protocol::Poke,
    UserId,
};

/// Pokes merged and resolved for this instance's streams.
#[derive(Debug)]
struct Delivery {
    /// The newest version among them; what a stream is told when it must pull everything.
    version: i64,
    /// Each reader, with the newest version and the changed scopes they may read; `None`:
    /// everyone, every scope.
    readers: Option<BTreeMap<UserId, (i64, Vec<String>)>>,
}

/// What a committed push changed: its ids, and the newest version it wrote.
#[derive(Debug)]
struct Changed {
    ids: Vec<uuid::Uuid>,
    version: i64,
}

/// Length of each queue (changes to publish, pokes to resolve), in pushes or pokes.
const QUEUE: usize = 1024;

/// The most scopes one published poke names (a poke over the relay's size limit would travel
/// as "every scope", and every stream would pull everything).
const SCOPES_PER_POKE: usize = 64;

/// Counts what the hub does, for the metrics endpoint.
pub trait StreamObserver: Send + Sync {
    /// A stream opened (`+1`) or closed (`-1`).
    fn streams_changed(&self, delta: i64);
}

/// Observes nothing.
struct Unobserved;

impl StreamObserver for Unobserved {
    fn streams_changed(&self, _delta: i64) {}
}

/// Fans pokes out to this instance's event streams.
pub struct PokeHub {
    /// Changes of committed pushes, on their way to the relay.
    outgoing: mpsc::Sender<Changed>,
    sender: broadcast::Sender<Arc<Delivery>>,
    observer: Mutex<Arc<dyn StreamObserver>>,
    /// Turns true when the server stops: open streams end, so a graceful shutdown does not
    /// wait forever on connections that never finish by themselves.
    closing: tokio::sync::watch::Sender<bool>,
}

/// How many deliveries a stream may fall behind before it is told to pull everything.
const BACKLOG: usize = 256;

impl PokeHub {
    /// A hub receiving through `relay`, resolving readers in `store`. Subscribes and starts
    /// its two queue tasks at once, on the current tokio runtime.
    pub fn new(relay: Arc<dyn PokeRelay>, store: Arc<dyn ServerStore>) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BACKLOG);
        let (outgoing, changes) = mpsc::channel(QUEUE);
        let hub = Arc::new(Self {
            outgoing,
            sender,
            observer: Mutex::new(Arc::new(Unobserved)),
            closing: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(publish_merged(changes, Arc::clone(&store), Arc::clone(&relay)));
        let (incoming, pokes) = mpsc::channel(QUEUE);
        let overflow = Arc::new(Overflow::default());
        tokio::spawn(resolve_merged(pokes, store, Arc::downgrade(&hub), Arc::clone(&overflow)));
        let handler: PokeHandler = Arc::new(move |poke: Poke| {
            if let Err(mpsc::error::TrySendError::Full(_)) = incoming.try_send(poke) {
                // The task is behind by a whole queue: everyone pulls everything once. Woken
                // apart from the queue: it may have emptied it meanwhile and be waiting.
                overflow.happened.store(true, std::sync::atomic::Ordering::SeqCst);
                overflow.wake.notify_one();
            }
        });
        relay.subscribe(handler);
        hub
    }

    /// Queues a committed push's changed ids and newest version for a poke. Waits only while
    /// the queue is full.
    pub async fn changed(&self, ids: Vec<uuid::Uuid>, version: i64) {
        if self.outgoing.send(Changed { ids, version }).await.is_err() {
            tracing::warn!("the poke queue has stopped; no poke");
        }
    }

    /// Sets what counts the streams.
    pub fn observe(&self, observer: Arc<dyn StreamObserver>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// Ends every open stream and refuses none: called when the server stops accepting, so
    /// the connections the streams hold can finish. (Clients reconnect to another instance,
    /// or to this one when it is back.)
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Event streams open on this instance now.
    pub fn streams(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Drains the outgoing queue: whatever waits is looked up in one query and published as pokes
/// naming each changed scope once.
async fn publish_merged(
    mut changes: mpsc::Receiver<Changed>,
    store: Arc<dyn ServerStore>,
    relay: Arc<dyn PokeRelay>,
) {
    let mut waiting = Vec::new();
    while changes.recv_many(&mut waiting, QUEUE).await > 0 {
        let version = waiting.iter().map(|c| c.version).max().unwrap_or(0);
        let ids: BTreeSet<uuid::Uuid> = waiting.drain(..).flat_map(|c| c.ids).collect();
        let scopes = match store.scopes_of(ids.into_iter().collect()).await {
            Ok(scopes) => scopes,
            // Not poking everyone instead: that would tell strangers when writes happen.
            // Clients still pull periodically.
            Err(error) => {
                tracing::warn!(%error, "the scopes of a push could not be looked up; no poke");
                continue;
            }
        };
        let names: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        for chunk in names.chunks(SCOPES_PER_POKE) {
            if let Err(error) = relay.publish(Poke { version, scopes: Some(chunk.to_vec()) }).await {
                tracing::warn!(%error, "a poke could not be published");
            }
        }
    }
}

/// Pokes the incoming queue had no room for.
#[derive(Default)]
struct Overflow {
    happened: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

/// Drains the incoming queue: the pokes waiting are merged per scope (newest version), their
/// readers looked up once, and one delivery goes to the streams.
async fn resolve_merged(
    mut pokes: mpsc::Receiver<Poke>,
    store: Arc<dyn ServerStore>,
    hub: std::sync::Weak<PokeHub>,
    overflow: Arc<Overflow>,
) {
    let mut waiting = Vec::new();
    loop {
        tokio::select! {
            received = pokes.recv_many(&mut waiting, QUEUE) => if received == 0 { return },
            () = overflow.wake.notified() => {}
        }
        let Some(hub) = hub.upgrade() else { return };
        let everything = overflow.happened.swap(false, std::sync::atomic::Ordering::SeqCst)
            || waiting.iter().any(|p| p.scopes.is_none());
        if waiting.is_empty() && !everything {
            continue;
        }
        let version = waiting.iter().map(|p| p.version).max().unwrap_or(0);
        let mut scopes: BTreeMap<Scope, i64> = BTreeMap::new();
        for poke in waiting.drain(..) {
            for scope in poke.scopes.iter().flatten().filter_map(|n| n.parse::<Scope>().ok()) {
                let newest = scopes.entry(scope).or_default();
                *newest = (*newest).max(poke.version);
            }
        }
        if hub.sender.receiver_count() == 0 {
            continue;
        }
        let delivery = if everything {
            Delivery { version, readers: None }
        } else {
            match resolve(store.as_ref(), version, scopes).await {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, "a poke's readers could not be looked up");
                    continue;
                }
            }
        };
        let _ = hub.sender.send(Arc::new(delivery));
    }
}

/// Who of the readers of these scopes (each with its newest version) gets which scopes.
async fn resolve(
    store: &dyn ServerStore,
    version: i64,
    scopes: BTreeMap<Scope, i64>,
) -> Result<Delivery, ServerStoreError> {
    let mut readers: BTreeMap<UserId, (i64, Vec<String>)> = BTreeMap::new();
    for (scope, users) in store.audience(scopes.keys().copied().collect()).await? {
        for user in users {
            let (newest, names) = readers.entry(user).or_default();
            *newest = (*newest).max(scopes[&scope]);
            names.push(scope.to_string());
        }
    }
    Ok(Delivery { version, readers: Some(readers) })
}

/// The relay of a server instance that shares its database with no other: pokes go straight
/// back to its own hub.
#[derive(Default)]
pub struct LocalPokeRelay {
    handlers: Mutex<Vec<PokeHandler>>,
}

#[async_trait]
impl PokeRelay for LocalPokeRelay {
    async fn publish(&self, poke: Poke) -> Result<(), ServerStoreError> {
        let handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for handler in handlers {
            handler(poke.clone());
        }
        Ok(())
    }

    fn subscribe(&self, handler: PokeHandler) {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner()).push(handler);
    }
}

/// A stream's token, checked again while the stream is open.
struct TokenCheck {
    store: Arc<dyn ServerStore>,
    token_hash: String,
    user: UserId,
}

impl TokenCheck {
    /// Whether the token still names the stream's user. A store that cannot answer keeps the
    /// stream open: a busy database is no reason to drop every client.
    async fn still_valid(&self) -> bool {
        match self.store.user_for_token(&self.token_hash, crate::auth::now()).await {
            Ok(found) => found == Some(self.user),
            Err(error) => {
                tracing::warn!(%error, "an event stream's token could not be checked");
                true
            }
        }
    }
}

/// Counts a stream while it is open.
struct Open {
    observer: Arc<dyn StreamObserver>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.observer.streams_changed(-1);
    }
}

/// `GET /v1/events`: the user's event stream.
pub(crate) async fn events(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hub = Arc::clone(&state.pokes);
    let receiver = hub.sender.subscribe();
    let closing = hub.closing.subscribe();
    let observer = hub.observer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    observer.streams_changed(1);
    let open = Open { observer };
    let user = auth.user;
    tracing::debug!(%user, "event stream opened");
    let ready = stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    // The token is checked again now and then: a stream ends once its token is logged out or
    // expires, as every other request would be refused.
    let mut checks = tokio::time::interval(state.config.token_check_interval);
    checks.reset();
    let token = TokenCheck { store: Arc::clone(&state.store), token_hash: auth.token_hash, user };
    let pokes = stream::unfold(
        (receiver, closing, open, checks, token),
        move |(mut receiver, mut closing, open, mut checks, token)| {
            async move {
                loop {
                    // What woke the stream, decided before any await: the closing signal's
                    // guard must not live across one.
                    let woken = tokio::select! {
                        received = receiver.recv() => Some(received),
                        _ = closing.wait_for(|closed| *closed) => return None,
                        _ = checks.tick() => None,
                    };
                    let Some(received) = woken else {
                        if token.still_valid().await {
                            continue;
                        }
                        tracing::debug!(%user, "event stream closed: its token no longer works");
                        return None;
                    };
                    let poke = match received {
                        Ok(delivery) => match &delivery.readers {
                            None => Poke { version: delivery.version, scopes: None },
                            Some(readers) => match readers.get(&user) {
                                Some((version, scopes)) => {
                                    Poke { version: *version, scopes: Some(scopes.clone()) }
                                }
                                None => continue,
                            },
                        },
                        Err(broadcast::error::RecvError::Lagged(_)) => Poke { version: 0, scopes: None },
                        Err(broadcast::error::RecvError::Closed) => return None,
                    };
                    let event = Event::default().event("poke").json_data(&poke).unwrap_or_default();
                    return Some((Ok(event), (receiver, closing, open, checks, token)));
                }
            }
        },
    );
    Sse::new(stream::StreamExt::chain(ready, pokes))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::{
        ports::{MockPokeRelay, MockServerStore},
        ScopeId,
    };

    fn project() -> Scope {
        Scope::Shared(ScopeId::from_uuid(uuid::Uuid::now_v7()))
    }

    /// Three pushes handed over while the queue's task has not run (a current-thread runtime
    /// runs it only when the test awaits something that is not ready) become one lookup and
    /// one poke naming their scope once, with the newest version.
    #[tokio::test]
    async fn pushes_waiting_together_become_one_poke() {
        let scope = project();
        let mut store = MockServerStore::new();
        store.expect_scopes_of().times(1).returning(move |ids| {
            assert_eq!(ids.len(), 3, "one lookup for every waiting id");
            Ok(BTreeSet::from([scope]))
        });
        let (published, mut polled) = mpsc::unbounded_channel();
        let mut relay = MockPokeRelay::new();
        relay.expect_subscribe().returning(|_| ());
        relay.expect_publish().returning(move |poke| {
            published.send(poke).expect("the test listens");
            Ok(())
        });
        let hub = PokeHub::new(Arc::new(relay), Arc::new(store));
        for version in [5, 7, 6] {
            hub.changed(vec![uuid::Uuid::now_v7()], version).await;
        }
        let poke = tokio::time::timeout(Duration::from_secs(10), polled.recv()).await.expect("a poke");
        assert_eq!(poke, Some(Poke { version: 7, scopes: Some(vec![scope.to_string()]) }));
        assert!(polled.try_recv().is_err(), "one poke, not one per push");
    }

    /// Pokes received while the resolving task has not run are merged per scope: one audience
    /// lookup, one delivery, each reader told the newest version of the scopes they may read.
    #[tokio::test]
    async fn pokes_received_together_are_resolved_once() {
        let (a, b) = (project(), project());
        let (reader, b_reader) = (UserId::new(), UserId::new());
        let mut store = MockServerStore::new();
        store.expect_audience().times(1).returning(move |scopes| {
            assert_eq!(scopes, BTreeSet::from([a, b]), "each scope once");
            Ok(BTreeMap::from([(a, BTreeSet::from([reader])), (b, BTreeSet::from([reader, b_reader]))]))
        });
        let handlers: Arc<Mutex<Vec<PokeHandler>>> = Arc::default();
        let mut relay = MockPokeRelay::new();
        let registered = Arc::clone(&handlers);
        relay.expect_subscribe().returning(move |h| registered.lock().expect("lock").push(h));
        let hub = PokeHub::new(Arc::new(relay), Arc::new(store));
        let mut stream = hub.sender.subscribe();
        let handler = handlers.lock().expect("lock")[0].clone();
        handler(Poke { version: 3, scopes: Some(vec![a.to_string()]) });
        handler(Poke { version: 9, scopes: Some(vec![b.to_string()]) });
        handler(Poke { version: 4, scopes: Some(vec![a.to_string(), b.to_string()]) });
        let delivery = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("a delivery")
            .expect("open");
        let readers = delivery.readers.as_ref().expect("per reader");
        let mut both = vec![a.to_string(), b.to_string()];
        both.sort();
        let mut got = readers[&reader].1.clone();
        got.sort();
        assert_eq!((readers[&reader].0, got), (9, both));
        assert_eq!(readers[&b_reader], (9, vec![b.to_string()]));
        assert!(stream.try_recv().is_err(), "one delivery for the three pokes");
    }

    /// More pokes than the queue holds, received before its task runs: the ones that found no
    /// room are not lost silently: every stream is told to pull everything.
    #[tokio::test]
    async fn pokes_beyond_the_queue_tell_everyone_to_pull_everything() {
        let handlers: Arc<Mutex<Vec<PokeHandler>>> = Arc::default();
        let mut relay = MockPokeRelay::new();
        let registered = Arc::clone(&handlers);
        relay.expect_subscribe().returning(move |h| registered.lock().expect("lock").push(h));
        // No audience lookup: a delivery to everyone needs none.
        let hub = PokeHub::new(Arc::new(relay), Arc::new(MockServerStore::new()));
        let mut stream = hub.sender.subscribe();
        let handler = handlers.lock().expect("lock")[0].clone();
        for version in 0..=QUEUE as i64 {
            handler(Poke { version, scopes: Some(vec![project().to_string()]) });
        }
        let delivery = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("a delivery")
            .expect("open");
        assert!(delivery.readers.is_none(), "everyone, every scope: {delivery:?}");
    }
}
