use crate::{
    blob::{BlobHash, CachedBlob, EvictionReport},
    entities::EntityRef,
    error::RepositoryError,
    ports::RemoteError,
    UserId,
};
use async_trait::async_trait;
use shaku::Interface;
use std::path::PathBuf;

/// The client's local audio cache: content-addressed files with a size cap. Blobs the server
/// does not hold yet and pinned blobs are never evicted; the rest go least recently used first.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlobCache: Interface {
    /// Copies the file at `source` into the cache, hashing it on the way (memory does not grow
    /// with its size), and records it as not yet on the server. A file the cache holds already
    /// is not copied again.
    async fn import(&self, source: PathBuf) -> Result<CachedBlob, RepositoryError>;

    /// The cached file named `hash`, marked as just used; `None` if the cache lacks it.
    async fn open(&self, hash: &BlobHash) -> Result<Option<PathBuf>, RepositoryError>;

    /// A fresh path in the cache's staging area for a download to write into. Nothing staged is
    /// ever read as a blob until [`adopt`](Self::adopt) checked it.
    fn staging_path(&self) -> PathBuf;

    /// Moves a staged download into the cache if its bytes hash to `hash`, then evicts down to
    /// the cap. A mismatch removes the staged file and is a validation error on `sha256`.
    async fn adopt(&self, staged: PathBuf, hash: &BlobHash) -> Result<CachedBlob, RepositoryError>;

    /// Records that the server holds `hash`: from now on it may be evicted.
    async fn mark_uploaded(&self, hash: &BlobHash) -> Result<(), RepositoryError>;

    /// Pins or unpins a cached blob. Returns whether the cache holds it.
    async fn set_pinned(&self, hash: &BlobHash, pinned: bool) -> Result<bool, RepositoryError>;

    /// Every cached blob, most recently used first.
    async fn list(&self) -> Result<Vec<CachedBlob>, RepositoryError>;

    /// Removes least recently used blobs, never pinned or unuploaded ones, until the cache fits
    /// its cap (or nothing more may go).
    async fn evict(&self) -> Result<EvictionReport, RepositoryError>;

    /// The file a visible entity names in its type's declared file field (`BLOB_FIELD`).
    async fn file_of(&self, entity: EntityRef) -> Result<EntityFile, RepositoryError>;
}

/// What an entity's declared file field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityFile {
    /// No such visible entity.
    Missing,
    /// The entity names no file (its type declares no file field, or the field is empty).
    Nothing,
    /// The file with this hash.
    File(BlobHash),
}

/// The server's blob endpoints, as the client reaches them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlobRemote: Interface {
    /// Where an upload of `hash` starts: `None` when the server holds the blob already (then
    /// it is not sent again), else the bytes of this user's cut upload the server kept (0 for
    /// none), which need not be sent again.
    async fn upload_offset(&self, hash: &BlobHash) -> Result<Option<u64>, RemoteError>;

    /// Streams the file at `file` to the server under `hash`, from byte `offset` on (what
    /// [`upload_offset`](Self::upload_offset) said). The server checks the whole file's bytes
    /// against the name; of an upload that is cut it keeps what arrived, for the next attempt.
    async fn upload_blob(&self, hash: &BlobHash, file: PathBuf, offset: u64) -> Result<(), RemoteError>;

    /// Streams the file `entity` names (its type's [`crate::SyncEntity::BLOB_FIELD`]) into the
    /// file `into` (created or truncated). Returns the number of bytes written. The caller
    /// checks them against the hash the entity names.
    async fn download_file(&self, entity: EntityRef, into: PathBuf) -> Result<u64, RemoteError>;
}

/// Failures of the server's blob storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob storage: {message}")]
pub struct BlobStorageError {
    /// What failed.
    pub message: String,
}

impl BlobStorageError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// Where the server keeps blobs. The sync code sees only this port: the filesystem
/// implementation can be swapped for an object store without touching it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlobStorage: Interface {
    /// The size of the stored blob `hash`, or `None` if it is not stored.
    async fn size_of(&self, hash: &BlobHash) -> Result<Option<u64>, BlobStorageError>;

    /// The bytes of `owner`'s cut upload of `hash` kept for a resume ([`BlobWriter::keep`]),
    /// 0 if none.
    async fn held(&self, hash: &BlobHash, owner: UserId) -> Result<u64, BlobStorageError>;

    /// Starts `owner`'s upload of `hash`: from the start when `offset` is 0 (dropping anything
    /// kept), else after the `offset` bytes kept, which must be exactly what
    /// [`held`](Self::held) says (the writer's [`read_held`](BlobWriter::read_held) gives them
    /// back, to hash). Nothing is visible under `hash` until the writer is committed; a writer
    /// dropped uncommitted leaves nothing behind unless it was kept.
    async fn begin(
        &self,
        hash: &BlobHash,
        owner: UserId,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobStorageError>;

    /// Opens the stored blob `hash` for reading, or `None` if it is not stored.
    async fn open(&self, hash: &BlobHash) -> Result<Option<Box<dyn BlobReader>>, BlobStorageError>;

    /// Removes cut uploads kept for a resume that nobody resumed for a day; returns how many.
    async fn sweep(&self) -> Result<u64, BlobStorageError>;
}

/// A blob being written. The caller checks the bytes against the name before committing.
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends `chunk`.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobStorageError>;

    /// The bytes kept from before this upload resumed, a chunk at a time (`None` after the
    /// last), read once, before anything is written.
    async fn read_held(&mut self) -> Result<Option<Vec<u8>>, BlobStorageError>;

    /// Makes the written bytes durable and visible under the blob's name, at once.
    async fn commit(self: Box<Self>) -> Result<(), BlobStorageError>;

    /// Keeps what this upload holds (kept bytes and those written) for the same owner to
    /// resume; returns their number.
    async fn keep(self: Box<Self>) -> Result<u64, BlobStorageError>;
}

/// A stored blob being read.
#[async_trait]
pub trait BlobReader: Send {
    /// The blob's length in bytes.
    fn size(&self) -> u64;

    /// The next chunk, or `None` at the end.
    async fn read(&mut self) -> Result<Option<Vec<u8>>, BlobStorageError>;
}
