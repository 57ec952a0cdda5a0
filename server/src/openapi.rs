//! The OpenAPI 3.1 description of the API, written by hand next to the code it describes and
//! checked against real responses by the HTTP tests. The entity types it lists come from the
//! installed registry when the document is served ([`document_json`]): a server of any model
//! describes that model's types and their fields.

use axum::{http::header, response::IntoResponse};
use serde_json::Value;
use std::sync::OnceLock;
use trackflow_domain::EntityType;

/// The hand-written document. Its `EntityType` schema is replaced when served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The document as served: [`OPENAPI_JSON`] with the `EntityType` schema's names and fields
/// taken from the installed registry.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        let types = EntityType::all();
        let fields: Vec<String> =
            types.iter().map(|t| format!("`{}`: {}.", t.as_str(), t.fields().join(", "))).collect();
        let schema = &mut doc["components"]["schemas"]["EntityType"];
        schema["enum"] = types.iter().map(|t| Value::from(t.as_str())).collect();
        schema["description"] = Value::from(format!(
            "What kind of entity. Fields by type (all but the id travel in `fields`): {}",
            fields.join(" ")
        ));
        doc.to_string()
    })
}

/// `GET /v1/openapi.json`
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document_json())
}
