//! Audio blobs over HTTP: uploads checked against their name, deduplicated, limited; downloads
//! only for readers of the track; no track stored without its audio.

use crate::harness::{TestServer, Writer};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use trackflow_domain::SyncEntity;
use trackflow_domain::{BlobHash, CollaboratorRole, Timestamp, UserId};
use trackflow_music::{AudioTrack, Project, ProjectCollaborator};
use trackflow_server::ServerConfig;

fn hash_of(bytes: &[u8]) -> BlobHash {
    BlobHash::from_digest(Sha256::digest(bytes).into())
}

/// Deterministic bytes that look like nothing in particular.
fn audio(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

impl TestServer {
    async fn put_blob(&self, token: &str, name: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let path = format!("/v1/blobs/{name}");
        let response = self
            .client
            .put(format!("{}{path}", self.server.url()))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .expect("upload");
        self.record(Method::PUT, "/v1/blobs/{sha256}", response).await
    }

    /// `PUT` of the file from byte `offset` on (`Upload-Offset`).
    async fn put_blob_from(
        &self,
        token: &str,
        hash: &BlobHash,
        offset: usize,
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let response = self
            .client
            .put(format!("{}/v1/blobs/{hash}", self.server.url()))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .header("upload-offset", offset.to_string())
            .body(body)
            .send()
            .await
            .expect("upload");
        self.record(Method::PUT, "/v1/blobs/{sha256}", response).await
    }

    /// What `HEAD` says: its status and `Upload-Offset`.
    async fn head_offset(&self, token: &str, hash: &BlobHash) -> (StatusCode, Option<u64>) {
        let response = self
            .client
            .head(format!("{}/v1/blobs/{hash}", self.server.url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("head");
        let offset = response
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().expect("text").parse().expect("number"));
        (response.status(), offset)
    }

    /// Sends the head of an upload of `bytes` from byte `from` on, then the bytes up to `to`
    /// only, over a raw connection, and closes it: an upload cut midway. Returns once the
    /// server has answered or closed.
    async fn cut_upload(&self, token: &str, bytes: &[u8], from: usize, to: usize) {
        let addr = self.server.addr();
        let head = format!(
            "PUT /v1/blobs/{} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/octet-stream\r\nUpload-Offset: {from}\r\nContent-Length: {}\r\n\r\n",
            hash_of(bytes),
            bytes.len() - from
        );
        let part = bytes[from..to].to_vec();
        tokio::task::spawn_blocking(move || {
            let mut socket = std::net::TcpStream::connect(addr).expect("connect");
            socket.write_all(head.as_bytes()).expect("head");
            socket.write_all(&part).expect("part");
            socket.shutdown(std::net::Shutdown::Write).expect("cut");
            // The server answers (400) or just closes; either way the connection ends.
            let _ = socket.read_to_end(&mut Vec::new());
        })
        .await
        .expect("cut upload");
    }

    async fn head_blob(&self, token: &str, hash: &BlobHash) -> StatusCode {
        self.head_offset(token, hash).await.0
    }

    async fn get_audio(&self, token: &str, track: &AudioTrack) -> (StatusCode, Vec<u8>) {
        self.get_file(token, "audio_track", &track.id().to_string()).await
    }

    async fn get_file(&self, token: &str, entity_type: &str, id: &str) -> (StatusCode, Vec<u8>) {
        let response = self
            .client
            .get(format!("{}/v1/files/{entity_type}/{id}", self.server.url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("download");
        let status = response.status();
        (status, response.bytes().await.expect("body").to_vec())
    }
}

/// A project of `owner` with one track whose audio is `hash`, pushed.
async fn project_with_track(
    server: &TestServer,
    token: &str,
    owner: UserId,
    hash: &BlobHash,
) -> (Project, AudioTrack) {
    let mut writer = Writer::new();
    let project = Project::new(owner, "EP", None, Timestamp(1)).expect("project");
    let track = AudioTrack::new(project.id(), owner, "Intro", 90_000, Some(hash.as_str()), Timestamp(1))
        .expect("track");
    let mutations = vec![writer.create(&project), writer.create(&track)];
    let push = writer.batch(mutations);
    let (status, body) = server.push(token, &push).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["results"].as_array().expect("results").iter().all(|r| r["status"] == "applied"), "{body}");
    (project, track)
}

#[tokio::test]
async fn an_upload_is_stored_once_under_its_hash_and_readers_of_the_track_download_it() {
    let server = TestServer::start().await;
    let (owner, token) = server.sign_up().await;
    let bytes = audio(300_000, 7);
    let hash = hash_of(&bytes);
    assert_eq!(server.head_blob(&token, &hash).await, StatusCode::NOT_FOUND);

    let (status, body) = server.put_blob(&token, hash.as_str(), bytes.clone()).await;
    assert_eq!(
        (status, body["created"].as_bool(), body["size_bytes"].as_u64()),
        (StatusCode::CREATED, Some(true), Some(300_000)),
        "{body}"
    );
    assert_eq!(server.head_blob(&token, &hash).await, StatusCode::OK);
    // The same file again is not stored again.
    let (status, body) = server.put_blob(&token, hash.as_str(), bytes.clone()).await;
    assert_eq!((status, body["created"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    // Its uploader need not send the bytes again (the document makes the body optional), and
    // someone else must: an empty body does not hash to the name.
    let (status, body) = server.put_blob(&token, hash.as_str(), Vec::new()).await;
    assert_eq!((status, body["size_bytes"].as_u64()), (StatusCode::OK, Some(300_000)), "{body}");
    let (_, other_token) = server.sign_up().await;
    let (status, body) = server.put_blob(&other_token, hash.as_str(), Vec::new()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch")),
        "{body}"
    );

    let (project, track) = project_with_track(&server, &token, owner, &hash).await;
    let (status, downloaded) = server.get_audio(&token, &track).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hash_of(&downloaded), hash, "the download is the upload, byte for byte");

    // The entity is named by type and id: a wrong type, an unknown one, or no UUID finds nothing.
    let id = track.id().to_string();
    let code = |(status, body): (StatusCode, Vec<u8>)| {
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(code(server.get_file(&token, "project", &id).await).0, StatusCode::NOT_FOUND, "wrong type");
    assert_eq!(
        code(server.get_file(&token, "project", &project.id().to_string()).await).0,
        StatusCode::NOT_FOUND,
        "a type without a file"
    );
    assert_eq!(
        code(server.get_file(&token, "track", &id).await),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".to_owned()),
        "unknown type"
    );
    assert_eq!(
        code(server.get_file(&token, "audio_track", "x").await),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".to_owned()),
        "not a UUID"
    );
    // A parameter that is not UTF-8 once decoded gets the API's JSON error, like any bad input.
    assert_eq!(
        code(server.get_file(&token, "audio%FF", &id).await),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".to_owned()),
        "not UTF-8"
    );
    let (status, body) = server.put_blob(&token, "%FF%FE", b"x".to_vec()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")),
        "{body}"
    );

    // A stranger may not fetch it; a viewer added to the project may.
    let (viewer, viewer_token) = server.sign_up().await;
    assert_eq!(server.get_audio(&viewer_token, &track).await.0, StatusCode::NOT_FOUND);
    let mut writer = Writer::new();
    let share = ProjectCollaborator::new(project.id(), viewer, CollaboratorRole::Viewer, Timestamp(2))
        .expect("share");
    let (status, body) = server.push(&token, &writer.creating(&share)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, downloaded) = server.get_audio(&viewer_token, &track).await;
    assert_eq!((status, hash_of(&downloaded)), (StatusCode::OK, hash));
}

#[tokio::test]
async fn knowing_a_hash_grants_nothing_until_the_bytes_are_sent() {
    let server = TestServer::start().await;
    let (owner, token) = server.sign_up().await;
    let bytes = audio(80_000, 5);
    let hash = hash_of(&bytes);
    let (status, _) = server.put_blob(&token, hash.as_str(), bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    project_with_track(&server, &token, owner, &hash).await;

    // A stranger who learned the hash: the blob does not exist for them, and a track of their
    // own naming it (to download it through) is refused.
    let (stranger, stranger_token) = server.sign_up().await;
    assert_eq!(server.head_blob(&stranger_token, &hash).await, StatusCode::NOT_FOUND);
    let mut writer = Writer::new();
    let project = Project::new(stranger, "Mine", None, Timestamp(1)).expect("project");
    let track = AudioTrack::new(project.id(), stranger, "Stolen", 1_000, Some(hash.as_str()), Timestamp(1))
        .expect("track");
    let (status, _) = server.push(&stranger_token, &writer.creating(&project)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.push(&stranger_token, &writer.creating(&track)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("missing_blob")),
        "{body}"
    );
    // Wrong bytes under the name prove nothing.
    let (status, body) = server.put_blob(&stranger_token, hash.as_str(), audio(80_000, 6)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch")),
        "{body}"
    );
    // Sending the bytes does: stored once, now theirs to name too.
    let (status, body) = server.put_blob(&stranger_token, hash.as_str(), bytes).await;
    assert_eq!((status, body["created"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    assert_eq!(server.head_blob(&stranger_token, &hash).await, StatusCode::OK);
    let (status, body) = server.push(&stranger_token, &writer.creating(&track)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_corrupted_or_oversized_upload_is_refused_and_leaves_nothing() {
    let server =
        TestServer::with_config(ServerConfig { max_blob_bytes: 100_000, ..ServerConfig::default() }).await;
    let (_, token) = server.sign_up().await;
    let bytes = audio(50_000, 1);
    let hash = hash_of(&bytes);
    let mut corrupted = bytes.clone();
    corrupted[25_000] ^= 0xff;
    let (status, body) = server.put_blob(&token, hash.as_str(), corrupted).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch")),
        "{body}"
    );
    assert_eq!(server.head_blob(&token, &hash).await, StatusCode::NOT_FOUND, "nothing stored");

    let large = audio(100_001, 2);
    let (status, body) = server.put_blob(&token, hash_of(&large).as_str(), large.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("blob_too_large")),
        "{body}"
    );
    assert_eq!(server.head_blob(&token, &hash_of(&large)).await, StatusCode::NOT_FOUND);

    let (status, body) = server.put_blob(&token, "not-a-hash", bytes.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_hash")),
        "{body}"
    );
    let (status, _) = server.put_blob(&token, hash.as_str(), bytes).await;
    assert_eq!(status, StatusCode::CREATED, "the intact file still goes in");
    let staging = server.blobs.path().join("staging");
    let staged: usize = std::fs::read_dir(&staging)
        .expect("staging")
        .flatten()
        .map(|instance| std::fs::read_dir(instance.path()).expect("instance staging").count())
        .sum();
    assert_eq!(staged, 0, "refused uploads left staged files");
}

#[tokio::test]
async fn an_upload_cut_midway_is_invisible_and_can_be_sent_again_whole() {
    let server = TestServer::start().await;
    let (_, token) = server.sign_up().await;
    let bytes = audio(200_000, 3);
    let hash = hash_of(&bytes);
    server.cut_upload(&token, &bytes, 0, 100_000).await;
    assert_eq!(
        server.head_blob(&token, &hash).await,
        StatusCode::NOT_FOUND,
        "a half upload is never visible"
    );
    let (status, body) = server.put_blob(&token, hash.as_str(), bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let blob = std::fs::read(server.blobs.path().join(&hash.as_str()[..2]).join(hash.as_str()))
        .expect("stored file");
    assert_eq!(hash_of(&blob), hash);
}

/// Of a cut upload the server keeps what arrived, for its uploader only; a `PUT` from that
/// offset sends the rest, and the whole file is still checked against its name.
#[tokio::test]
async fn an_upload_cut_midway_resumes_from_what_the_server_kept() {
    let server = TestServer::start().await;
    let (_, token) = server.sign_up().await;
    let (_, stranger) = server.sign_up().await;
    let bytes = audio(200_000, 4);
    let hash = hash_of(&bytes);
    server.cut_upload(&token, &bytes, 0, 120_000).await;
    assert_eq!(server.head_offset(&token, &hash).await, (StatusCode::NOT_FOUND, Some(120_000)));
    assert_eq!(
        server.head_offset(&stranger, &hash).await,
        (StatusCode::NOT_FOUND, Some(0)),
        "only its uploader's"
    );

    // From the wrong place: refused, and what is kept stays.
    let (status, body) = server.put_blob_from(&token, &hash, 100_000, bytes[100_000..].to_vec()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("upload_offset_mismatch")),
        "{body}"
    );
    assert_eq!(server.head_offset(&token, &hash).await, (StatusCode::NOT_FOUND, Some(120_000)));

    // A rest that does not complete the file: refused, and nothing is kept.
    let mut wrong = bytes[120_000..].to_vec();
    wrong[1] ^= 0xff;
    let (status, body) = server.put_blob_from(&token, &hash, 120_000, wrong).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch")),
        "{body}"
    );
    assert_eq!(server.head_offset(&token, &hash).await, (StatusCode::NOT_FOUND, Some(0)));

    // Cut twice, then the rest: stored whole.
    server.cut_upload(&token, &bytes, 0, 50_000).await;
    assert_eq!(server.head_offset(&token, &hash).await, (StatusCode::NOT_FOUND, Some(50_000)));
    server.cut_upload(&token, &bytes, 50_000, 150_000).await;
    assert_eq!(server.head_offset(&token, &hash).await, (StatusCode::NOT_FOUND, Some(150_000)));
    let (status, body) = server.put_blob_from(&token, &hash, 150_000, bytes[150_000..].to_vec()).await;
    assert_eq!((status, body["size_bytes"].as_u64()), (StatusCode::CREATED, Some(200_000)), "{body}");
    assert_eq!(server.head_offset(&token, &hash).await.0, StatusCode::OK);
    let blob = std::fs::read(server.blobs.path().join(&hash.as_str()[..2]).join(hash.as_str()))
        .expect("stored file");
    assert_eq!(blob, bytes);
}

#[tokio::test]
async fn a_track_naming_audio_the_server_lacks_is_refused() {
    let server = TestServer::start().await;
    let (owner, token) = server.sign_up().await;
    let mut writer = Writer::new();
    let project = Project::new(owner, "EP", None, Timestamp(1)).expect("project");
    let (status, _) = server.push(&token, &writer.creating(&project)).await;
    assert_eq!(status, StatusCode::OK);
    let hash = hash_of(b"never uploaded");
    let track = AudioTrack::new(project.id(), owner, "Ghost", 1_000, Some(hash.as_str()), Timestamp(1))
        .expect("track");
    let push = writer.creating(&track);
    let (status, body) = server.push(&token, &push).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("missing_blob")),
        "{body}"
    );
    assert_eq!(body["mutation_id"], serde_json::json!(push.mutations[0].id));
    let (changes, _) = server.pull_all(&token).await;
    assert!(
        changes.iter().all(|c| c["entity_type"] != AudioTrack::ENTITY_TYPE.as_str()),
        "no track was stored: {changes:?}"
    );
}
