//! Audio blobs: `HEAD` and `PUT /v1/blobs/{sha256}`, `GET /v1/tracks/{track_id}/audio`.
//!
//! Uploads stream to the [`BlobStorage`] port while they are hashed; a blob becomes visible
//! only after its bytes matched its name, and an upload that is too large, does not match, or
//! is cut leaves nothing behind. Downloads go by track: whoever may read the track may fetch
//! its audio, nobody else. The push endpoint refuses a track naming audio this server lacks
//! ([`missing_audio`]), so no track is ever stored without its file. A user may name only audio
//! they uploaded themselves (the server checked its bytes): knowing a hash grants nothing, so
//! `HEAD` answers 404 and `PUT` reads the whole body for a blob someone else uploaded.
//!
//! Uploads resume: of a cut upload the server keeps what arrived, per user and hash. `HEAD`
//! answers 404 with `Upload-Offset: <bytes kept>`, and a `PUT` with `Upload-Offset: n` sends
//! the file from byte `n` on; the server hashes the kept bytes and the new ones together, so
//! the whole file is still checked against its name. A `PUT` without the header starts over.

use crate::{
    error::ApiFailure,
    extract::{declared_length, too_large, ApiPath, AuthUser},
    AppState,
};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use trackflow_domain::uuid::Uuid;
use trackflow_domain::{
    entities::UnknownEntityType,
    ports::{BlobStorage, BlobStorageError},
    protocol::{BlobStored, PushRequest},
    BlobHash, EntityRef, EntityType, OperationKind, UserId,
};

/// The storage, or `422 no_audio_storage` on a server configured without one (permanent: the
/// client parks that upload instead of waiting for the whole server).
fn storage(state: &AppState) -> Result<&Arc<dyn BlobStorage>, ApiFailure> {
    state.blobs.as_ref().ok_or_else(|| ApiFailure::invalid("no_audio_storage", "this server stores no audio"))
}

fn parse_hash(text: &str) -> Result<BlobHash, ApiFailure> {
    BlobHash::parse(text).map_err(|_| {
        ApiFailure::invalid("invalid_hash", format!("sha256: must be 64 hexadecimal digits, got '{text}'"))
    })
}

fn storage_failure(error: BlobStorageError) -> ApiFailure {
    tracing::error!(%error, "blob storage failure");
    ApiFailure::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server could not store or read the blob",
    )
}

/// The header naming where an upload resumes.
pub(crate) const UPLOAD_OFFSET: &str = "upload-offset";

/// `HEAD /v1/blobs/{sha256}`: 200 with the length if the server holds the blob and this user
/// uploaded it, else 404 with `Upload-Offset`: the bytes of this user's cut upload kept (0 for
/// none). Whether someone else uploaded the same bytes is never told.
pub(crate) async fn exists(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(sha256): ApiPath<String>,
) -> Result<Response, ApiFailure> {
    let hash = parse_hash(&sha256)?;
    let size = storage(&state)?.size_of(&hash).await.map_err(storage_failure)?;
    match size {
        Some(size) if state.store.may_use_blob(auth.user, hash.clone()).await? => {
            Ok((StatusCode::OK, [(header::CONTENT_LENGTH, size.to_string())]).into_response())
        }
        _ => {
            let kept = storage(&state)?.held(&hash, auth.user).await.map_err(storage_failure)?;
            Ok((StatusCode::NOT_FOUND, [(UPLOAD_OFFSET, kept.to_string())]).into_response())
        }
    }
}

/// `PUT /v1/blobs/{sha256}`: stores the body (the file from `Upload-Offset` on, default 0)
/// under its hash. 201 when stored now, 200 when the server had it; 413 `blob_too_large`; 422
/// `hash_mismatch` (nothing kept); 409 `upload_offset_mismatch` when the offset is not what is
/// kept; 400 `upload_incomplete` when the body was cut (what arrived is kept).
pub(crate) async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(sha256): ApiPath<String>,
    request: Request,
) -> Result<(StatusCode, Json<BlobStored>), ApiFailure> {
    let hash = parse_hash(&sha256)?;
    let storage = storage(&state)?;
    let limit = state.config.max_blob_bytes;
    let too_large = || too_large("blob_too_large", "blob", limit);
    let offset = upload_offset(&request)?;
    if declared_length(&request).is_some_and(|length| length.saturating_add(offset) > limit) {
        return Err(too_large());
    }
    let stored = storage.size_of(&hash).await.map_err(storage_failure)?;
    if let Some(size) = stored {
        if state.store.may_use_blob(auth.user, hash.clone()).await? {
            return Ok((
                StatusCode::OK,
                Json(BlobStored { sha256: hash.to_string(), size_bytes: size, created: false }),
            ));
        }
    }
    // Someone else's upload of the same bytes does not spare this user from proving they hold
    // them: the body is hashed either way (and kept if cut, like any upload).
    let kept = storage.held(&hash, auth.user).await.map_err(storage_failure)?;
    let mismatch = |kept: u64| {
        ApiFailure::new(
            StatusCode::CONFLICT,
            "upload_offset_mismatch",
            format!("the server keeps {kept} bytes of this upload, not {offset}: resume from {kept}"),
        )
    };
    if offset != 0 && offset != kept {
        return Err(mismatch(kept));
    }
    let mut writer = match storage.begin(&hash, auth.user, offset).await {
        Ok(writer) => writer,
        // Another resume of the same upload claimed the kept bytes first.
        Err(_) if offset != 0 => return Err(mismatch(storage.held(&hash, auth.user).await.unwrap_or(0))),
        Err(error) => return Err(storage_failure(error)),
    };
    let mut hasher = Sha256::new();
    while let Some(chunk) = writer.read_held().await.map_err(storage_failure)? {
        hasher.update(&chunk);
    }
    let mut size = offset;
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let kept = writer.keep().await.map_err(storage_failure)?;
                tracing::info!(user = %auth.user, %error, kept, "upload cut; what arrived is kept");
                return Err(ApiFailure::new(
                    StatusCode::BAD_REQUEST,
                    "upload_incomplete",
                    format!("the upload ended before its body did; {kept} bytes are kept to resume from"),
                ));
            }
        };
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large());
        }
        hasher.update(&chunk);
        writer.write(&chunk).await.map_err(storage_failure)?;
    }
    let actual = BlobHash::from_digest(hasher.finalize().into());
    if actual != hash {
        return Err(ApiFailure::invalid(
            "hash_mismatch",
            format!("sha256: the body hashes to {actual}, not {hash}; nothing was stored"),
        ));
    }
    // Someone else's copy is already in place: this upload only proved the bytes; dropping the
    // writer removes its staged file.
    let created = stored.is_none();
    if created {
        writer.commit().await.map_err(storage_failure)?;
    }
    state.store.grant_blob(auth.user, hash.clone(), crate::auth::now()).await?;
    state.metrics.blob_bytes_in(size - offset);
    tracing::info!(user = %auth.user, %hash, size, offset, created, "blob received");
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(BlobStored { sha256: hash.to_string(), size_bytes: size, created })))
}

/// The `Upload-Offset` header's value, 0 without one.
fn upload_offset(request: &Request) -> Result<u64, ApiFailure> {
    let Some(value) = request.headers().get(UPLOAD_OFFSET) else { return Ok(0) };
    value.to_str().ok().and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
        ApiFailure::invalid("invalid_request", "Upload-Offset: must be a number of bytes".to_owned())
    })
}

/// `GET /v1/files/{entity_type}/{entity_id}`: the file an entity names (a track's audio),
/// streamed, to a user who may read the entity. 404 when the entity is unknown, unreadable to the
/// user, deleted or names no file.
pub(crate) async fn file(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((entity_type, entity_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiFailure> {
    let entity_type: EntityType = entity_type
        .parse()
        .map_err(|e: UnknownEntityType| ApiFailure::invalid("invalid_request", e.to_string()))?;
    let id: Uuid = entity_id.parse().map_err(|_| {
        ApiFailure::invalid("invalid_request", format!("entity_id: not a UUID: '{entity_id}'"))
    })?;
    let entity = EntityRef::new(entity_type, id);
    let not_found = || ApiFailure::new(StatusCode::NOT_FOUND, "not_found", format!("no file for {entity}"));
    let hash = state.store.entity_file(auth.user, entity).await?.ok_or_else(not_found)?;
    let reader = storage(&state)?.open(&hash).await.map_err(storage_failure)?.ok_or_else(not_found)?;
    let size = reader.size();
    state.metrics.blob_bytes_out(size);
    let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
        match reader.read().await {
            Ok(Some(chunk)) => Some((Ok::<_, BlobStorageError>(chunk), reader)),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "reading a blob failed mid-download");
                Some((Err(error), reader))
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        headers.insert(header::ETAG, tag);
    }
    Ok(response)
}

/// Refuses a push whose tracks name audio the pushing user has not uploaded (or this server does
/// not hold), naming the first such mutation: the client uploads audio before the track that
/// uses it, and knowing a hash is not enough to name someone else's file.
pub(crate) async fn missing_audio(
    state: &AppState,
    user: UserId,
    request: &PushRequest,
) -> Result<(), ApiFailure> {
    for (i, mutation) in request.mutations.iter().enumerate() {
        let writes = matches!(mutation.kind, OperationKind::Create | OperationKind::Update);
        let Some(field) = mutation.entity_type.blob_field().filter(|_| writes) else { continue };
        let Some(named) = mutation.fields.get(field).and_then(|c| c.value.as_str()) else {
            continue;
        };
        let Ok(hash) = BlobHash::parse(named) else { continue };
        let held = match &state.blobs {
            Some(storage) => storage.size_of(&hash).await.map_err(storage_failure)?.is_some(),
            None => false,
        };
        if !held || !state.store.may_use_blob(user, hash.clone()).await? {
            return Err(ApiFailure {
                mutation_id: Some(mutation.id),
                ..ApiFailure::invalid(
                    "missing_blob",
                    format!(
                        "mutations[{i}].fields.audio_sha256: this user has uploaded no blob {hash}; upload it first"
                    ),
                )
            });
        }
    }
    Ok(())
}
