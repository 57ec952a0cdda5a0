//! Audio blobs: `HEAD` and `PUT /v1/blobs/{sha256}`, `GET /v1/tracks/{track_id}/audio`.
//!
//! Uploads stream to the [`BlobStorage`] port while they are hashed; a blob becomes visible
//! only after its bytes matched its name, and an upload that is too large, does not match, or
//! is cut leaves nothing behind. Downloads go by track: whoever may read the track may fetch
//! its audio, nobody else. The push endpoint refuses a track naming audio this server lacks
//! ([`missing_audio`]), so no track is ever stored without its file.

use crate::{
    error::ApiFailure,
    extract::{declared_length, too_large, AuthUser},
    AppState,
};
use axum::{
    body::Body,
    extract::{Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use trackflow_domain::{
    ports::{BlobStorage, BlobStorageError},
    protocol::{BlobStored, PushRequest},
    AudioTrackId, BlobHash, EntityType, OperationKind,
};

/// The storage, or 503 on a server configured without one.
fn storage(state: &AppState) -> Result<&Arc<dyn BlobStorage>, ApiFailure> {
    state.blobs.as_ref().ok_or_else(|| {
        ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "this server stores no audio")
    })
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

/// `HEAD /v1/blobs/{sha256}`: 200 with the length if the server holds the blob, else 404.
pub(crate) async fn exists(
    State(state): State<AppState>,
    _auth: AuthUser,
    Path(sha256): Path<String>,
) -> Result<Response, ApiFailure> {
    let hash = parse_hash(&sha256)?;
    match storage(&state)?.size_of(&hash).await.map_err(storage_failure)? {
        Some(size) => Ok((StatusCode::OK, [(header::CONTENT_LENGTH, size.to_string())]).into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// `PUT /v1/blobs/{sha256}`: stores the body under its hash. 201 when stored now, 200 when the
/// server had it; 413 `blob_too_large`; 422 `hash_mismatch`; 400 `upload_incomplete` when
/// the body was cut.
pub(crate) async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(sha256): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<BlobStored>), ApiFailure> {
    let hash = parse_hash(&sha256)?;
    let storage = storage(&state)?;
    let limit = state.config.max_blob_bytes;
    let too_large = || too_large("blob_too_large", "blob", limit);
    if declared_length(&request).is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    if let Some(size) = storage.size_of(&hash).await.map_err(storage_failure)? {
        return Ok((
            StatusCode::OK,
            Json(BlobStored { sha256: hash.to_string(), size_bytes: size, created: false }),
        ));
    }
    let mut writer = storage.begin(&hash).await.map_err(storage_failure)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::info!(user = %auth.user, error = %e, "upload cut");
            ApiFailure::new(
                StatusCode::BAD_REQUEST,
                "upload_incomplete",
                "the upload ended before its body did",
            )
        })?;
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
    writer.commit().await.map_err(storage_failure)?;
    state.metrics.blob_bytes_in(size);
    tracing::info!(user = %auth.user, %hash, size, "blob stored");
    Ok((StatusCode::CREATED, Json(BlobStored { sha256: hash.to_string(), size_bytes: size, created: true })))
}

/// `GET /v1/tracks/{track_id}/audio`: the track's audio, streamed, to a user who may read the
/// track. 404 when the track is unknown, unreadable to the user, deleted or has no audio.
pub(crate) async fn audio(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(track_id): Path<String>,
) -> Result<Response, ApiFailure> {
    let track: AudioTrackId = track_id
        .parse()
        .map_err(|_| ApiFailure::invalid("invalid_request", format!("track_id: not a UUID: '{track_id}'")))?;
    let not_found =
        || ApiFailure::new(StatusCode::NOT_FOUND, "not_found", format!("no audio for track {track}"));
    let hash = state.store.track_audio(auth.user, track).await?.ok_or_else(not_found)?;
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

/// Refuses a push whose tracks name audio this server does not hold, naming the first such
/// mutation: the client uploads audio before the track that uses it.
pub(crate) async fn missing_audio(state: &AppState, request: &PushRequest) -> Result<(), ApiFailure> {
    for (i, mutation) in request.mutations.iter().enumerate() {
        let writes = matches!(mutation.kind, OperationKind::Create | OperationKind::Update);
        if mutation.entity_type != EntityType::AudioTrack || !writes {
            continue;
        }
        let Some(named) = mutation.fields.get("audio_sha256").and_then(|c| c.value.as_str()) else {
            continue;
        };
        let Ok(hash) = BlobHash::parse(named) else { continue };
        let held = match &state.blobs {
            Some(storage) => storage.size_of(&hash).await.map_err(storage_failure)?.is_some(),
            None => false,
        };
        if !held {
            return Err(ApiFailure {
                mutation_id: Some(mutation.id),
                ..ApiFailure::invalid(
                    "missing_blob",
                    format!("mutations[{i}].fields.audio_sha256: the server holds no blob {hash}; upload it first"),
                )
            });
        }
    }
    Ok(())
}
