//! The schema gate: after a breaking change of the program's schema
//! ([`Registry::breaking_since`]), the sync endpoints answer clients that announce an older
//! schema version ([`SchemaVersion`]; none announced counts as 0) with `426 Upgrade
//! Required` and the version they need, before anything else reads the request. Sign-up, login
//! and health stay open, so an old app can still tell its user why it cannot sync.

use crate::{error::ApiFailure, extract::SchemaVersion};
use axum::{
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use trackflow_domain::{entities::Registry, protocol::UPGRADE_REQUIRED};

/// Whether the endpoint at `path` serves synced data, and so needs a compatible schema.
fn gated(path: &str) -> bool {
    ["/v1/sync/", "/v1/events", "/v1/blobs/", "/v1/files/"].iter().any(|prefix| path.starts_with(prefix))
}

/// Refuses a request to a gated endpoint from a client whose schema is older than the oldest
/// the installed registry syncs with.
pub(crate) async fn require_schema(request: Request, next: Next) -> Response {
    let oldest = Registry::global().breaking_since_version();
    if oldest == 0 || !gated(request.uri().path()) {
        return next.run(request).await;
    }
    let SchemaVersion(announced) = SchemaVersion::announced(request.headers());
    if announced >= oldest {
        return next.run(request).await;
    }
    let message = format!(
        "this server syncs with schema version {oldest} or later, and the client announced {announced}: \
         upgrade the app; its queued changes are kept for then"
    );
    ApiFailure {
        min_version: Some(oldest),
        ..ApiFailure::new(StatusCode::UPGRADE_REQUIRED, UPGRADE_REQUIRED, message)
    }
    .into_response()
}
