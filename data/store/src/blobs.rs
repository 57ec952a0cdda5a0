//! The local audio cache: files named by their SHA-256 in a directory beside the database,
//! recorded in the `blobs` table. Files arrive through a staging directory and are renamed into
//! place only once their bytes are known to match their name, so a half-written file is never
//! read as a blob. Eviction removes least recently used blobs down to a size cap, never a
//! pinned one and never one the server does not hold yet.
//!
//! A track that names audio the server lacks depends on an upload operation: [`audio_upload`]
//! queues it in the track's own write transaction, once per blob.

use super::{
    outbox,
    records::{find_visible, WriteClock},
    schema::{blobs, pending_operations},
    LocalStore,
};
use async_trait::async_trait;
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use shaku::Component;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    ports::{BlobCache, EntityFile},
    BlobHash, CachedBlob, EntityRef, EvictionReport, OperationId, OperationKind, RepositoryError,
    SyncOperation, ValidationError,
};

/// Where the cache lives and how much it may hold.
#[derive(Debug, Clone)]
pub struct BlobCacheOptions {
    /// The cache directory; created if missing.
    pub dir: PathBuf,
    /// Eviction brings the cache down to this many bytes (pinned and unuploaded blobs may keep
    /// it above).
    pub cap_bytes: u64,
}

impl BlobCacheOptions {
    /// Default cap: 2 GiB.
    pub const DEFAULT_CAP_BYTES: u64 = 2 << 30;

    /// The cache beside `store`'s database file (`trackflow.db` → `trackflow.blobs/`).
    pub fn beside(store: &LocalStore) -> Self {
        Self { dir: store.path().with_extension("blobs"), cap_bytes: Self::DEFAULT_CAP_BYTES }
    }
}

/// The audio cache over the local store's `blobs` table and a directory of files.
#[derive(Component)]
#[shaku(interface = BlobCache)]
pub struct SqliteBlobCache {
    /// The local database.
    store: LocalStore,
    /// The directory and the cap.
    options: BlobCacheOptions,
}

/// How much of a file is read or written at once: memory does not grow with the file.
const CHUNK: usize = 256 * 1024;

impl SqliteBlobCache {
    /// A cache over `store`, as `options` say.
    pub fn new(store: LocalStore, options: BlobCacheOptions) -> Self {
        Self { store, options }
    }

    fn file_of(&self, hash: &BlobHash) -> PathBuf {
        self.options.dir.join(hash.as_str())
    }

    fn staging_dir(&self) -> PathBuf {
        self.options.dir.join("staging")
    }

    /// Moves the verified staged file into place and records it; `uploaded` says whether the
    /// server holds it (a download) or not (an import). The rename happens inside the write
    /// transaction, and eviction unlinks inside its own: SQLite's write lock orders the two,
    /// across processes sharing the cache, so a file is never unlinked under a fresh row.
    async fn settle_in(
        &self,
        staged: &Path,
        hash: &BlobHash,
        size: u64,
        uploaded: bool,
    ) -> StoreResult<CachedBlob> {
        let (staged, target) = (staged.to_owned(), self.file_of(hash));
        let now = self.store.now().as_millis();
        let row = BlobRow {
            sha256: hash.to_string(),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            path: hash.to_string(),
            created_at: now,
            last_used_at: now,
            pinned: false,
            uploaded,
            upload_op: None,
        };
        self.store
            .with_connection(move |conn| {
                conn.immediate_transaction(|conn| {
                    std::fs::rename(&staged, &target).map_err(|e| file_error("placing", &target, &e))?;
                    let existing: Option<BlobRow> =
                        blobs::table.find(&row.sha256).select(BlobRow::as_select()).first(conn).optional()?;
                    let stored = match existing {
                        Some(mut known) => {
                            // Already recorded: the server holding it is news worth keeping.
                            known.last_used_at = row.last_used_at;
                            known.uploaded |= row.uploaded;
                            diesel::update(blobs::table.find(&known.sha256))
                                .set((
                                    blobs::last_used_at.eq(known.last_used_at),
                                    blobs::uploaded.eq(known.uploaded),
                                ))
                                .execute(conn)?;
                            known
                        }
                        None => {
                            diesel::insert_into(blobs::table).values(&row).execute(conn)?;
                            row
                        }
                    };
                    stored.decode()
                })
            })
            .await
    }

    async fn run_eviction(&self) -> StoreResult<EvictionReport> {
        let (cap, dir) = (self.options.cap_bytes, self.options.dir.clone());
        self.store
            .with_connection(move |conn| {
                conn.immediate_transaction(|conn| {
                    let rows: Vec<BlobRow> = blobs::table
                        .order((blobs::last_used_at.asc(), blobs::sha256.asc()))
                        .select(BlobRow::as_select())
                        .load(conn)?;
                    let mut remaining: u64 = rows.iter().map(|r| r.size()).sum();
                    let mut report = EvictionReport::default();
                    for row in rows.iter().filter(|r| r.uploaded && !r.pinned) {
                        if remaining <= cap {
                            break;
                        }
                        diesel::delete(blobs::table.find(&row.sha256)).execute(conn)?;
                        let path = dir.join(&row.path);
                        if let Err(error) = std::fs::remove_file(&path) {
                            // Gone already, or stuck: either way no row names it any more.
                            tracing::warn!(path = %path.display(), %error, "evicted blob file could not be removed");
                        }
                        remaining -= row.size();
                        report.removed += 1;
                        report.freed_bytes += row.size();
                    }
                    report.remaining_bytes = remaining;
                    Ok(report)
                })
            })
            .await
    }
}

#[async_trait]
impl BlobCache for SqliteBlobCache {
    #[tracing::instrument(skip_all, fields(%entity))]
    async fn file_of(&self, entity: EntityRef) -> Result<EntityFile, RepositoryError> {
        let Some(field) = entity.entity_type.blob_field() else { return Ok(EntityFile::Nothing) };
        self.store
            .with_connection(move |conn| {
                let Some(record) = find_visible(conn, entity.entity_type, entity.id)? else {
                    return Ok(EntityFile::Missing);
                };
                match record.entity.fields().get(field).and_then(serde_json::Value::as_str) {
                    Some(named) => Ok(EntityFile::File(
                        BlobHash::parse(named).map_err(|e| StoreError::corrupt("blobs", e))?,
                    )),
                    None => Ok(EntityFile::Nothing),
                }
            })
            .await
            .map_err(RepositoryError::from)
    }

    #[tracing::instrument(skip_all, fields(source = %source.display()))]
    async fn import(&self, source: PathBuf) -> Result<CachedBlob, RepositoryError> {
        let result: StoreResult<CachedBlob> = async {
            let staged = self.staging_path();
            let (hash, size) = copy_hashing(&source, &staged).await?;
            let blob = self.settle_in(&staged, &hash, size, false).await?;
            self.run_eviction().await?;
            Ok(blob)
        }
        .await;
        result.map_err(RepositoryError::from)
    }

    async fn open(&self, hash: &BlobHash) -> Result<Option<PathBuf>, RepositoryError> {
        let key = hash.to_string();
        let now = self.store.now().as_millis();
        let dir = self.options.dir.clone();
        let found = self
            .store
            .with_connection(move |conn| {
                conn.immediate_transaction(|conn| {
                    let name: Option<String> =
                        blobs::table.find(&key).select(blobs::path).first(conn).optional()?;
                    let Some(name) = name else { return Ok(None) };
                    let path = dir.join(name);
                    if !path.exists() {
                        // Removed behind the cache's back: a miss, so it is fetched again. The
                        // row of a blob the server lacks stays, for the user to see.
                        tracing::warn!(path = %path.display(), "a cached blob's file is missing");
                        diesel::delete(blobs::table.find(&key).filter(blobs::uploaded.eq(true)))
                            .execute(conn)?;
                        return Ok(None);
                    }
                    diesel::update(blobs::table.find(&key)).set(blobs::last_used_at.eq(now)).execute(conn)?;
                    Ok(Some(path))
                })
            })
            .await?;
        Ok(found)
    }

    fn staging_path(&self) -> PathBuf {
        self.staging_dir().join(format!("{}.part", uuid::Uuid::now_v7()))
    }

    #[tracing::instrument(skip_all, fields(%hash))]
    async fn adopt(&self, staged: PathBuf, hash: &BlobHash) -> Result<CachedBlob, RepositoryError> {
        let result: StoreResult<CachedBlob> = async {
            let (actual, size) = hash_file(&staged).await?;
            if &actual != hash {
                let _ = tokio::fs::remove_file(&staged).await;
                return Err(ValidationError::new(
                    "sha256",
                    format!("the downloaded bytes hash to {actual}, not {hash}: discarded"),
                )
                .into());
            }
            let blob = self.settle_in(&staged, hash, size, true).await?;
            self.run_eviction().await?;
            Ok(blob)
        }
        .await;
        result.map_err(RepositoryError::from)
    }

    async fn mark_uploaded(&self, hash: &BlobHash) -> Result<(), RepositoryError> {
        let key = hash.to_string();
        self.store
            .with_connection(move |conn| {
                diesel::update(blobs::table.find(&key))
                    .set((blobs::uploaded.eq(true), blobs::upload_op.eq(None::<String>)))
                    .execute(conn)?;
                Ok(())
            })
            .await
            .map_err(RepositoryError::from)
    }

    async fn set_pinned(&self, hash: &BlobHash, pinned: bool) -> Result<bool, RepositoryError> {
        let key = hash.to_string();
        self.store
            .with_connection(move |conn| {
                let n =
                    diesel::update(blobs::table.find(&key)).set(blobs::pinned.eq(pinned)).execute(conn)?;
                Ok(n > 0)
            })
            .await
            .map_err(RepositoryError::from)
    }

    async fn list(&self) -> Result<Vec<CachedBlob>, RepositoryError> {
        self.store
            .with_connection(|conn| {
                let rows: Vec<BlobRow> = blobs::table
                    .order((blobs::last_used_at.desc(), blobs::sha256.asc()))
                    .select(BlobRow::as_select())
                    .load(conn)?;
                rows.iter().map(BlobRow::decode).collect()
            })
            .await
            .map_err(RepositoryError::from)
    }

    async fn evict(&self) -> Result<EvictionReport, RepositoryError> {
        self.run_eviction().await.map_err(RepositoryError::from)
    }
}

/// The operations a write of `entity` naming the file `hash` in its `field` (a track's audio)
/// needs first: the upload of a file the server does not hold yet. Queues that upload (once per
/// file: later entities naming the same file depend on the same one) inside the write's
/// transaction. A file the cache has never seen is refused: nothing could ever upload it.
pub(crate) fn queue_upload(
    conn: &mut SqliteConnection,
    clock: &WriteClock,
    entity: EntityRef,
    field: &'static str,
    hash: &str,
) -> StoreResult<Vec<OperationId>> {
    let row: Option<BlobRow> = blobs::table.find(hash).select(BlobRow::as_select()).first(conn).optional()?;
    let Some(row) = row else {
        return Err(ValidationError::new(
            field,
            format!("no file with hash {hash} is in the local audio cache: add the audio file itself"),
        )
        .into());
    };
    if row.uploaded {
        return Ok(Vec::new());
    }
    if let Some(queued) = &row.upload_op {
        let still: i64 =
            pending_operations::table.filter(pending_operations::id.eq(queued)).count().get_result(conn)?;
        if still > 0 {
            return queued
                .parse()
                .map(|id| vec![id])
                .map_err(|e: trackflow_domain::ids::ParseIdError| StoreError::corrupt("blobs", e));
        }
    }
    let fields = BTreeMap::from([(field.to_owned(), serde_json::Value::from(hash))]);
    let op = SyncOperation::new(
        entity,
        OperationKind::Upload,
        fields,
        clock.tick(conn)?,
        0,
        Vec::new(),
        clock.now(),
    );
    outbox::insert(conn, &op)?;
    diesel::update(blobs::table.find(hash)).set(blobs::upload_op.eq(op.id.to_string())).execute(conn)?;
    Ok(vec![op.id])
}

/// Copies `source` to `target` (created, with its directory), hashing on the way.
async fn copy_hashing(source: &Path, target: &Path) -> StoreResult<(BlobHash, u64)> {
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| file_error("creating", dir, &e))?;
    }
    let mut output = tokio::fs::File::create(target).await.map_err(|e| file_error("writing", target, &e))?;
    let copied: StoreResult<(BlobHash, u64)> = async {
        let hashed = read_hashing(source, Some((&mut output, target))).await?;
        output.sync_all().await.map_err(|e| file_error("writing", target, &e))?;
        Ok(hashed)
    }
    .await;
    if copied.is_err() {
        let _ = tokio::fs::remove_file(target).await;
    }
    copied
}

/// The hash and length of the file at `path`, read in chunks.
pub async fn hash_file(path: &Path) -> StoreResult<(BlobHash, u64)> {
    read_hashing(path, None).await
}

/// Reads the file at `source` to its end in chunks, hashing it, and writes each chunk to `copy`
/// (the file and its path, for errors) when given one.
async fn read_hashing(
    source: &Path,
    mut copy: Option<(&mut tokio::fs::File, &Path)>,
) -> StoreResult<(BlobHash, u64)> {
    let mut input = tokio::fs::File::open(source).await.map_err(|e| file_error("reading", source, &e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buffer).await.map_err(|e| file_error("reading", source, &e))?;
        if n == 0 {
            return Ok((BlobHash::from_digest(hasher.finalize().into()), size));
        }
        hasher.update(&buffer[..n]);
        if let Some((output, target)) = copy.as_mut() {
            output.write_all(&buffer[..n]).await.map_err(|e| file_error("writing", target, &e))?;
        }
        size += n as u64;
    }
}

fn file_error(action: &'static str, path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::File { action, path: path.to_owned(), message: error.to_string() }
}

/// A row of `blobs`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = blobs)]
struct BlobRow {
    sha256: String,
    size_bytes: i64,
    path: String,
    created_at: i64,
    last_used_at: i64,
    pinned: bool,
    uploaded: bool,
    upload_op: Option<String>,
}

impl BlobRow {
    fn size(&self) -> u64 {
        u64::try_from(self.size_bytes).unwrap_or(0)
    }

    fn decode(&self) -> StoreResult<CachedBlob> {
        Ok(CachedBlob {
            hash: BlobHash::parse(&self.sha256).map_err(|e| StoreError::corrupt("blobs", e))?,
            size_bytes: self.size(),
            pinned: self.pinned,
            uploaded: self.uploaded,
            last_used_at: self.last_used_at,
        })
    }
}
