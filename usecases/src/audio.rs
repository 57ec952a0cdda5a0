//! `AudioFiles`: the audio of tracks, on this device. Adding a track with a file copies the
//! file into the content-addressed cache, and the track's write queues its upload (see the
//! local store); fetching a track's audio serves it from the cache, or downloads it on demand
//! into the cache (checked against the track's hash), which then evicts down to its cap.

use std::{path::PathBuf, sync::Arc};
use trackflow_domain::SyncEntity;
use trackflow_domain::{
    ports::{BlobCache, BlobRemote, RemoteError, Repository},
    AudioTrack, AudioTrackId, BlobHash, CachedBlob, EntityRef, RepositoryError,
};

/// Why audio could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The track is not in the local store (or deleted).
    #[error("{0} not found")]
    NoSuchTrack(EntityRef),
    /// The track has no audio.
    #[error("track {0} has no audio")]
    NoAudio(AudioTrackId),
    /// The local store or cache failed, or refused the input.
    #[error(transparent)]
    Local(#[from] RepositoryError),
    /// The download failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Tracks' audio files: add, fetch, pin.
pub struct AudioFiles {
    tracks: Arc<dyn Repository<AudioTrack>>,
    cache: Arc<dyn BlobCache>,
    remote: Arc<dyn BlobRemote>,
}

impl AudioFiles {
    /// Audio over the local `tracks`, the `cache`, and the server's blob endpoints.
    pub fn new(
        tracks: Arc<dyn Repository<AudioTrack>>,
        cache: Arc<dyn BlobCache>,
        remote: Arc<dyn BlobRemote>,
    ) -> Self {
        Self { tracks, cache, remote }
    }

    /// Copies the file at `file` into the cache and returns its entry, for a track to name
    /// (its upload is queued with the track).
    pub async fn import(&self, file: PathBuf) -> Result<CachedBlob, AudioError> {
        Ok(self.cache.import(file).await?)
    }

    /// The local file of `id`'s audio: from the cache, or downloaded into it now.
    #[tracing::instrument(skip(self))]
    pub async fn fetch(&self, id: AudioTrackId) -> Result<PathBuf, AudioError> {
        let hash = self.hash_of(id).await?;
        if let Some(path) = self.cache.open(&hash).await? {
            return Ok(path);
        }
        let staged = self.cache.staging_path();
        let downloaded = self.remote.download_audio(id, staged.clone()).await;
        let adopted = match downloaded {
            Ok(bytes) => {
                tracing::debug!(bytes, "downloaded");
                self.cache.adopt(staged.clone(), &hash).await.map_err(AudioError::from)
            }
            Err(error) => Err(error.into()),
        };
        if adopted.is_err() {
            // Nothing half-downloaded stays behind (adopt removes a mismatch itself).
            let _ = std::fs::remove_file(&staged);
        }
        adopted?;
        self.cache.open(&hash).await?.ok_or_else(|| {
            // Evicted at once: the cap is smaller than this one file.
            AudioError::Local(RepositoryError::Conflict(format!(
                "the audio of track {id} is larger than the cache's cap; raise the cap"
            )))
        })
    }

    /// Pins (keeps through eviction) or unpins `id`'s audio. Fetches it first when pinning.
    pub async fn pin(&self, id: AudioTrackId, pinned: bool) -> Result<(), AudioError> {
        if pinned {
            self.fetch(id).await?;
        }
        let hash = self.hash_of(id).await?;
        if !self.cache.set_pinned(&hash, pinned).await? && pinned {
            return Err(AudioError::Local(RepositoryError::Conflict(format!(
                "the audio of track {id} left the cache before it could be pinned; try again"
            ))));
        }
        Ok(())
    }

    async fn hash_of(&self, id: AudioTrackId) -> Result<BlobHash, AudioError> {
        let track: AudioTrack = self
            .tracks
            .get(id)
            .await?
            .ok_or(AudioError::NoSuchTrack(EntityRef::new(AudioTrack::ENTITY_TYPE, id.as_uuid())))?;
        let named = track.audio_sha256().ok_or(AudioError::NoAudio(id))?;
        Ok(BlobHash::parse(named).map_err(RepositoryError::from)?)
    }
}
