//! The server's blob storage on the filesystem, behind the domain's [`BlobStorage`] port:
//! `<dir>/<first two digits>/<hash>`. A blob is written under `<dir>/staging/` and renamed into
//! place on commit, after an fsync, so a reader sees a whole blob or none; a writer dropped
//! before committing removes its staged file. An object store would implement the same port.

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trackflow_domain::{
    ports::{BlobReader, BlobStorage, BlobStorageError, BlobWriter},
    BlobHash,
};

/// Blobs as files under one directory.
#[derive(Debug, Clone)]
pub struct FsBlobStorage {
    dir: PathBuf,
}

impl FsBlobStorage {
    /// Storage under `dir`, created (with its staging directory) if missing. Staged files left
    /// by a process that stopped mid-upload are removed. Blocking: call it before serving.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobStorageError> {
        let dir = dir.into();
        let staging = dir.join("staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| io_error("clearing", &staging, &e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| io_error("creating", &staging, &e))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.dir.join(&hash.as_str()[..2]).join(hash.as_str())
    }
}

#[async_trait]
impl BlobStorage for FsBlobStorage {
    async fn size_of(&self, hash: &BlobHash) -> Result<Option<u64>, BlobStorageError> {
        let path = self.path_of(hash);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", &path, &e)),
        }
    }

    async fn begin(&self, hash: &BlobHash) -> Result<Box<dyn BlobWriter>, BlobStorageError> {
        let staged = self.dir.join("staging").join(format!("{hash}.{}", uuid::Uuid::now_v7()));
        let file = tokio::fs::File::create(&staged).await.map_err(|e| io_error("creating", &staged, &e))?;
        Ok(Box::new(FsBlobWriter { file: Some(file), staged, target: self.path_of(hash) }))
    }

    async fn open(&self, hash: &BlobHash) -> Result<Option<Box<dyn BlobReader>>, BlobStorageError> {
        let path = self.path_of(hash);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening", &path, &e)),
        };
        let size = file.metadata().await.map_err(|e| io_error("reading", &path, &e))?.len();
        Ok(Some(Box::new(FsBlobReader { file, size, path })))
    }
}

/// A blob being written to a staged file.
struct FsBlobWriter {
    /// `None` once committed.
    file: Option<tokio::fs::File>,
    staged: PathBuf,
    target: PathBuf,
}

#[async_trait]
impl BlobWriter for FsBlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobStorageError> {
        let file = self.file.as_mut().ok_or_else(|| BlobStorageError::new("the blob is committed"))?;
        file.write_all(chunk).await.map_err(|e| io_error("writing", &self.staged, &e))
    }

    async fn commit(mut self: Box<Self>) -> Result<(), BlobStorageError> {
        let Some(mut file) = self.file.take() else { return Ok(()) };
        file.flush().await.map_err(|e| io_error("writing", &self.staged, &e))?;
        file.sync_all().await.map_err(|e| io_error("syncing", &self.staged, &e))?;
        drop(file);
        if let Some(dir) = self.target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| io_error("creating", dir, &e))?;
        }
        let renamed = tokio::fs::rename(&self.staged, &self.target).await;
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(&self.staged);
            return Err(io_error("placing", &self.target, &e));
        }
        Ok(())
    }
}

impl Drop for FsBlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Never committed: the upload failed, was refused or was cut.
            if let Err(error) = std::fs::remove_file(&self.staged) {
                tracing::warn!(path = %self.staged.display(), %error, "staged blob could not be removed");
            }
        }
    }
}

/// A stored blob being read in chunks.
struct FsBlobReader {
    file: tokio::fs::File,
    size: u64,
    path: PathBuf,
}

/// How much is read at once.
const CHUNK: usize = 256 * 1024;

#[async_trait]
impl BlobReader for FsBlobReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&mut self) -> Result<Option<Vec<u8>>, BlobStorageError> {
        let mut chunk = vec![0u8; CHUNK];
        let n = self.file.read(&mut chunk).await.map_err(|e| io_error("reading", &self.path, &e))?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok(Some(chunk))
    }
}

fn io_error(action: &str, path: &Path, error: &std::io::Error) -> BlobStorageError {
    BlobStorageError::new(format!("{action} {}: {error}", path.display()))
}
