//! The server's blob storage on the filesystem, behind the domain's [`BlobStorage`] port:
//! `<dir>/<first two digits>/<hash>`. A blob is written under `<dir>/staging/<instance>/` and
//! renamed into place on commit, after an fsync of the file and then of its directory, so a
//! reader sees a whole blob or none, and a blob a track was accepted for survives a power loss;
//! a writer dropped before committing removes its staged file. Several instances may share the
//! directory: each stages in its own folder. An object store would implement the same port.
//!
//! A cut upload the server keeps for a resume lives at `<dir>/kept/<owner>/<hash>`. A resume
//! claims it by renaming it into its staging folder (one rename: of two resumes of the same
//! upload only one gets it), appends the rest, and is placed like any other blob; cut again,
//! it is renamed back, longer. Kept uploads untouched for a day are removed.

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trackflow_domain::{
    ports::{BlobReader, BlobStorage, BlobStorageError, BlobWriter},
    BlobHash, UserId,
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
        sweep_kept(&dir);
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

    /// Where `owner`'s cut upload of `hash` is kept.
    fn kept_path(&self, hash: &BlobHash, owner: UserId) -> PathBuf {
        self.dir.join("kept").join(owner.to_string()).join(hash.as_str())
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

    async fn held(&self, hash: &BlobHash, owner: UserId) -> Result<u64, BlobStorageError> {
        let path = self.kept_path(hash, owner);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error("reading", &path, &e)),
        }
    }

    async fn begin(
        &self,
        hash: &BlobHash,
        owner: UserId,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobStorageError> {
        let staged = self.staging.join(format!("{hash}.{}", uuid::Uuid::now_v7()));
        let kept = self.kept_path(hash, owner);
        let (file, held) = if offset == 0 {
            match tokio::fs::remove_file(&kept).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error("removing", &kept, &e))
                }
                _ => {}
            }
            let file =
                tokio::fs::File::create(&staged).await.map_err(|e| io_error("creating", &staged, &e))?;
            (file, None)
        } else {
            tokio::fs::rename(&kept, &staged).await.map_err(|e| io_error("claiming", &kept, &e))?;
            let len = tokio::fs::metadata(&staged).await.map_err(|e| io_error("reading", &staged, &e))?.len();
            if len != offset {
                let _ = tokio::fs::rename(&staged, &kept).await;
                return Err(BlobStorageError::new(format!("{len} bytes are kept, not {offset}")));
            }
            let reader =
                tokio::fs::File::open(&staged).await.map_err(|e| io_error("opening", &staged, &e))?;
            let file = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&staged)
                .await
                .map_err(|e| io_error("opening", &staged, &e))?;
            (file, Some((reader, offset)))
        };
        Ok(Box::new(FsBlobWriter { file: Some(file), staged, target: self.path_of(hash), kept, held }))
    }

    async fn sweep(&self) -> Result<u64, BlobStorageError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep_kept(&dir))
            .await
            .map_err(|e| BlobStorageError::new(format!("sweeping kept uploads: {e}")))
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
    /// `None` once committed or kept.
    file: Option<tokio::fs::File>,
    staged: PathBuf,
    target: PathBuf,
    /// Where it goes when kept for a resume.
    kept: PathBuf,
    /// The kept bytes it resumed after, still to be read back: a reader and how many are left.
    held: Option<(tokio::fs::File, u64)>,
}

#[async_trait]
impl BlobWriter for FsBlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobStorageError> {
        let file = self.file.as_mut().ok_or_else(|| BlobStorageError::new("the blob is committed"))?;
        file.write_all(chunk).await.map_err(|e| io_error("writing", &self.staged, &e))
    }

    async fn read_held(&mut self) -> Result<Option<Vec<u8>>, BlobStorageError> {
        let Some((reader, left)) = self.held.as_mut() else { return Ok(None) };
        if *left == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0u8; CHUNK.min(usize::try_from(*left).unwrap_or(CHUNK))];
        reader.read_exact(&mut chunk).await.map_err(|e| io_error("reading", &self.staged, &e))?;
        *left -= chunk.len() as u64;
        Ok(Some(chunk))
    }

    async fn keep(mut self: Box<Self>) -> Result<u64, BlobStorageError> {
        let Some(mut file) = self.file.take() else { return Ok(0) };
        let kept: Result<u64, BlobStorageError> = async {
            file.flush().await.map_err(|e| io_error("writing", &self.staged, &e))?;
            file.sync_all().await.map_err(|e| io_error("syncing", &self.staged, &e))?;
            let len = file.metadata().await.map_err(|e| io_error("reading", &self.staged, &e))?.len();
            if let Some(dir) = self.kept.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(|e| io_error("creating", dir, &e))?;
            }
            tokio::fs::rename(&self.staged, &self.kept)
                .await
                .map_err(|e| io_error("keeping", &self.kept, &e))?;
            Ok(len)
        }
        .await;
        if kept.is_err() {
            let _ = std::fs::remove_file(&self.staged);
        }
        kept
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
/// Removes kept uploads untouched for [`ABANDONED`]; returns how many entries went.
fn sweep_kept(dir: &Path) -> u64 {
    let Ok(owners) = std::fs::read_dir(dir.join("kept")) else { return 0 };
    owners.flatten().map(|owner| sweep_abandoned(&owner.path())).sum()
}

fn sweep_abandoned(staging: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(staging) else { return 0 };
    let mut swept = 0;
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
        match removed {
            Ok(()) => swept += 1,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "an abandoned staging entry could not be removed")
            }
        }
    }
    swept
}

fn io_error(action: &str, path: &Path, error: &std::io::Error) -> BlobStorageError {
    BlobStorageError::new(format!("{action} {}: {error}", path.display()))
}
