//! `AudioFiles`: the files entities name (a track's audio), on this device. An entity whose
//! type declares a file field (`BLOB_FIELD`) names a file by its hash: adding the file copies it
//! into the content-addressed cache, and the entity's write queues its upload (see the local
//! store); fetching an entity's file serves it from the cache, or downloads it on demand into
//! the cache (checked against the hash), which then evicts down to its cap.

use std::{path::PathBuf, sync::Arc};
use trackflow_domain::{
    ports::{BlobCache, BlobRemote, EntityFile, RemoteError},
    BlobHash, CachedBlob, EntityRef, RepositoryError,
};

/// Why audio could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The entity is not in the local store (or deleted).
    #[error("{0} not found")]
    NoSuchTrack(EntityRef),
    /// The entity names no file.
    #[error("{0} has no audio")]
    NoAudio(EntityRef),
    /// The local store or cache failed, or refused the input.
    #[error(transparent)]
    Local(#[from] RepositoryError),
    /// The download failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// The files entities name: add, fetch, pin.
pub struct AudioFiles {
    cache: Arc<dyn BlobCache>,
    remote: Arc<dyn BlobRemote>,
}

impl AudioFiles {
    /// Files over the `cache` and the server's blob endpoints.
    pub fn new(cache: Arc<dyn BlobCache>, remote: Arc<dyn BlobRemote>) -> Self {
        Self { cache, remote }
    }

    /// Copies the file at `file` into the cache and returns its entry, for a track to name
    /// (its upload is queued with the track).
    pub async fn import(&self, file: PathBuf) -> Result<CachedBlob, AudioError> {
        Ok(self.cache.import(file).await?)
    }

    /// The local file `entity` names: from the cache, or downloaded into it now.
    #[tracing::instrument(skip(self))]
    pub async fn fetch(&self, entity: EntityRef) -> Result<PathBuf, AudioError> {
        let hash = self.hash_of(entity).await?;
        if let Some(path) = self.cache.open(&hash).await? {
            return Ok(path);
        }
        let staged = self.cache.staging_path();
        let downloaded = self.remote.download_file(entity, staged.clone()).await;
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
                "the audio of {entity} is larger than the cache's cap; raise the cap"
            )))
        })
    }

    /// Pins (keeps through eviction) or unpins the file `entity` names. Fetches it first when
    /// pinning.
    pub async fn pin(&self, entity: EntityRef, pinned: bool) -> Result<(), AudioError> {
        if pinned {
            self.fetch(entity).await?;
        }
        let hash = self.hash_of(entity).await?;
        if !self.cache.set_pinned(&hash, pinned).await? && pinned {
            return Err(AudioError::Local(RepositoryError::Conflict(format!(
                "the audio of {entity} left the cache before it could be pinned; try again"
            ))));
        }
        Ok(())
    }

    async fn hash_of(&self, entity: EntityRef) -> Result<BlobHash, AudioError> {
        match self.cache.file_of(entity).await? {
            EntityFile::File(hash) => Ok(hash),
            EntityFile::Nothing => Err(AudioError::NoAudio(entity)),
            EntityFile::Missing => Err(AudioError::NoSuchTrack(entity)),
        }
    }
}
