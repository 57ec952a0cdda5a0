//! The sync endpoints: push, pull, and health.

use crate::{
    auth,
    error::ApiFailure,
    extract::{ApiQuery, AuthUser, PushJson, SchemaVersion},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use trackflow_domain::protocol::{
    EntityState, HealthResponse, MutationOutcome, PullRequest, PullResponse, PushRequest, PushResponse,
    ScopesResponse,
};

/// `POST /v1/sync/push`: applies the mutations in order and answers one result per mutation.
pub(crate) async fn push(
    State(state): State<AppState>,
    auth: AuthUser,
    schema: SchemaVersion,
    PushJson(request): PushJson,
) -> Result<Json<PushResponse>, ApiFailure> {
    check_clock_lead(&request, &state)?;
    crate::blobs::missing_audio(&state, auth.user, &request).await?;
    let ids: Vec<_> = request.mutations.iter().map(|m| m.entity_id).collect();
    let mut response = state.store.push(auth.user, request).await?;
    state.metrics.pushed(&response);
    let changed: Vec<_> = response
        .results
        .iter()
        .zip(ids)
        .filter_map(|(result, id)| changed_version(&result.outcome).map(|version| (id, version)))
        .collect();
    if let Some(version) = changed.iter().map(|(_, v)| *v).max() {
        // After the commit; the hub's queue looks the scopes up and publishes, merged with
        // other pushes' changes.
        state.pokes.changed(changed.into_iter().map(|(id, _)| id).collect(), version).await;
    }
    if schema.predates_a_rename() {
        for result in &mut response.results {
            if let Some((server, lost_fields)) = merged(&mut result.outcome) {
                schema.translate(server, lost_fields);
            }
        }
    }
    Ok(Json(response))
}

/// The version a mutation's outcome wrote, if it wrote one now.
fn changed_version(outcome: &MutationOutcome) -> Option<i64> {
    match outcome {
        MutationOutcome::Applied { version } => Some(*version),
        MutationOutcome::Conflict { server, .. } => Some(server.version),
        MutationOutcome::Duplicate { .. } | MutationOutcome::Rejected { .. } => None,
    }
}

/// The row a merge left and the fields that lost, in an outcome that carries them.
fn merged(outcome: &mut MutationOutcome) -> Option<(&mut EntityState, &mut Vec<String>)> {
    match outcome {
        MutationOutcome::Conflict { server, lost_fields } => Some((server, lost_fields)),
        MutationOutcome::Duplicate { first, .. } => merged(first),
        MutationOutcome::Applied { .. } | MutationOutcome::Rejected { .. } => None,
    }
}

/// Refuses a push carrying a clock reading too far ahead of the server's clock (see
/// [`ServerConfig::max_clock_lead`](crate::ServerConfig::max_clock_lead)).
fn check_clock_lead(request: &PushRequest, state: &AppState) -> Result<(), ApiFailure> {
    let lead = u64::try_from(state.config.max_clock_lead.as_millis()).unwrap_or(u64::MAX);
    let now = u64::try_from(auth::now().as_millis()).unwrap_or(0);
    let limit = now.saturating_add(lead);
    for (i, mutation) in request.mutations.iter().enumerate() {
        if let Some((name, change)) = mutation.fields.iter().find(|(_, c)| c.hlc.wall_ms > limit) {
            let ahead = change.hlc.wall_ms - now;
            return Err(ApiFailure {
                mutation_id: Some(mutation.id),
                ..ApiFailure::invalid(
                    trackflow_domain::protocol::CLOCK_SKEW,
                    format!(
                        "mutations[{i}].fields.{name}.hlc is {ahead} ms ahead of the server's clock; \
                         at most {lead} ms is accepted (check the device's clock)"
                    ),
                )
            });
        }
    }
    Ok(())
}

/// `GET /v1/sync/pull?cursor=..&limit=..&scope=..`: a page of changes after the cursor.
pub(crate) async fn pull(
    State(state): State<AppState>,
    auth: AuthUser,
    schema: SchemaVersion,
    ApiQuery(request): ApiQuery<PullRequest>,
) -> Result<Json<PullResponse>, ApiFailure> {
    let started = std::time::Instant::now();
    let mut response = state.store.pull(auth.user, request).await?;
    if let (true, PullResponse::Changes { changes, .. }) = (schema.predates_a_rename(), &mut response) {
        changes.iter_mut().for_each(|row| schema.translate(row, &mut []));
    }
    state.metrics.pulled(started.elapsed());
    Ok(Json(response))
}

/// `GET /v1/sync/scopes`: the scopes the user may pull now.
pub(crate) async fn scopes(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<ScopesResponse>, ApiFailure> {
    Ok(Json(ScopesResponse { scopes: state.store.scopes(auth.user).await? }))
}

/// `GET /v1/health`: unauthenticated; 200 when the store answers, 503 otherwise.
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiFailure> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "health check failed");
        ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database does not answer")
    })?;
    Ok(Json(HealthResponse { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() }))
}
