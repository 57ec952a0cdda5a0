//! `GET /metrics`: the server's counters in the Prometheus text format (OpenMetrics), from
//! prometheus-client.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `trackflow_http_requests_total` | counter | `route` (the matched pattern), `status` |
//! | `trackflow_mutations_total` | counter | `outcome`: applied, duplicate, conflict, rejected |
//! | `trackflow_pull_duration_seconds` | histogram | |
//! | `trackflow_event_streams` | gauge | |
//! | `trackflow_blob_bytes_total` | counter | `direction`: in, out |
//!
//! Unauthenticated, like `/v1/health`: it holds counts, never data. Expose it only where the
//! deployment's scraper can reach it.

use crate::{events::StreamObserver, AppState};
use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use std::time::Duration;
use trackflow_domain::protocol::{MutationOutcome, PushResponse};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    mutations: Family<OutcomeLabels, Counter>,
    pull_seconds: Histogram,
    streams: Gauge,
    blob_bytes: Family<DirectionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trackflow");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        let mutations = Family::<OutcomeLabels, Counter>::default();
        registry.register("mutations", "Pushed mutations by outcome", mutations.clone());
        // 0.5 ms to about 16 s.
        let pull_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("pull_duration_seconds", "Time to answer a pull", pull_seconds.clone());
        let streams = Gauge::default();
        registry.register("event_streams", "Event streams open on this instance", streams.clone());
        let blob_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register("blob_bytes", "Audio bytes received (in) and sent (out)", blob_bytes.clone());
        Self { registry, requests, mutations, pull_seconds, streams, blob_bytes }
    }
}

impl Metrics {
    /// Counts the outcomes of a push.
    pub fn pushed(&self, response: &PushResponse) {
        for result in &response.results {
            let outcome = match &result.outcome {
                MutationOutcome::Applied { .. } => "applied",
                MutationOutcome::Duplicate { .. } => "duplicate",
                MutationOutcome::Conflict { .. } => "conflict",
                MutationOutcome::Rejected { .. } => "rejected",
            };
            self.mutations.get_or_create(&OutcomeLabels { outcome }).inc();
        }
    }

    /// Records how long a pull took.
    pub fn pulled(&self, took: Duration) {
        self.pull_seconds.observe(took.as_secs_f64());
    }

    /// Counts audio bytes received.
    pub fn blob_bytes_in(&self, bytes: u64) {
        self.blob_bytes.get_or_create(&DirectionLabels { direction: "in" }).inc_by(bytes);
    }

    /// Counts audio bytes sent.
    pub fn blob_bytes_out(&self, bytes: u64) {
        self.blob_bytes.get_or_create(&DirectionLabels { direction: "out" }).inc_by(bytes);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl StreamObserver for Metrics {
    fn streams_changed(&self, delta: i64) {
        self.streams.inc_by(delta);
    }
}

/// Middleware counting every request by its route pattern (not its path: ids would make a
/// label per entity) and status.
pub(crate) async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.requests.get_or_create(&RequestLabels { route, status }).inc();
    response
}

/// `GET /metrics`.
pub(crate) async fn document(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}
