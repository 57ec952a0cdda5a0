//! The local audio cache: content addressing, verified adoption of downloads, eviction that
//! keeps pinned and unuploaded blobs, and the upload a track with new audio depends on.

use super::Fixture;
use std::path::Path;
use trackflow_domain::{
    ports::{BlobCache, PendingOperationsRepository, Repository},
    sync::Settlement,
    OperationKind, RepositoryError, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project};
use trackflow_store::SqlitePendingOperationsRepository;
use trackflow_store::{BlobCacheOptions, SqliteBlobCache, SqliteRepository};

fn write_file(dir: &Path, name: &str, len: usize, seed: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect();
    std::fs::write(&path, bytes).expect("write source");
    path
}

fn cache(fx: &Fixture, cap_bytes: u64) -> SqliteBlobCache {
    SqliteBlobCache::new(fx.store.clone(), BlobCacheOptions { dir: fx.dir.path().join("blobs"), cap_bytes })
}

#[tokio::test]
async fn an_imported_file_is_named_by_its_hash_and_kept_until_the_server_holds_it() {
    let fx = Fixture::new().await;
    let cache = cache(&fx, 1_000);
    let source = write_file(fx.dir.path(), "take1.wav", 5_000, 1);
    let blob = cache.import(source.clone()).await.expect("import");
    assert_eq!(blob.size_bytes, 5_000);
    assert!(!blob.uploaded && !blob.pinned);
    let stored = cache.open(&blob.hash).await.expect("open").expect("cached");
    assert_eq!(std::fs::read(&stored).expect("read"), std::fs::read(&source).expect("read"));
    assert_eq!(trackflow_store::hash_file(&stored).await.expect("hash").0, blob.hash);

    // Over the cap, but the only copy: eviction keeps it.
    assert_eq!(cache.evict().await.expect("evict").removed, 0);
    cache.mark_uploaded(&blob.hash).await.expect("uploaded");
    let report = cache.evict().await.expect("evict");
    assert_eq!((report.removed, report.freed_bytes, report.remaining_bytes), (1, 5_000, 0));
    assert_eq!(cache.open(&blob.hash).await.expect("open"), None);
    assert!(!stored.exists(), "the evicted file is gone");
}

#[tokio::test]
async fn eviction_removes_least_recently_used_first_and_never_a_pinned_blob() {
    let fx = Fixture::new().await;
    let cache = cache(&fx, 10_000);
    let mut blobs = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let blob = cache.import(write_file(fx.dir.path(), name, 1_000, i as u8)).await.expect("import");
        cache.mark_uploaded(&blob.hash).await.expect("uploaded");
        blobs.push(blob.hash);
    }
    // Use order now: a (pinned), b, c; then a is read again.
    assert!(cache.set_pinned(&blobs[0], true).await.expect("pin"));
    cache.open(&blobs[1]).await.expect("open");
    cache.open(&blobs[2]).await.expect("open");
    cache.open(&blobs[0]).await.expect("open");
    let report = self::cache(&fx, 2_500).evict().await.expect("evict");
    assert_eq!((report.removed, report.remaining_bytes), (1, 2_000), "{report:?}");
    assert!(cache.open(&blobs[1]).await.expect("open").is_none(), "b was least recently used");
    // Down to 500 bytes: c goes, pinned a stays though it is over the cap.
    let tight = self::cache(&fx, 500);
    let report = tight.evict().await.expect("evict");
    assert_eq!((report.removed, report.remaining_bytes), (1, 1_000));
    assert!(tight.open(&blobs[0]).await.expect("open").is_some(), "pinned blobs stay");
}

#[tokio::test]
async fn a_download_is_adopted_only_if_its_bytes_match_its_name() {
    let fx = Fixture::new().await;
    let cache = cache(&fx, 1 << 20);
    let right = write_file(fx.dir.path(), "right", 2_000, 3);
    let (hash, _) = trackflow_store::hash_file(&right).await.expect("hash");
    let staged = cache.staging_path();
    std::fs::create_dir_all(staged.parent().expect("staging dir")).expect("mkdir");
    std::fs::write(&staged, b"not the audio").expect("stage");
    let refused = cache.adopt(staged.clone(), &hash).await.expect_err("mismatch");
    assert!(matches!(&refused, RepositoryError::Validation(v) if v.field == "sha256"), "{refused}");
    assert!(!staged.exists(), "the mismatched download is removed");
    assert_eq!(cache.open(&hash).await.expect("open"), None);

    let staged = cache.staging_path();
    std::fs::copy(&right, &staged).expect("stage");
    let adopted = cache.adopt(staged, &hash).await.expect("adopt");
    assert!(adopted.uploaded, "a download is on the server by definition");
    assert!(cache.open(&hash).await.expect("open").is_some());
}

#[tokio::test]
async fn a_track_with_new_audio_depends_on_one_upload_per_file() {
    let fx = Fixture::new().await;
    let cache = cache(&fx, 1 << 20);
    let (projects, tracks) = (
        SqliteRepository::<Project>::new(fx.store.clone()),
        SqliteRepository::<AudioTrack>::new(fx.store.clone()),
    );
    let outbox = SqlitePendingOperationsRepository::new(fx.store.clone());
    let owner = UserId::new();
    let project = projects
        .create(Project::new(owner, "EP", None, Timestamp(1)).expect("project"))
        .await
        .expect("create");
    let blob = cache.import(write_file(fx.dir.path(), "song", 3_000, 9)).await.expect("import");
    let track = |name: &str| {
        AudioTrack::new(project.id(), owner, name, 60_000, Some(blob.hash.as_str()), Timestamp(2))
            .expect("track")
    };
    tracks.create(track("Take 1")).await.expect("first track");
    tracks.create(track("Take 2")).await.expect("second track");
    let queue = outbox.list(None).await.expect("queue");
    let uploads: Vec<_> = queue.iter().filter(|op| op.kind == OperationKind::Upload).collect();
    assert_eq!(uploads.len(), 1, "one upload for one file: {queue:#?}");
    let creates: Vec<_> = queue
        .iter()
        .filter(|op| op.kind == OperationKind::Create && op.entity.entity_type.as_str() == "audio_track")
        .collect();
    assert_eq!(creates.len(), 2);
    for create in creates {
        assert!(create.depends_on.contains(&uploads[0].id), "{create:?} waits for the upload");
    }
    let (upload, first_track) = (uploads[0].id, uploads[0].entity.id);

    // Audio the cache has never seen cannot be named: nothing could upload it.
    let unknown = AudioTrack::new(project.id(), owner, "Ghost", 1_000, Some(&"ab".repeat(32)), Timestamp(2))
        .expect("track");
    let refused = tracks.create(unknown).await.expect_err("unknown audio");
    assert!(matches!(&refused, RepositoryError::Validation(v) if v.field == "audio_sha256"), "{refused}");
    // Once the server holds the file, a new track needs no upload.
    cache.mark_uploaded(&blob.hash).await.expect("uploaded");
    tracks.create(track("Take 3")).await.expect("third track");
    let uploads =
        outbox.list(None).await.expect("queue").iter().filter(|op| op.kind == OperationKind::Upload).count();
    assert_eq!(uploads, 1);

    // The upload changes no field of the track it came with: its row counts its create alone,
    // and still does once the upload is acknowledged.
    let first = format!("SELECT dirty AS n FROM audio_tracks WHERE id = '{first_track}'");
    assert_eq!(fx.count(&first).await, 1);
    outbox.settle(vec![(upload, Settlement::Applied { version: 1 })]).await.expect("settle");
    assert_eq!(fx.count(&first).await, 1, "the create still waits");
}
