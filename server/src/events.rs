//! Realtime pokes: `GET /v1/events`, a server-sent event stream per user.
//!
//! After a push commits, its handler publishes a [`Poke`] naming the version and the changed
//! scopes through the [`PokeRelay`] (the instance itself, or every instance sharing the
//! PostgreSQL database). Each instance's [`PokeHub`] receives every poke, looks up once who may
//! read the scopes, and hands each connected stream only the scopes its user may read: a user
//! who may read none of them is not poked at all.
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
use tokio::sync::broadcast;
use trackflow_domain::{
    entities::Scope,
    ports::{PokeHandler, PokeRelay, ServerStore, ServerStoreError},
    protocol::Poke,
    UserId,
};

/// One poke as resolved for this instance's streams.
#[derive(Debug)]
struct Delivery {
    version: i64,
    /// Each reader and the changed scopes they may read; `None`: everyone, every scope.
    readers: Option<BTreeMap<UserId, Vec<String>>>,
}

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
    relay: Arc<dyn PokeRelay>,
    sender: broadcast::Sender<Arc<Delivery>>,
    observer: Mutex<Arc<dyn StreamObserver>>,
    /// Turns true when the server stops: open streams end, so a graceful shutdown does not
    /// wait forever on connections that never finish by themselves.
    closing: tokio::sync::watch::Sender<bool>,
}

/// How many deliveries a stream may fall behind before it is told to pull everything.
const BACKLOG: usize = 256;

impl PokeHub {
    /// A hub receiving through `relay`, resolving readers in `store`. Subscribes at once, on
    /// the current tokio runtime.
    pub fn new(relay: Arc<dyn PokeRelay>, store: Arc<dyn ServerStore>) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BACKLOG);
        let hub = Arc::new(Self {
            relay: Arc::clone(&relay),
            sender,
            observer: Mutex::new(Arc::new(Unobserved)),
            closing: tokio::sync::watch::Sender::new(false),
        });
        let runtime = tokio::runtime::Handle::current();
        let weak = Arc::downgrade(&hub);
        let handler: PokeHandler = Arc::new(move |poke: Poke| {
            let Some(hub) = weak.upgrade() else { return };
            if hub.sender.receiver_count() == 0 {
                return;
            }
            let store = Arc::clone(&store);
            runtime.spawn(async move {
                match resolve(store.as_ref(), poke).await {
                    Ok(delivery) => {
                        let _ = hub.sender.send(Arc::new(delivery));
                    }
                    Err(error) => tracing::warn!(%error, "a poke's readers could not be looked up"),
                }
            });
        });
        relay.subscribe(handler);
        hub
    }

    /// Sets what counts the streams.
    pub fn observe(&self, observer: Arc<dyn StreamObserver>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// Publishes a poke through the relay, logging a failure (a missed poke costs only
    /// latency: clients still pull periodically).
    pub async fn publish(&self, poke: Poke) {
        if let Err(error) = self.relay.publish(poke).await {
            tracing::warn!(%error, "a poke could not be published");
        }
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

/// Who of the readers of `poke`'s scopes gets which scopes.
async fn resolve(store: &dyn ServerStore, poke: Poke) -> Result<Delivery, ServerStoreError> {
    let Some(names) = poke.scopes else { return Ok(Delivery { version: poke.version, readers: None }) };
    let scopes: BTreeSet<Scope> = names.iter().filter_map(|n| n.parse().ok()).collect();
    let mut readers: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
    for (scope, users) in store.audience(scopes).await? {
        for user in users {
            readers.entry(user).or_default().push(scope.to_string());
        }
    }
    Ok(Delivery { version: poke.version, readers: Some(readers) })
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
                                Some(scopes) => {
                                    Poke { version: delivery.version, scopes: Some(scopes.clone()) }
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
