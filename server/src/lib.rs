//! # trackflow-server
//!
//! The reference TrackFlow sync server: axum over the domain's
//! [`ServerStore`] port. The store is chosen by whoever
//! wires the server (the `trackflow` binary uses Diesel on SQLite, or PostgreSQL for several
//! instances sharing one database).
//!
//! Endpoints (all under `/v1`, described by the OpenAPI document at `/v1/openapi.json`):
//! `health`, `auth/signup`, `auth/login`, `auth/logout`, `sync/push`, `sync/pull`, `sync/scopes`,
//! `events` (server-sent pokes), `blobs/{sha256}` (file uploads) and `files/{type}/{id}`
//! (downloads); and `/metrics` for Prometheus.
//!
//! Architecture invariant: this crate knows HTTP and the port, never a database. Client
//! mistakes get a 4xx with a JSON [`ApiError`](trackflow_domain::protocol::ApiError) body;
//! nothing a client sends makes it answer 5xx or panic.

mod auth;
mod blobs;
mod compat;
mod error;
pub mod events;
mod extract;
mod metrics;
mod openapi;
mod sync;

pub use error::ApiFailure;
pub use events::{LocalPokeRelay, PokeHub};
pub use metrics::Metrics;
pub use openapi::{document_json, OPENAPI_JSON};
pub use trackflow_domain::protocol;

use axum::{
    routing::{get, head, post},
    Router,
};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use trackflow_domain::{
    ports::{BlobStorage, PokeRelay, Retention, ServerStore},
    protocol::SERVER_TIME_HEADER,
};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a bearer token works after sign-up or log-in.
    pub token_ttl: Duration,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How far ahead of the server's clock a pushed clock reading may be. Clients refuse to
    /// observe readings further ahead than their own tolerance
    /// ([`HybridLogicalClock::DEFAULT_MAX_DRIFT_MS`](trackflow_domain::HybridLogicalClock::DEFAULT_MAX_DRIFT_MS)),
    /// so the server must not store any; and one fast clock would otherwise win every merge.
    pub max_clock_lead: Duration,
    /// The largest audio file accepted, in bytes.
    pub max_blob_bytes: u64,
    /// How often an open event stream checks that its token still works; a stream whose token
    /// was logged out or expired closes at the next check.
    pub token_check_interval: Duration,
    /// How long history is kept (tombstones' fields, dedupe records): a device that has not
    /// pulled for longer starts its pulls over, losing nothing it queued. `None`: forever.
    pub retention: Option<Duration>,
    /// How often a running server purges what is past `retention` and sweeps cut uploads
    /// nobody resumed for a day.
    pub purge_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            max_body_bytes: 4 * 1024 * 1024,
            max_clock_lead: Duration::from_millis(trackflow_domain::HybridLogicalClock::DEFAULT_MAX_DRIFT_MS),
            max_blob_bytes: 256 * 1024 * 1024,
            token_check_interval: Duration::from_secs(15),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn ServerStore>,
    config: Arc<ServerConfig>,
    /// Where audio is kept; `None` on a server that stores no audio (it refuses tracks that
    /// name any).
    blobs: Option<Arc<dyn BlobStorage>>,
    pokes: Arc<PokeHub>,
    metrics: Arc<Metrics>,
}

impl AppState {
    /// State over `store`, storing no audio, poking only its own event streams. Call it on a
    /// tokio runtime: the poke hub subscribes at once.
    pub fn new(store: Arc<dyn ServerStore>, config: ServerConfig) -> Self {
        Self::with_relay(store, config, Arc::new(LocalPokeRelay::default()))
    }

    /// State over `store` receiving pokes through `relay` (every instance sharing the
    /// database, say).
    pub fn with_relay(store: Arc<dyn ServerStore>, config: ServerConfig, relay: Arc<dyn PokeRelay>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let pokes = PokeHub::new(relay, Arc::clone(&store));
        pokes.observe(metrics.clone());
        Self { store, config: Arc::new(config), blobs: None, pokes, metrics }
    }

    /// This state storing audio in `blobs`.
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobStorage>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Event streams open on this instance now.
    pub fn event_streams(&self) -> usize {
        self.pokes.streams()
    }
}

/// The routes, ready to serve.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(sync::health))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/auth/signup", post(auth::sign_up))
        .route("/v1/auth/login", post(auth::log_in))
        .route("/v1/auth/logout", post(auth::log_out))
        .route("/v1/accounts", get(auth::account))
        .route("/v1/sync/push", post(sync::push))
        .route("/v1/sync/pull", get(sync::pull))
        .route("/v1/sync/scopes", get(sync::scopes))
        .route("/v1/events", get(events::events))
        .route("/v1/blobs/{sha256}", head(blobs::exists).put(blobs::upload))
        .route("/v1/files/{entity_type}/{entity_id}", get(blobs::file))
        .route("/metrics", get(metrics::document))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .layer(axum::middleware::from_fn(compat::require_schema))
        .layer(axum::middleware::map_response(stamp_time))
        .with_state(state)
}

/// Adds the server's clock to every answer ([`SERVER_TIME_HEADER`]), so clients can correct
/// their clock readings by it.
async fn stamp_time(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(SERVER_TIME_HEADER, axum::http::HeaderValue::from(auth::now().as_millis()));
    response
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pokes = Arc::clone(&state.pokes);
    let upkeep = tokio::spawn(upkeep(
        Arc::clone(&state.store),
        state.blobs.clone(),
        state.config.retention,
        state.config.purge_interval,
    ));
    let shutdown = async move {
        shutdown.await;
        upkeep.abort();
        // Event streams never end by themselves; the graceful stop would wait on them.
        pokes.close();
    };
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Now and every `interval`: purges what is older than `retention` (if set), and sweeps cut
/// uploads nobody resumed for a day. Logs what it did. Each purge also records the newest
/// version at its time, from which later runs find the horizon.
async fn upkeep(
    store: Arc<dyn ServerStore>,
    blobs: Option<Arc<dyn BlobStorage>>,
    retention: Option<Duration>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        if let Some(retention) = retention {
            match store.purge(auth::now(), Retention::Age(retention)).await {
                Ok(purged) if purged.tombstones + purged.records > 0 => tracing::info!(
                    horizon = purged.horizon,
                    tombstones = purged.tombstones,
                    records = purged.records,
                    "purged history past the retention"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "purging history failed; trying again next time"),
            }
        }
        if let Some(blobs) = &blobs {
            match blobs.sweep().await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "removed cut uploads nobody resumed"),
                Err(error) => tracing::warn!(%error, "sweeping kept uploads failed"),
            }
        }
    }
}

/// A server running on a background task, for tests and the demo. Dropping it does not stop
/// it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving in the background.
    pub async fn start(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, finishes requests in flight, and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}
