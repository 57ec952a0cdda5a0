//! Pokes across server instances through PostgreSQL's LISTEN/NOTIFY: the [`PokeRelay`] of
//! instances sharing one PostgreSQL database.
//!
//! Publishing is `SELECT pg_notify('trackflow_pokes', <poke as JSON>)` on a pooled connection.
//! One thread per instance holds its own connection, `LISTEN`s, and hands every notification
//! (its instance's own included) to the subscribers. libpq reads notifications without
//! blocking, so the thread checks every [`POLL`]; that bounds the added latency.
//!
//! NOTIFY payloads are limited to 8000 bytes: a poke naming too many scopes travels as
//! "any scope". A lost listening connection (found by a failed read, or by a `SELECT 1` every
//! 30 s) is re-established with backoff, and then every subscriber is told "any scope" once,
//! for the pokes that may have been missed meanwhile.

use super::{connection::ServerConnection, storage_error, DieselServerStore};
use async_trait::async_trait;
use diesel::{prelude::*, sql_types::Text, PgConnection};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use trackflow_db::blocking::run_blocking;
use trackflow_domain::{
    ports::{PokeHandler, PokeRelay, ServerStoreError},
    protocol::Poke,
};

/// The notification channel.
pub const CHANNEL: &str = "trackflow_pokes";

/// How often the listening thread looks for notifications.
pub const POLL: Duration = Duration::from_millis(5);

/// How often the listening connection is checked with a query.
const LIVENESS: Duration = Duration::from_secs(30);

/// The largest payload sent; PostgreSQL refuses more than 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// Relays pokes between every instance listening on the same PostgreSQL database.
pub struct PgPokeRelay {
    store: DieselServerStore,
    handlers: Arc<Mutex<Vec<PokeHandler>>>,
    stop: Arc<AtomicBool>,
}

impl PgPokeRelay {
    /// Starts listening on `url` (the store's own database) on a thread of its own.
    pub fn start(store: DieselServerStore, url: String) -> Self {
        let handlers: Arc<Mutex<Vec<PokeHandler>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (listening, stopping) = (Arc::clone(&handlers), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("trackflow-listen".into())
            .spawn(move || listen(&url, &listening, &stopping))
            .map_err(|e| tracing::error!(error = %e, "the LISTEN thread could not start"))
            .ok();
        Self { store, handlers, stop }
    }
}

impl Drop for PgPokeRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl PokeRelay for PgPokeRelay {
    async fn publish(&self, poke: Poke) -> Result<(), ServerStoreError> {
        let mut payload = serde_json::to_string(&poke).unwrap_or_default();
        if payload.len() > MAX_PAYLOAD {
            payload =
                serde_json::to_string(&Poke { version: poke.version, scopes: None }).unwrap_or_default();
        }
        let pool = self.store.pool.clone();
        run_blocking(move || {
            let mut conn = super::checkout(&pool)?;
            let ServerConnection::Pg(pg) = &mut *conn else {
                return Err(ServerStoreError::Storage {
                    message: "LISTEN/NOTIFY needs PostgreSQL".into(),
                    transient: false,
                });
            };
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(payload)
                .execute(pg)
                .map_err(|e| storage_error(e.into()))?;
            Ok(())
        })
        .await
    }

    fn subscribe(&self, handler: PokeHandler) {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner()).push(handler);
    }
}

fn deliver(handlers: &Mutex<Vec<PokeHandler>>, poke: &Poke) {
    let handlers = handlers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for handler in handlers {
        handler(poke.clone());
    }
}

/// The listening thread: connects, listens, hands notifications on; reconnects after losing
/// the connection, backing off from 100 ms to 5 s.
fn listen(url: &str, handlers: &Mutex<Vec<PokeHandler>>, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match PgConnection::establish(url).map_err(|e| e.to_string()).and_then(|mut c| {
            diesel::sql_query(format!("LISTEN {CHANNEL}"))
                .execute(&mut c)
                .map(|_| c)
                .map_err(|e| e.to_string())
        }) {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "LISTEN connection failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if !first {
            // Pokes may have been sent while no connection listened.
            deliver(handlers, &Poke { version: 0, scopes: None });
        }
        first = false;
        tracing::debug!("listening for pokes");
        let mut checked = std::time::Instant::now();
        'connected: while !stop.load(Ordering::Relaxed) {
            // A connection cut without a word (a failover, a NAT timeout) reports nothing to a
            // non-blocking read: a query every so often finds out.
            if checked.elapsed() >= LIVENESS {
                if let Err(error) = diesel::sql_query("SELECT 1").execute(&mut conn) {
                    tracing::warn!(%error, "LISTEN connection dead; reconnecting");
                    break 'connected;
                }
                checked = std::time::Instant::now();
            }
            for notification in conn.notifications_iter() {
                match notification {
                    Ok(n) => match serde_json::from_str::<Poke>(&n.payload) {
                        Ok(poke) => deliver(handlers, &poke),
                        Err(error) => tracing::warn!(%error, "an unreadable poke was ignored"),
                    },
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                        break 'connected;
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }
}
