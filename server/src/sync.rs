//! The sync endpoints: push, pull, and health.

use crate::{
    error::ApiFailure,
    extract::{ApiJson, ApiQuery, AuthUser},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use trackflow_domain::protocol::{HealthResponse, PullRequest, PullResponse, PushRequest, PushResponse};

/// `POST /v1/sync/push`: applies the mutations in order and answers one result per mutation.
pub(crate) async fn push(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(request): ApiJson<PushRequest>,
) -> Result<Json<PushResponse>, ApiFailure> {
    Ok(Json(state.store.push(auth.user, request).await?))
}

/// `GET /v1/sync/pull?cursor=..&limit=..`: a page of changes after the cursor.
pub(crate) async fn pull(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(request): ApiQuery<PullRequest>,
) -> Result<Json<PullResponse>, ApiFailure> {
    Ok(Json(state.store.pull(auth.user, request).await?))
}

/// `GET /v1/health`: unauthenticated; 200 when the store answers, 503 otherwise.
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiFailure> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "health check failed");
        ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database does not answer")
    })?;
    Ok(Json(HealthResponse { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() }))
}
