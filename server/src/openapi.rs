//! The OpenAPI 3.1 description of the API, written by hand next to the code it describes and
//! checked against real responses by the HTTP tests.

use axum::{http::header, response::IntoResponse};

/// The OpenAPI document served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
