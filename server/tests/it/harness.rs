//! A running server and a client for it.

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use trackflow_domain::{
    protocol::{Mutation, PushRequest},
    sync::Hlc,
    EntityRef, EntityType, NodeId, OperationKind, SyncEntity, SyncOperation, Timestamp, UserId,
};
use trackflow_server::{AppState, RunningServer, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};
use uuid::Uuid;

/// A server on a free port over a fresh in-memory store.
pub struct TestServer {
    pub server: RunningServer,
    /// The store behind it, to check what a refused request left behind.
    pub store: Arc<DieselServerStore>,
    pub client: Client,
    /// Where the server keeps audio.
    pub blobs: tempfile::TempDir,
    /// The server's state (a clone: the counters are shared).
    pub state: AppState,
    /// Every response body seen, by (method, route template, status): the OpenAPI test checks
    /// them all against the document.
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// One response the tests received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub body: Value,
}

/// Installs the music model's registry (idempotent), and the test log subscriber when
/// `TRACKFLOW_TEST_LOG` is set.
pub fn init_logs() {
    trackflow_music::install().expect("the music registry installs");
    if let Ok(filter) = std::env::var("TRACKFLOW_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(ServerConfig::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> Self {
        init_logs();
        let store = Arc::new(DieselServerStore::open("sqlite::memory:", 1).expect("open store"));
        let blobs = tempfile::tempdir().expect("blob dir");
        let storage = FsBlobStorage::open(blobs.path()).expect("blob storage");
        let state = AppState::new(store.clone(), config).with_blobs(Arc::new(storage));
        let server =
            RunningServer::start("127.0.0.1:0".parse().expect("addr"), state.clone()).await.expect("start");
        let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Self { server, store, client, blobs, state, seen: Arc::default() }
    }

    /// Sends a request; `body` is sent as JSON when given. Records the response.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.server.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        self.record(method, path, response).await
    }

    /// Records a response sent some other way.
    pub async fn record(&self, method: Method, path: &str, response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.expect("body");
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text}"))
        };
        let route = path.split('?').next().unwrap_or(path).to_owned();
        self.seen.lock().expect("lock").push(Seen { method, path: route, status, body: body.clone() });
        (status, body)
    }

    /// Signs up a fresh user; returns (user id, token).
    pub async fn sign_up(&self) -> (UserId, String) {
        let email = format!("user-{}@example.com", Uuid::now_v7().simple());
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/auth/signup",
                None,
                Some(&json!({"email": email, "password": "correct horse"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let user: UserId = serde_json::from_value(body["user_id"].clone()).expect("user id");
        (user, body["token"].as_str().expect("token").to_owned())
    }

    pub async fn push(&self, token: &str, request: &PushRequest) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/v1/sync/push",
            Some(token),
            Some(&serde_json::to_value(request).expect("json")),
        )
        .await
    }

    pub async fn pull(&self, token: &str, cursor: Option<&str>, limit: u32) -> (StatusCode, Value) {
        let query = match cursor {
            Some(c) => format!("?cursor={c}&limit={limit}"),
            None => format!("?limit={limit}"),
        };
        self.call(Method::GET, &format!("/v1/sync/pull{query}"), Some(token), None).await
    }

    /// Pulls until `has_more` is false; returns every change and the final cursor.
    pub async fn pull_all(&self, token: &str) -> (Vec<Value>, String) {
        let mut cursor: Option<String> = None;
        let mut changes = Vec::new();
        loop {
            let (status, body) = self.pull(token, cursor.as_deref(), 100).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            changes.extend(body["changes"].as_array().expect("changes").iter().cloned());
            cursor = Some(body["next_cursor"].as_str().expect("cursor").to_owned());
            if !body["has_more"].as_bool().expect("has_more") {
                return (changes, cursor.unwrap_or_default());
            }
        }
    }
}

/// Builds mutations as one client would: its own node id on every clock reading. Readings
/// come from one process-wide counter, like clocks that agree on the time: a write made later
/// in a test is later by the clock too.
pub struct Writer {
    pub client_id: NodeId,
}

static WALL_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        Self { client_id: NodeId::new() }
    }

    pub fn tick(&mut self) -> Hlc {
        // The real time, or just after the last reading if that is later.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let previous = WALL_MS
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_default();
        let wall_ms = now.max(previous + 1);
        Hlc { wall_ms, counter: 0, node: self.client_id }
    }

    pub fn mutation(
        &mut self,
        kind: OperationKind,
        entity_type: EntityType,
        entity_id: Uuid,
        fields: BTreeMap<String, Value>,
    ) -> Mutation {
        let hlc = self.tick();
        // Built the way a client's outbox builds it.
        let entity = EntityRef::new(entity_type, entity_id);
        Mutation::from(&SyncOperation::new(entity, kind, fields, hlc, 0, vec![], Timestamp(0)))
    }

    pub fn create(&mut self, entity: &impl SyncEntity) -> Mutation {
        self.mutation(
            OperationKind::Create,
            entity.entity_ref().entity_type,
            entity.entity_id(),
            entity.fields(),
        )
    }

    pub fn update(&mut self, entity_type: EntityType, id: Uuid, fields: &[(&str, Value)]) -> Mutation {
        let fields = fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        self.mutation(OperationKind::Update, entity_type, id, fields)
    }

    pub fn delete(&mut self, entity_type: EntityType, id: Uuid) -> Mutation {
        self.mutation(OperationKind::Delete, entity_type, id, BTreeMap::new())
    }

    /// A push of one delete.
    pub fn deleting(&mut self, entity_type: EntityType, id: Uuid) -> PushRequest {
        let delete = self.delete(entity_type, id);
        self.batch(vec![delete])
    }

    /// A push of one create.
    pub fn creating(&mut self, entity: &impl SyncEntity) -> PushRequest {
        let create = self.create(entity);
        self.batch(vec![create])
    }

    pub fn batch(&self, mutations: Vec<Mutation>) -> PushRequest {
        PushRequest { client_id: self.client_id, mutations }
    }
}
