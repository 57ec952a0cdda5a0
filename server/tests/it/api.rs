//! The API end to end: accounts and tokens, push and pull through HTTP.

use crate::harness::{TestServer, Writer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use trackflow_domain::{
    ports::ServerStore,
    protocol::{PullRequest, PullResponse},
    SyncEntity, Timestamp,
};
use trackflow_music::Project;
use trackflow_server::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token() {
    let server = TestServer::start().await;
    let (status, body) = server.call(Method::GET, "/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_log_in_and_log_out() {
    let server = TestServer::start().await;
    let signup = json!({"email": "Ana@Example.com", "password": "correct horse"});
    let (status, first) = server.call(Method::POST, "/v1/auth/signup", None, Some(&signup)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, body) = server.call(Method::POST, "/v1/auth/signup", None, Some(&signup)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("taken")));

    // Emails are matched case-insensitively; a wrong password is refused like an unknown email.
    let login = json!({"email": "ana@example.com", "password": "correct horse"});
    let (status, second) = server.call(Method::POST, "/v1/auth/login", None, Some(&login)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["user_id"], first["user_id"]);
    assert_ne!(second["token"], first["token"], "every log-in gets its own token");
    for wrong in [
        json!({"email": "ana@example.com", "password": "wrong horse"}),
        json!({"email": "bo@example.com", "password": "correct horse"}),
        // Not an address at all, or one PostgreSQL cannot even compare: still just refused.
        json!({"email": "a\u{0}b@example.com", "password": "correct horse"}),
        json!({"email": "", "password": ""}),
    ] {
        let (status, body) = server.call(Method::POST, "/v1/auth/login", None, Some(&wrong)).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
    }

    let token = second["token"].as_str().expect("token");
    let (status, _) = server.pull(token, None, 10).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.call(Method::POST, "/v1/auth/logout", Some(token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.pull(token, None, 10).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let other = first["token"].as_str().expect("token");
    assert_eq!(server.pull(other, None, 10).await.0, StatusCode::OK, "other tokens keep working");
}

/// Missing, malformed, unknown and expired tokens all get 401, and the push they carried is
/// not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_endpoints_need_a_valid_token_and_change_nothing_without_one() {
    let server =
        TestServer::with_config(ServerConfig { token_ttl: Duration::ZERO, ..Default::default() }).await;
    let (user, expired) = server.sign_up().await;
    let mut writer = Writer::new();
    let project = Project::new(user, "Album", None, Timestamp(1)).expect("valid");
    let push = serde_json::to_value(writer.creating(&project)).expect("json");
    let url = format!("{}/v1/sync/push", server.server.url());
    let attempts = [
        ("missing", None),
        ("not bearer", Some(format!("Basic {expired}"))),
        ("empty", Some("Bearer ".to_owned())),
        ("unknown", Some("Bearer not-a-token".to_owned())),
        ("expired", Some(format!("Bearer {expired}"))),
    ];
    for (case, header) in attempts {
        let mut request = server.client.post(&url).json(&push);
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.expect("send");
        assert_eq!(
            response.headers().get("www-authenticate").map(|v| v.to_str().ok()),
            Some(Some("Bearer")),
            "{case}"
        );
        let (status, body) = server.record(Method::POST, "/v1/sync/push", response).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{case}"
        );
    }
    // Nothing was applied.
    let seen =
        server.store.pull(user, PullRequest { cursor: None, limit: 10, scope: None }).await.expect("pull");
    assert!(matches!(seen, PullResponse::Changes { ref changes, .. } if changes.is_empty()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_over_http() {
    let server = TestServer::start().await;
    let (user, token) = server.sign_up().await;
    let mut writer = Writer::new();
    let project = Project::new(user, "Album", None, Timestamp(1)).expect("valid");
    let request = writer.creating(&project);
    let (status, body) = server.push(&token, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["status"], "applied");
    let version = body["results"][0]["version"].as_i64().expect("version");
    let (status, again) = server.push(&token, &request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["results"][0],
        json!({
            "id": request.mutations[0].id,
            "status": "duplicate",
            "version": version,
            "first": {"status": "applied", "version": version},
        })
    );

    let (changes, cursor) = server.pull_all(&token).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["entity_id"], json!(project.entity_id()));
    assert_eq!(changes[0]["entity_type"], "project");
    assert_eq!(changes[0]["fields"]["name"], "Album");
    let rename = writer.update(Project::ENTITY_TYPE, project.entity_id(), &[("name", json!("Renamed"))]);
    let (status, _) = server.push(&token, &writer.batch(vec![rename])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = server.pull(&token, Some(&cursor), 10).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"][0]["fields"]["name"], "Renamed");
    assert_eq!(page["has_more"], false);
}

/// Counts the events at ERROR level of the thread it is the default subscriber of.
struct ErrorEvents(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A client's mistakes (a taken email, a wrong password, a bad token, a malformed push, an
/// unreadable scope) are answered with 4xx and logged below ERROR: ERROR is for the server's own
/// faults. (The whole server runs on this test's one thread, so its events reach the counter.)
#[tokio::test(flavor = "current_thread")]
async fn client_mistakes_are_not_logged_as_errors() {
    use tracing_subscriber::layer::SubscriberExt;
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(ErrorEvents(errors.clone()));
    let _default = tracing::subscriber::set_default(subscriber);
    let server = TestServer::start().await;
    let (_, token) = server.sign_up().await;
    let taken = json!({"email": "ana@example.com", "password": "correct horse"});
    server.call(Method::POST, "/v1/auth/signup", None, Some(&taken)).await;
    let (status, _) = server.call(Method::POST, "/v1/auth/signup", None, Some(&taken)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let wrong = json!({"email": "ana@example.com", "password": "wrong horse"});
    let (status, _) = server.call(Method::POST, "/v1/auth/login", None, Some(&wrong)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.pull("not-a-token", None, 10).await.0, StatusCode::UNAUTHORIZED);
    let bad_scope = server.call(Method::GET, "/v1/sync/pull?scope=project:nope", Some(&token), None).await;
    assert_eq!(bad_scope.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad_scope.1);
    let unreadable = format!("/v1/sync/pull?scope=project:{}", uuid::Uuid::now_v7());
    assert_eq!(server.call(Method::GET, &unreadable, Some(&token), None).await.0, StatusCode::FORBIDDEN);
    let project =
        Project::new(trackflow_domain::UserId::new(), "Not mine", None, Timestamp(1)).expect("valid");
    let push = Writer::new().creating(&project);
    let (status, body) = server.push(&token, &push).await;
    assert!(status == StatusCode::OK || status.is_client_error(), "{status}: {body}");
    assert_eq!(errors.load(std::sync::atomic::Ordering::SeqCst), 0, "client mistakes logged at ERROR");
}
