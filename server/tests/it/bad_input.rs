//! Bad input: every mistake gets a 4xx with a JSON `{code, message}` naming the problem, nothing
//! is stored, and nothing a client sends produces a 5xx.

use crate::harness::{TestServer, Writer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use trackflow_domain::{
    ports::ServerStore,
    protocol::{PullRequest, PullResponse},
    Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project, ProjectId};
use trackflow_server::ServerConfig;

/// A valid push body of one project create, as JSON to break in various ways.
fn valid_push(user: UserId) -> Value {
    let mut writer = Writer::new();
    let project = Project::new(user, "Album", None, Timestamp(1)).expect("valid");
    serde_json::to_value(writer.creating(&project)).expect("json")
}

async fn assert_nothing_stored(server: &TestServer, user: UserId) {
    let seen =
        server.store.pull(user, PullRequest { cursor: None, limit: 10, scope: None }).await.expect("pull");
    assert!(matches!(seen, PullResponse::Changes { ref changes, .. } if changes.is_empty()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pushes_are_refused_by_name() {
    let server = TestServer::start().await;
    let (user, token) = server.sign_up().await;
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut body = valid_push(user);
        f(&mut body);
        body
    };
    let long_name = edit(&|b| b["mutations"][0]["fields"]["name"]["value"] = json!("n".repeat(101)));
    let orphan = {
        let track = AudioTrack::new(ProjectId::new(), user, "T", 1, None, Timestamp(1)).expect("valid");
        let mut writer = Writer::new();
        serde_json::to_value(writer.creating(&track)).expect("json")
    };
    let too_many = edit(&|b| {
        let one = b["mutations"][0].clone();
        b["mutations"] = Value::Array(vec![one; 501]);
    });
    // (case, body, status, code, text the message must contain)
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "wrong type",
            edit(&|b| b["mutations"][0]["base_version"] = json!("seven")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "mutations[0].base_version",
        ),
        (
            // A client with a newer schema: refused whole, by a code that says so.
            "unknown entity type",
            edit(&|b| b["mutations"][0]["entity_type"] = json!("track")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_in_schema",
            "mutations[0]: this server's schema does not declare the entity type 'track'",
        ),
        (
            "invalid entity id",
            edit(&|b| b["mutations"][0]["entity_id"] = json!("not-a-uuid")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "mutations[0].entity_id",
        ),
        (
            "invalid mutation id",
            edit(&|b| b["mutations"][0]["id"] = json!(42)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "mutations[0].id",
        ),
        (
            "invalid client id",
            edit(&|b| b["client_id"] = json!("x")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "client_id",
        ),
        (
            "unknown kind",
            edit(&|b| b["mutations"][0]["kind"] = json!("upsert")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "mutations[0].kind",
        ),
        (
            "invalid clock reading",
            edit(&|b| b["mutations"][0]["fields"]["name"]["hlc"] = json!("yesterday")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "mutations[0].fields.name.hlc",
        ),
        (
            "unknown property",
            edit(&|b| b["mutations"][0]["colour"] = json!("red")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "colour",
        ),
        (
            "missing mutations",
            json!({"client_id": Writer::new().client_id}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "mutations",
        ),
        (
            "clock far ahead of the server",
            edit(&|b| {
                let hlc = b["mutations"][0]["fields"]["name"]["hlc"].as_str().expect("hlc").to_owned();
                b["mutations"][0]["fields"]["name"]["hlc"] = json!(format!("999999999999999{}", &hlc[15..]));
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "clock_skew",
            "mutations[0].fields.name.hlc",
        ),
        ("string over its limit", long_name, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "name"),
        (
            "unknown field of the entity",
            edit(&|b| b["mutations"][0]["fields"]["colour"] = b["mutations"][0]["fields"]["name"].clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_in_schema",
            "the field 'colour' of 'project'",
        ),
        (
            "missing required field",
            edit(&|b| {
                b["mutations"][0]["fields"].as_object_mut().expect("fields").remove("owner_id");
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "owner_id",
        ),
        (
            "reference to nothing",
            orphan,
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_reference",
            "does not exist",
        ),
        ("too many mutations", too_many, StatusCode::UNPROCESSABLE_ENTITY, "too_many_mutations", "500"),
        (
            "not an object",
            json!("a string"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "expected struct PushRequest",
        ),
    ];
    for (case, body, status, code, mentions) in cases {
        let (got, answer) = server.call(Method::POST, "/v1/sync/push", Some(&token), Some(&body)).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{case}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(message.contains(mentions), "{case}: {message:?} should mention {mentions:?}");
    }
    assert_nothing_stored(&server, user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_json_or_too_big_are_refused() {
    let server = TestServer::with_config(ServerConfig { max_body_bytes: 2048, ..Default::default() }).await;
    let (user, token) = server.sign_up().await;
    let url = format!("{}/v1/sync/push", server.server.url());
    let text = serde_json::to_string(&valid_push(user)).expect("json");
    let huge =
        json!({"client_id": Writer::new().client_id, "mutations": [], "pad": "x".repeat(4096)}).to_string();
    let cases: Vec<(&str, String, &str, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            "{\"client_id\": ".to_owned(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "trailing garbage",
            format!("{text} x"),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not JSON at all",
            text.clone(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        ("oversized body", huge, "application/json", StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    ];
    for (case, body, content_type, status, code) in cases {
        let response = server
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        let (got, answer) = server.record(Method::POST, "/v1/sync/push", response).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{case}: {answer}");
    }
    // Every truncation of a valid body is a clean 400, never a 5xx.
    for cut in (0..text.len()).step_by(7) {
        let response = server
            .client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(text[..cut].to_owned())
            .send()
            .await
            .expect("send");
        let status = response.status();
        assert!(status.is_client_error(), "cut at {cut}: {status}");
    }
    assert_nothing_stored(&server, user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pulls_sign_ups_and_routes() {
    let server = TestServer::start().await;
    let (_, token) = server.sign_up().await;
    // (method, path, body, status, code, text the message must contain)
    type Case<'a> = (Method, &'a str, Option<Value>, StatusCode, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (Method::GET, "/v1/sync/pull?limit=abc", None, StatusCode::BAD_REQUEST, "invalid_query", "limit"),
        (
            Method::GET,
            "/v1/sync/pull?limit=0",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_limit",
            "limit",
        ),
        (
            Method::GET,
            "/v1/sync/pull?limit=100000",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_limit",
            "limit",
        ),
        (
            Method::POST,
            "/v1/auth/signup",
            Some(json!({"email": "not-an-email", "password": "long enough"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "email",
        ),
        (
            Method::POST,
            "/v1/auth/signup",
            Some(json!({"email": "a@example.com", "password": "short"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "password",
        ),
        (
            Method::POST,
            "/v1/auth/signup",
            Some(json!({"email": "a@example.com"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "password",
        ),
        (
            Method::POST,
            "/v1/auth/signup",
            Some(json!({"email": "b@example.com", "password": "long enough", "user_id": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "user_id",
        ),
        (Method::GET, "/v1/nothing-here", None, StatusCode::NOT_FOUND, "not_found", "endpoint"),
        (
            Method::DELETE,
            "/v1/sync/push",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method",
        ),
    ];
    for (method, path, body, status, code, mentions) in cases {
        let (got, answer) = server.call(method.clone(), path, Some(&token), body.as_ref()).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{method} {path}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(message.contains(mentions), "{method} {path}: {message:?} should mention {mentions:?}");
    }
}
