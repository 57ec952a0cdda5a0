//! The server's blob storage on the filesystem, behind the domain's [`BlobStorage`] port:
//! `<dir>/<first two digits>/<hash>`. A blob is written under `<dir>/staging/<instance>/` and
//! renamed into place on commit, after an fsync of the file and then of its directory, so a
//! reader sees a whole blob or none, and a blob a track was accepted for survives a power loss;
//! a writer dropped before committing removes its staged file. Several instances may share the
//! directory: each stages in its own folder. An object store would implement the same port.

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
    /// This instance's staging folder.
    staging: PathBuf,
}

/// Staged files older than this belong to an instance that stopped mid-upload.
const ABANDONED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl FsBlobStorage {
    /// Storage under `dir`, created (with this instance's staging folder) if missing. Staging
    /// folders untouched for a day, left by instances that stopped mid-upload, are removed.
    /// Blocking: call it before serving.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobStorageError> {
        let dir = dir.into();
        let all_staging = dir.join("staging");
        sweep_abandoned(&all_staging);
        let staging = all_staging.join(uuid::Uuid::now_v7().to_string());
        std::fs::create_dir_all(&staging).map_err(|e| io_error("creating", &staging, &e))?;
        Ok(Self { dir, staging })
    }

    /// This instance's staging folder.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
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
        let staged = self.staging.join(format!("{hash}.{}", uuid::Uuid::now_v7()));
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
        // The rename itself is durable only once its directory is.
        if let Some(dir) = self.target.parent() {
            let synced = async { tokio::fs::File::open(dir).await?.sync_all().await }.await;
            synced.map_err(|e| io_error("syncing", dir, &e))?;
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

/// Removes staging folders (and stray files) under `staging` untouched for [`ABANDONED`].
/// Best effort: another instance may be working in there, so errors are only logged.
fn sweep_abandoned(staging: &Path) {
    let Ok(entries) = std::fs::read_dir(staging) else { return };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > ABANDONED);
        if !old {
            continue;
        }
        let path = entry.path();
        let removed =
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(error) = removed {
            tracing::warn!(path = %path.display(), %error, "an abandoned staging entry could not be removed");
        }
    }
}

fn io_error(action: &str, path: &Path, error: &std::io::Error) -> BlobStorageError {
    BlobStorageError::new(format!("{action} {}: {error}", path.display()))
}
