//! Errors as the API answers them: a status and a JSON `{ "code", "message" }` body.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use trackflow_domain::{ids::OperationId, ports::ServerStoreError, protocol::ApiError};

/// A request that failed, ready to become a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// Detail naming the field.
    pub message: String,
    /// For a refused push: the mutation at fault.
    pub mutation_id: Option<OperationId>,
    /// For `426 upgrade_required`: the oldest schema version the server syncs with.
    pub min_version: Option<u32>,
}

impl ApiFailure {
    /// A failure with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), mutation_id: None, min_version: None }
    }

    /// 401: the token is missing, wrong or expired.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 422: the request is well-formed JSON but breaks a rule.
    pub fn invalid(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A store failure: the client's fault is a 4xx, the database's a 503 (worth retrying) or
    /// a 500.
    pub fn from_store(e: ServerStoreError) -> Self {
        match e {
            // A well-formed request for something this user may not read: not invalid data.
            ServerStoreError::BadInput { code, message, .. } if code == "scope_not_readable" => {
                Self::new(StatusCode::FORBIDDEN, code, message)
            }
            ServerStoreError::BadInput { code, message, mutation_id } => {
                Self { mutation_id, ..Self::invalid(code, message) }
            }
            ServerStoreError::Taken(message) => Self::new(StatusCode::CONFLICT, "taken", message),
            ServerStoreError::Storage { transient: true, message } => {
                tracing::warn!(%message, "store busy");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is busy; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request",
                )
            }
        }
    }
}

impl From<ServerStoreError> for ApiFailure {
    fn from(e: ServerStoreError) -> Self {
        Self::from_store(e)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code,
            message: self.message,
            mutation_id: self.mutation_id,
            min_version: self.min_version,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Fallback for unknown paths.
pub(crate) async fn no_route() -> ApiFailure {
    ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /v1/openapi.json")
}

/// Fallback for a known path with the wrong method.
pub(crate) async fn wrong_method() -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
