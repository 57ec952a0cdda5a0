//! Request extractors that answer bad input the API's way: JSON bodies whose errors name the
//! field (`mutations[2].entity_id: UUID parsing failed`), query strings, path parameters, and
//! the bearer token.

use crate::{auth, error::ApiFailure, AppState};
use axum::{
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
    http::{header, request::Parts, StatusCode},
};
use serde::de::DeserializeOwned;
use trackflow_domain::{
    protocol::{EntityState, PushRequest, NOT_IN_SCHEMA, SCHEMA_VERSION_HEADER},
    EntityType, UserId,
};

/// A JSON body, limited to the configured size.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiFailure> {
        parse_json(&json_body(req, state).await?).map(ApiJson)
    }
}

/// The bytes of a JSON body, refused unless it says it is JSON and fits the configured size.
async fn json_body(req: Request, state: &AppState) -> Result<axum::body::Bytes, ApiFailure> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiFailure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let limit = state.config.max_body_bytes;
    let too_large = || too_large("body_too_large", "body", limit as u64);
    if declared_length(&req).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| too_large())
}

/// A push's body: as [`ApiJson`] reads it, then held against this server's schema. A push
/// naming an entity type or a field the schema does not declare comes from a client with a
/// newer schema and is refused whole as [`NOT_IN_SCHEMA`], so that the client keeps it queued
/// for after the server's upgrade instead of taking it for bad data; an undeclared field whose
/// value is null is dropped instead (there is nothing to keep).
#[derive(Debug)]
pub(crate) struct PushJson(pub PushRequest);

impl FromRequest<AppState> for PushJson {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiFailure> {
        let bytes = json_body(req, state).await?;
        let mut request: PushRequest =
            parse_json(&bytes).map_err(|failure| unknown_type(&bytes).unwrap_or(failure))?;
        for (i, mutation) in request.mutations.iter_mut().enumerate() {
            let entity_type = mutation.entity_type;
            // A client older than a field's rename names it as it was.
            entity_type.to_current(&mut mutation.fields);
            // An undeclared field set to null says nothing this server could hold (a newer
            // client's entity with a field it left empty): dropped, not refused.
            mutation.fields.retain(|field, change| entity_type.declares(field) || !change.value.is_null());
            if let Some(field) = mutation.fields.keys().find(|f| !entity_type.declares(f)) {
                return Err(not_in_schema(i, format!("the field '{field}' of '{entity_type}'")));
            }
        }
        Ok(PushJson(request))
    }
}

/// The schema version the client announced ([`SCHEMA_VERSION_HEADER`]); none counts as 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchemaVersion(pub u32);

impl SchemaVersion {
    /// The version `headers` announce.
    pub(crate) fn announced(headers: &axum::http::HeaderMap) -> Self {
        let version = headers
            .get(SCHEMA_VERSION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u32>().ok());
        Self(version.unwrap_or(0))
    }

    /// Gives the fields of `state`, and the `lost` field names of a conflict on it, the names
    /// this client knows them by (fields renamed after its version keep their old names for it).
    pub(crate) fn translate(self, state: &mut EntityState, lost: &mut [String]) {
        state.entity_type.as_known_at(self.0, &mut state.fields);
        state.entity_type.as_known_at(self.0, &mut state.field_hlc);
        state.entity_type.names_as_known_at(self.0, lost);
    }

    /// Whether a field of the installed registry was renamed after this client's version.
    pub(crate) fn predates_a_rename(self) -> bool {
        EntityType::all().iter().any(|t| t.renamed().iter().any(|r| r.since > self.0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SchemaVersion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::announced(&parts.headers))
    }
}

/// [`NOT_IN_SCHEMA`] for the mutation at `index`, which names `what`.
fn not_in_schema(index: usize, what: String) -> ApiFailure {
    ApiFailure::invalid(
        NOT_IN_SCHEMA,
        format!(
            "mutations[{index}]: this server's schema does not declare {what}; the client's schema is newer: \
             upgrade the server"
        ),
    )
}

/// For a push body that did not read: [`NOT_IN_SCHEMA`] if a mutation names an entity type this
/// server does not know (the push is otherwise read only to find it).
fn unknown_type(bytes: &[u8]) -> Option<ApiFailure> {
    #[derive(serde::Deserialize)]
    struct Named {
        entity_type: String,
    }
    #[derive(serde::Deserialize)]
    struct Push {
        mutations: Vec<Named>,
    }
    let push: Push = serde_json::from_slice(bytes).ok()?;
    let (index, named) =
        push.mutations.iter().enumerate().find(|(_, m)| EntityType::named(&m.entity_type).is_none())?;
    Some(not_in_schema(index, format!("the entity type '{}'", named.entity_type)))
}

/// The body length the request declares (`Content-Length`), if it declares one.
pub(crate) fn declared_length(request: &Request) -> Option<u64> {
    request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// 413 with `code`: the `what` is larger than `limit` bytes.
pub(crate) fn too_large(code: &str, what: &str, limit: u64) -> ApiFailure {
    ApiFailure::new(StatusCode::PAYLOAD_TOO_LARGE, code, format!("the {what} is larger than {limit} bytes"))
}

/// Parses JSON, naming the path of the value at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiFailure> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiFailure::invalid("invalid_request", format!("{path}: {inner}"))
            }
            _ => ApiFailure::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {inner}")),
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiFailure::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {e}"))
    })?;
    Ok(value)
}

/// A query string.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiFailure> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiFailure::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}

/// Path parameters. One that cannot be read (not UTF-8 once percent-decoded, say) is a `422
/// invalid_request` with the API's JSON error body, like every other bad input, not axum's
/// plain-text 400.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiFailure> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|e| ApiFailure::invalid("invalid_request", format!("path: {}", e.body_text())))
    }
}

/// The user a valid bearer token belongs to. A missing, malformed, unknown or expired token
/// is a 401 before the handler runs, so nothing changes.
#[derive(Debug)]
pub(crate) struct AuthUser {
    pub user: UserId,
    pub token_hash: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiFailure> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiFailure::unauthorized("the Authorization header is missing"))?;
        let token = header
            .to_str()
            .ok()
            // The scheme name is case-insensitive (RFC 9110, section 11.1).
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiFailure::unauthorized("the Authorization header is not 'Bearer <token>'"))?;
        let token_hash = auth::token_hash(token);
        match state.store.user_for_token(&token_hash, auth::now()).await? {
            Some(user) => Ok(AuthUser { user, token_hash }),
            None => Err(ApiFailure::unauthorized("the token is unknown or expired; log in again")),
        }
    }
}
