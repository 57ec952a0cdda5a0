//! The OpenAPI document against the real server: it lists exactly the routes the router serves,
//! and every response the server really sends, for every route and status these tests can
//! provoke, matches the schema the document declares for it.

use crate::harness::{Seen, TestServer, Writer};
use jsonschema::{Draft, Validator};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use trackflow_domain::{protocol::PushRequest, EntityType, OperationKind, SyncEntity, Timestamp};
use trackflow_music::Playlist;
use trackflow_music::{AudioTrack, Project, ProjectId};
use trackflow_server::{document_json, ServerConfig, OPENAPI_JSON};
use uuid::Uuid;

/// Every route `trackflow_server::router` serves, with its method (lower case, as OpenAPI
/// spells operations).
const ROUTES: [(&str, &str); 14] = [
    ("/v1/health", "get"),
    ("/v1/openapi.json", "get"),
    ("/v1/auth/signup", "post"),
    ("/v1/auth/login", "post"),
    ("/v1/auth/logout", "post"),
    ("/v1/accounts", "get"),
    ("/v1/sync/push", "post"),
    ("/v1/sync/pull", "get"),
    ("/v1/sync/scopes", "get"),
    ("/v1/events", "get"),
    ("/v1/blobs/{sha256}", "head"),
    ("/v1/blobs/{sha256}", "put"),
    ("/v1/files/{entity_type}/{entity_id}", "get"),
    ("/metrics", "get"),
];

/// The operations that need a bearer token.
const SECURED: [(&str, &str); 9] = [
    ("/v1/auth/logout", "post"),
    ("/v1/accounts", "get"),
    ("/v1/sync/push", "post"),
    ("/v1/sync/pull", "get"),
    ("/v1/sync/scopes", "get"),
    ("/v1/events", "get"),
    ("/v1/blobs/{sha256}", "head"),
    ("/v1/blobs/{sha256}", "put"),
    ("/v1/files/{entity_type}/{entity_id}", "get"),
];

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The document, with what the checks need: `$ref` resolution and validators for its schemas.
struct Spec {
    doc: Value,
}

impl Spec {
    fn new(doc: Value) -> Self {
        Self { doc }
    }

    fn served() -> Self {
        crate::harness::init_logs();
        Self::new(serde_json::from_str(document_json()).expect("the served document is JSON"))
    }

    /// Follows local `$ref`s (to responses, headers, parameters, schemas) to the object itself.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> Result<&'a Value, String> {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference.strip_prefix('#').ok_or_else(|| format!("non-local $ref {reference}"))?;
            value = self.doc.pointer(pointer).ok_or_else(|| format!("dangling $ref {reference}"))?;
        }
        Ok(value)
    }

    /// A JSON Schema 2020-12 validator for `schema`, whose `#/components/...` references resolve
    /// into this document. Building it also checks `schema` against the 2020-12 meta-schema.
    fn validator(&self, schema: &Value) -> Result<Validator, String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema {schema} does not compile: {e}"))
    }

    /// Every validation error of `instance` against `schema`, or `Ok`.
    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let validator = self.validator(schema)?;
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("{e} (at '{}')", e.instance_path())).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The schema the document declares for a named component.
    fn schema(name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The response object the document declares for `method path` answering `status`. Paths
    /// the document does not list answer its `NotFound` response; methods a listed path has
    /// no operation for, its `MethodNotAllowed` response.
    fn declared_response(&self, method: &str, path: &str, status: StatusCode) -> Result<&Value, String> {
        let fallback = |name: &str, expected: StatusCode| {
            if status == expected {
                self.resolve(&self.doc["components"]["responses"][name])
            } else {
                Err(format!("undocumented {method} {path} answered {status}; only {expected} is declared"))
            }
        };
        let Some(item) = self.doc["paths"].get(path) else {
            return fallback("NotFound", StatusCode::NOT_FOUND);
        };
        let Some(operation) = item.get(method) else {
            return fallback("MethodNotAllowed", StatusCode::METHOD_NOT_ALLOWED);
        };
        let response = operation["responses"]
            .get(status.as_str())
            .ok_or_else(|| format!("status {status} is not declared for {method} {path}"))?;
        self.resolve(response)
    }

    /// Checks one recorded response against the document.
    fn check(&self, seen: &Seen) -> Result<(), String> {
        let method = seen.method.as_str().to_ascii_lowercase();
        let context = format!("{} {} -> {}", seen.method, seen.path, seen.status);
        let response = self
            .declared_response(&method, &seen.path, seen.status)
            .map_err(|e| format!("{context}: {e}"))?;
        match (response.get("content"), &seen.body) {
            (None, Value::Null) => Ok(()),
            (None, body) => Err(format!("{context}: declared without content, but the body is {body}")),
            (Some(_), Value::Null) => Err(format!("{context}: declares a body, but the response has none")),
            (Some(content), body) => {
                let schema = content
                    .get("application/json")
                    .and_then(|media| media.get("schema"))
                    .ok_or_else(|| format!("{context}: no application/json schema declared"))?;
                self.validate(schema, body).map_err(|e| format!("{context}: {e}; body: {body}"))
            }
        }
    }

    /// Every `(path, method)` operation in the document.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("path item is an object");
                item.keys()
                    .filter(|k| HTTP_METHODS.contains(&k.as_str()))
                    .map(move |m| (path.clone(), m.clone()))
            })
            .collect()
    }
}

fn expected_operations() -> BTreeSet<(String, String)> {
    ROUTES.iter().map(|(p, m)| ((*p).to_owned(), (*m).to_owned())).collect()
}

/// Asserts the status and, for an error, the code; returns the body.
fn answer(got: (StatusCode, Value), status: StatusCode, code: Option<&str>) -> Value {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{body}");
    if let Some(code) = code {
        assert_eq!(body["code"].as_str(), Some(code), "{body}");
    }
    body
}

/// Sends `body` as is with `content_type`, and records the answer.
async fn send_raw(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> (StatusCode, Value) {
    let mut request = server
        .client
        .post(format!("{}{path}", server.server.url()))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    server.record(Method::POST, path, response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_lists_every_route_and_matches_every_response() {
    let server = TestServer::start().await;

    // The document itself: OpenAPI 3.1, exactly the router's routes.
    let doc = answer(server.call(Method::GET, "/v1/openapi.json", None, None).await, StatusCode::OK, None);
    assert_eq!(doc, Spec::served().doc, "the server serves its document");
    assert_eq!(doc["openapi"], "3.1.0");
    let spec = Spec::new(doc);
    assert_eq!(spec.operations(), expected_operations(), "documented operations vs the router's routes");
    let paths: BTreeSet<&str> =
        spec.doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    assert_eq!(paths, ROUTES.iter().map(|(p, _)| *p).collect(), "no extra paths");

    answer(server.call(Method::GET, "/v1/health", None, None).await, StatusCode::OK, None);

    // Accounts.
    let signup = json!({"email": "ana@example.com", "password": "correct horse"});
    let post = |path: &'static str, body: Value| {
        let server = &server;
        async move { server.call(Method::POST, path, None, Some(&body)).await }
    };
    let first = answer(post("/v1/auth/signup", signup.clone()).await, StatusCode::CREATED, None);
    let (user, token) = (
        serde_json::from_value(first["user_id"].clone()).expect("user id"),
        first["token"].as_str().expect("token").to_owned(),
    );
    answer(post("/v1/auth/signup", signup.clone()).await, StatusCode::CONFLICT, Some("taken"));
    let same_id =
        json!({"email": "bo@example.com", "password": "correct horse", "user_id": first["user_id"]});
    answer(post("/v1/auth/signup", same_id).await, StatusCode::CONFLICT, Some("taken"));
    let short = json!({"email": "bo@example.com", "password": "short"});
    answer(post("/v1/auth/signup", short).await, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"));
    let not_email = json!({"email": "bo", "password": "correct horse", "user_id": null});
    answer(post("/v1/auth/signup", not_email).await, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"));
    let unknown = json!({"email": "bo@example.com", "password": "correct horse", "admin": true});
    answer(post("/v1/auth/signup", unknown).await, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"));

    // Finding an account by email, to invite its owner.
    let find = |query: &'static str, token: Option<String>| {
        let server = &server;
        async move { server.call(Method::GET, &format!("/v1/accounts{query}"), token.as_deref(), None).await }
    };
    let found = answer(find("?email=%20ANA@Example.com", Some(token.clone())).await, StatusCode::OK, None);
    assert_eq!(found, json!({"user_id": first["user_id"], "email": "ana@example.com"}));
    answer(
        find("?email=nobody@example.com", Some(token.clone())).await,
        StatusCode::NOT_FOUND,
        Some("no_account"),
    );
    answer(
        find("?email=nobody", Some(token.clone())).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("invalid_field"),
    );
    answer(find("", Some(token.clone())).await, StatusCode::BAD_REQUEST, Some("invalid_query"));
    answer(find("?email=ana@example.com", None).await, StatusCode::UNAUTHORIZED, Some("unauthorized"));
    let text = signup.to_string();
    let got = send_raw(&server, "/v1/auth/signup", None, "text/plain", text.clone()).await;
    answer(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"));
    let got = send_raw(&server, "/v1/auth/signup", None, "application/json", text[..10].to_owned()).await;
    answer(got, StatusCode::BAD_REQUEST, Some("invalid_json"));

    let login = answer(post("/v1/auth/login", signup.clone()).await, StatusCode::OK, None);
    let wrong = json!({"email": "ana@example.com", "password": "wrong horse"});
    answer(post("/v1/auth/login", wrong).await, StatusCode::UNAUTHORIZED, Some("invalid_credentials"));
    let missing = json!({"email": "ana@example.com"});
    answer(post("/v1/auth/login", missing).await, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"));
    let got = send_raw(&server, "/v1/auth/login", None, "application/json", "{]".to_owned()).await;
    answer(got, StatusCode::BAD_REQUEST, Some("invalid_json"));
    let got = send_raw(&server, "/v1/auth/login", None, "application/xml", text.clone()).await;
    answer(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"));

    let second = login["token"].as_str().expect("token").to_owned();
    let logout = "/v1/auth/logout";
    answer(server.call(Method::POST, logout, Some(&second), None).await, StatusCode::NO_CONTENT, None);
    answer(server.pull(&second, None, 10).await, StatusCode::UNAUTHORIZED, Some("unauthorized"));
    let got = server.call(Method::POST, logout, Some(&second), None).await;
    answer(got, StatusCode::UNAUTHORIZED, Some("unauthorized"));
    answer(
        server.call(Method::POST, logout, None, None).await,
        StatusCode::UNAUTHORIZED,
        Some("unauthorized"),
    );

    // Push: applied, duplicate, conflict, rejected.
    let mut writer = Writer::new();
    let mut other = Writer::new();
    let project = Project::new(user, "Album", Some("first cut"), Timestamp(1)).expect("valid");
    let id = project.entity_id();
    let create = writer.creating(&project);
    let body = answer(server.push(&token, &create).await, StatusCode::OK, None);
    assert_eq!(body["results"][0]["status"], "applied", "{body}");
    let body = answer(server.push(&token, &create).await, StatusCode::OK, None);
    assert_eq!(body["results"][0]["status"], "duplicate", "{body}");

    // The other client renames first (by the clock) but pushes last: its name loses.
    let stale = other.update(Project::ENTITY_TYPE, id, &[("name", json!("Old name"))]);
    let fresh = writer.update(Project::ENTITY_TYPE, id, &[("name", json!("New name"))]);
    let body = answer(server.push(&token, &writer.batch(vec![fresh])).await, StatusCode::OK, None);
    assert_eq!(body["results"][0]["status"], "applied", "{body}");
    let body = answer(server.push(&token, &other.batch(vec![stale])).await, StatusCode::OK, None);
    let result = &body["results"][0];
    assert_eq!(
        (result["status"].as_str(), &result["lost_fields"]),
        (Some("conflict"), &json!(["name"])),
        "{body}"
    );
    assert_eq!(result["server"]["fields"]["name"], "New name", "{body}");

    // A rejection does not stop the rest of the batch; a delete leaves a tombstone.
    let doomed = Project::new(user, "Scratch", None, Timestamp(2)).expect("valid");
    let ghost = writer.update(Project::ENTITY_TYPE, Uuid::now_v7(), &[("name", json!("Nobody"))]);
    let make = writer.create(&doomed);
    let delete = writer.delete(Project::ENTITY_TYPE, doomed.entity_id());
    let body =
        answer(server.push(&token, &writer.batch(vec![ghost, make, delete])).await, StatusCode::OK, None);
    let statuses: Vec<&str> =
        body["results"].as_array().expect("results").iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, ["rejected", "applied", "applied"], "{body}");
    assert_eq!(body["results"][0]["code"], "not_found", "{body}");

    // Push: malformed batches.
    let mut fields = BTreeMap::new();
    fields.insert("name".to_owned(), json!("No owner"));
    let incomplete = writer.mutation(OperationKind::Create, Project::ENTITY_TYPE, Uuid::now_v7(), fields);
    let incomplete_id = incomplete.id;
    let body = server.push(&token, &writer.batch(vec![incomplete])).await;
    let body = answer(body, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"));
    assert_eq!(body["mutation_id"], json!(incomplete_id), "{body}");
    let foreign_clock = PushRequest {
        client_id: other.client_id,
        mutations: vec![writer.update(Project::ENTITY_TYPE, id, &[("name", json!("x"))])],
    };
    let got = server.push(&token, &foreign_clock).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("clock_node_mismatch"));
    let as_playlist = writer.update(Playlist::ENTITY_TYPE, id, &[("name", json!("x"))]);
    let got = server.push(&token, &writer.batch(vec![as_playlist])).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("entity_type_mismatch"));
    let orphan = AudioTrack::new(ProjectId::new(), user, "Take 1", 5_000, None, Timestamp(3)).expect("valid");
    let got = server.push(&token, &writer.creating(&orphan)).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("missing_reference"));
    let deletes = (0..501).map(|_| writer.delete(Project::ENTITY_TYPE, Uuid::now_v7())).collect();
    let got = server.push(&token, &writer.batch(deletes)).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_mutations"));
    let extra = json!({"client_id": writer.client_id, "mutations": [], "extra": 1});
    let got = server.call(Method::POST, "/v1/sync/push", Some(&token), Some(&extra)).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"));
    let got =
        send_raw(&server, "/v1/sync/push", Some(&token), "application/json", "{\"client_id\": ".to_owned())
            .await;
    answer(got, StatusCode::BAD_REQUEST, Some("invalid_json"));
    let got = send_raw(&server, "/v1/sync/push", Some(&token), "text/plain", extra.to_string()).await;
    answer(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"));
    let got = server.call(Method::POST, "/v1/sync/push", None, Some(&extra)).await;
    answer(got, StatusCode::UNAUTHORIZED, Some("unauthorized"));

    // Pull: pages, a reset, bad queries.
    let first_page = answer(server.pull(&token, None, 1).await, StatusCode::OK, None);
    assert_eq!((first_page["status"].as_str(), &first_page["has_more"]), (Some("changes"), &json!(true)));
    let everything = answer(server.pull(&token, None, 1000).await, StatusCode::OK, None);
    let changes = everything["changes"].as_array().expect("changes");
    assert!(changes.iter().any(|c| c["deleted"] == true), "a tombstone: {everything}");
    let cursor = everything["next_cursor"].as_str().expect("cursor");
    let rest = answer(server.pull(&token, Some(cursor), 10).await, StatusCode::OK, None);
    assert_eq!((&rest["changes"], &rest["has_more"]), (&json!([]), &json!(false)), "{rest}");
    let reset = answer(server.pull(&token, Some("garbage"), 10).await, StatusCode::OK, None);
    assert_eq!(reset, json!({"status": "reset"}));
    // A bad scope is refused whatever the cursor (the fuzzer found a reset answered instead).
    let got = server.call(Method::GET, "/v1/sync/pull?scope=%F3%92&cursor=garbage", Some(&token), None).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_scope"));
    let got = server.call(Method::GET, "/v1/sync/pull?limit=abc", Some(&token), None).await;
    answer(got, StatusCode::BAD_REQUEST, Some("invalid_query"));
    answer(server.pull(&token, None, 0).await, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_limit"));
    answer(server.pull(&token, None, 1001).await, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_limit"));
    let got = server.call(Method::GET, "/v1/sync/pull", None, None).await;
    answer(got, StatusCode::UNAUTHORIZED, Some("unauthorized"));

    // Scopes, and pulls of one scope.
    let got = server.call(Method::GET, "/v1/sync/scopes", Some(&token), None).await;
    let scopes = answer(got, StatusCode::OK, None);
    let scopes: Vec<&str> =
        scopes["scopes"].as_array().expect("scopes").iter().filter_map(|s| s["scope"].as_str()).collect();
    assert_eq!(scopes.first(), Some(&"people"), "{scopes:?}");
    let project_scope = scopes.get(1).expect("the user's project");
    let types = |page: &Value| -> BTreeSet<String> {
        let changes = page["changes"].as_array().expect("changes");
        changes.iter().filter_map(|c| c["entity_type"].as_str().map(str::to_owned)).collect()
    };
    let got =
        server.call(Method::GET, &format!("/v1/sync/pull?scope={project_scope}"), Some(&token), None).await;
    let project_page = answer(got, StatusCode::OK, None);
    assert!(
        !types(&project_page).is_empty() && !types(&project_page).contains("user_profile"),
        "{project_page}"
    );
    let got = server.call(Method::GET, "/v1/sync/pull?scope=people", Some(&token), None).await;
    let people = answer(got, StatusCode::OK, None);
    assert!(types(&people).iter().all(|t| t == "user_profile"), "{people}");
    let got = server.call(Method::GET, "/v1/sync/pull?scope=everything", Some(&token), None).await;
    answer(got, StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_scope"));
    let stranger = format!("/v1/sync/pull?scope=project:{}", Uuid::now_v7());
    let got = server.call(Method::GET, &stranger, Some(&token), None).await;
    answer(got, StatusCode::FORBIDDEN, Some("scope_not_readable"));
    let got = server.call(Method::GET, "/v1/sync/scopes", None, None).await;
    answer(got, StatusCode::UNAUTHORIZED, Some("unauthorized"));

    // Fallbacks: unknown paths and wrong methods.
    answer(server.call(Method::GET, "/v1/nope", None, None).await, StatusCode::NOT_FOUND, Some("not_found"));
    answer(server.call(Method::GET, "/", None, None).await, StatusCode::NOT_FOUND, Some("not_found"));
    let got = server.call(Method::DELETE, "/v1/health", None, None).await;
    answer(got, StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"));
    let response =
        server.client.get(format!("{}/v1/sync/push", server.server.url())).send().await.expect("send");
    let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(allow.as_deref(), Some("POST"), "405 names the allowed methods");
    let got = server.record(Method::GET, "/v1/sync/push", response).await;
    answer(got, StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"));
    let head = server.client.head(format!("{}/v1/health", server.server.url())).send().await.expect("send");
    assert_eq!(head.status(), StatusCode::OK, "GET operations also answer HEAD");

    // 413 needs a server with a small limit.
    let small = TestServer::with_config(ServerConfig { max_body_bytes: 1024, ..Default::default() }).await;
    let (_, small_token) = small.sign_up().await;
    let huge = json!({"client_id": writer.client_id, "mutations": [], "pad": "x".repeat(2048)});
    let got = small.call(Method::POST, "/v1/sync/push", Some(&small_token), Some(&huge)).await;
    answer(got, StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"));
    let huge = json!({"email": "cy@example.com", "password": "p".repeat(2048)});
    let got = small.call(Method::POST, "/v1/auth/signup", None, Some(&huge)).await;
    answer(got, StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"));
    let got = small.call(Method::POST, "/v1/auth/login", None, Some(&huge)).await;
    answer(got, StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"));

    // Every response received, checked against the document.
    let mut seen = server.seen.lock().expect("lock").clone();
    seen.extend(small.seen.lock().expect("lock").iter().cloned());
    let failures: Vec<String> = seen.iter().filter_map(|s| spec.check(s).err()).collect();
    assert!(
        failures.is_empty(),
        "{} responses contradict the document:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // What was exercised, and which declared responses these tests cannot provoke.
    let exercised: BTreeSet<(String, String, u16)> = seen
        .iter()
        .map(|s| (s.path.clone(), s.method.as_str().to_ascii_lowercase(), s.status.as_u16()))
        .collect();
    let expected = [
        ("/v1/health", "get", 200),
        ("/v1/openapi.json", "get", 200),
        ("/v1/auth/signup", "post", 201),
        ("/v1/auth/signup", "post", 400),
        ("/v1/auth/signup", "post", 409),
        ("/v1/auth/signup", "post", 413),
        ("/v1/auth/signup", "post", 415),
        ("/v1/auth/signup", "post", 422),
        ("/v1/auth/login", "post", 200),
        ("/v1/auth/login", "post", 400),
        ("/v1/auth/login", "post", 401),
        ("/v1/auth/login", "post", 413),
        ("/v1/auth/login", "post", 415),
        ("/v1/auth/login", "post", 422),
        ("/v1/auth/logout", "post", 204),
        ("/v1/auth/logout", "post", 401),
        ("/v1/sync/push", "post", 200),
        ("/v1/sync/push", "post", 400),
        ("/v1/sync/push", "post", 401),
        ("/v1/sync/push", "post", 413),
        ("/v1/sync/push", "post", 415),
        ("/v1/sync/push", "post", 422),
        ("/v1/sync/push", "get", 405),
        ("/v1/sync/pull", "get", 200),
        ("/v1/sync/pull", "get", 400),
        ("/v1/sync/pull", "get", 401),
        ("/v1/sync/pull", "get", 422),
        ("/v1/sync/scopes", "get", 200),
        ("/v1/sync/scopes", "get", 401),
        ("/v1/health", "delete", 405),
        ("/v1/nope", "get", 404),
    ];
    for (path, method, status) in expected {
        assert!(
            exercised.contains(&(path.to_owned(), method.to_owned(), status)),
            "{method} {path} {status} not exercised"
        );
    }
    let untested: Vec<String> = spec
        .operations()
        .iter()
        .flat_map(|(path, method)| {
            let responses = spec.doc["paths"][path][method]["responses"].as_object().expect("responses");
            responses.keys().map(move |status| format!("{method} {path} {status}"))
        })
        .filter(|r| !exercised.iter().any(|(p, m, s)| *r == format!("{m} {p} {s}")))
        .collect();
    eprintln!("declared but not provoked by this test: {}", untested.join(", "));
}

/// The document on its own: every schema compiles and every `$ref` resolves, the examples match
/// their schemas (and the push example is a push the server would parse), security is declared
/// where tokens are checked, and responses without a body (204, and every answer to HEAD)
/// declare no content.
#[test]
fn the_document_is_consistent() {
    let spec = Spec::served();
    assert_eq!(spec.operations(), expected_operations());
    let entity_types: Vec<&str> = EntityType::all().iter().map(|t| t.as_str()).collect();
    let listed = &spec.doc["components"]["schemas"]["EntityType"];
    assert_eq!(
        listed["enum"],
        json!(entity_types),
        "the served entity types are the registry's, in its order"
    );
    let described = listed["description"].as_str().expect("description");
    for entity_type in EntityType::all() {
        for field in entity_type.fields() {
            assert!(described.contains(field), "{entity_type}'s field {field} is described");
        }
    }
    // The hand-written document leaves the list to the registry.
    let written: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
    assert_eq!(written["components"]["schemas"]["EntityType"]["enum"], json!([]));
    let schemas = spec.doc["components"]["schemas"].as_object().expect("schemas");
    for name in schemas.keys() {
        spec.validator(&Spec::schema(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let scheme = &spec.doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!((&scheme["type"], &scheme["scheme"]), (&json!("http"), &json!("bearer")));

    for (path, method) in spec.operations() {
        let operation = &spec.doc["paths"][&path][&method];
        let context = format!("{method} {path}");
        assert!(operation["operationId"].is_string() && operation["description"].is_string(), "{context}");
        let secured = SECURED.contains(&(path.as_str(), method.as_str()));
        assert_eq!(
            operation.get("security"),
            secured.then(|| json!([{"bearerAuth": []}])).as_ref(),
            "{context}"
        );
        if secured {
            assert!(operation["responses"].get("401").is_some(), "{context}: 401 not declared");
        }
        for (status, response) in operation["responses"].as_object().expect("responses") {
            let response = spec.resolve(response).unwrap_or_else(|e| panic!("{context} {status}: {e}"));
            assert!(response["description"].is_string(), "{context} {status}: no description");
            let bodiless = status == "204" || method == "head";
            assert_eq!(bodiless, response.get("content").is_none(), "{context} {status}: content");
            for media in
                response.get("content").and_then(Value::as_object).into_iter().flat_map(|c| c.values())
            {
                let schema = &media["schema"];
                spec.validator(schema).unwrap_or_else(|e| panic!("{context} {status}: {e}"));
                if let Some(example) = media.get("example") {
                    spec.validate(schema, example)
                        .unwrap_or_else(|e| panic!("{context} {status} example: {e}"));
                }
            }
        }
        // Links chain operations for stateful clients and fuzzers: each names an operation
        // of the document and only parameters that operation has.
        for response in operation["responses"].as_object().expect("responses").values() {
            let response = spec.resolve(response).expect("response");
            for (name, link) in response.get("links").and_then(Value::as_object).into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{context} link {name}"));
                let (target_path, target_method) = spec
                    .operations()
                    .into_iter()
                    .find(|(p, m)| spec.doc["paths"][p][m]["operationId"] == target)
                    .unwrap_or_else(|| panic!("{context} link {name}: no operation {target}"));
                let declared: Vec<String> = spec.doc["paths"][&target_path][&target_method]
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| spec.resolve(p).expect("parameter")["name"].as_str().expect("name").to_owned())
                    .collect();
                for parameter in
                    link.get("parameters").and_then(Value::as_object).into_iter().flat_map(|p| p.keys())
                {
                    assert!(
                        declared.contains(parameter),
                        "{context} link {name}: {target} has no {parameter}"
                    );
                }
            }
        }
        let body = operation.get("requestBody");
        for media in body.and_then(|b| b["content"].as_object()).into_iter().flat_map(|c| c.values()) {
            let example = media.get("example").unwrap_or_else(|| panic!("{context}: no request example"));
            spec.validate(&media["schema"], example).unwrap_or_else(|e| panic!("{context} example: {e}"));
        }
        for parameter in operation.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let parameter = spec.resolve(parameter).expect("parameter");
            spec.validator(&parameter["schema"]).unwrap_or_else(|e| panic!("{context}: {e}"));
        }
    }
    let example =
        &spec.doc["paths"]["/v1/sync/push"]["post"]["requestBody"]["content"]["application/json"]["example"];
    let parsed: PushRequest = serde_json::from_value(example.clone()).expect("the push example parses");
    assert!(parsed.mutations.iter().flat_map(|m| m.fields.values()).all(|f| f.hlc.node == parsed.client_id));
}

/// The checks can fail: wrong bodies, undeclared statuses and missing bodies are caught.
#[test]
fn the_checks_reject_responses_that_break_the_document() {
    let spec = Spec::served();
    let push = Spec::schema("PushResponse");
    let id = Uuid::now_v7();
    let applied = json!({"results": [{"id": id, "status": "applied", "version": 7}]});
    spec.validate(&push, &applied).expect("a valid push response");
    let wrong = [
        json!({"results": [{"id": id, "status": "applied", "version": "7"}]}),
        json!({"results": [{"id": id, "status": "applied"}]}),
        json!({"results": [{"id": "not-a-uuid", "status": "applied", "version": 7}]}),
        json!({"results": [{"id": id, "status": "applied", "version": 7, "extra": true}]}),
        json!({"results": [{"id": id, "status": "conflict", "version": 7}]}),
        json!({"results": [{"id": id, "status": "done", "version": 7}]}),
        json!({"results": [{"status": "applied", "version": 7}]}),
        json!({"results": [], "extra": 1}),
    ];
    for body in wrong {
        let err = spec.validate(&push, &body).expect_err(&format!("{body} must be refused"));
        assert!(!err.is_empty());
    }
    let pull = Spec::schema("PullResponse");
    spec.validate(&pull, &json!({"status": "reset"})).expect("reset");
    assert!(spec.validate(&pull, &json!({"status": "reset", "changes": []})).is_err());
    assert!(spec.validate(&pull, &json!({"status": "changes", "changes": [], "has_more": false})).is_err());
    let error = Spec::schema("ApiError");
    assert!(spec.validate(&error, &json!({"code": "x"})).is_err());
    assert!(spec.validate(&error, &json!({"code": "x", "message": "y", "mutation_id": 5})).is_err());

    let seen = |method: Method, path: &str, status: StatusCode, body: Value| Seen {
        method,
        path: path.to_owned(),
        status,
        body,
    };
    let bad_version = seen(
        Method::POST,
        "/v1/sync/push",
        StatusCode::OK,
        json!({"results": [{"id": id, "status": "duplicate", "version": "1"}]}),
    );
    let err = spec.check(&bad_version).expect_err("wrong type for version");
    assert!(err.contains("POST /v1/sync/push -> 200 OK"), "{err}");
    let cases = [
        seen(Method::POST, "/v1/sync/push", StatusCode::IM_A_TEAPOT, json!({"code": "x", "message": "y"})),
        seen(
            Method::GET,
            "/v1/sync/pull",
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"code": "taken", "message": "y"}),
        ),
        seen(Method::POST, "/v1/auth/logout", StatusCode::NO_CONTENT, json!({"code": "x", "message": "y"})),
        seen(Method::GET, "/v1/health", StatusCode::OK, Value::Null),
        seen(Method::GET, "/v1/nope", StatusCode::OK, json!({})),
        seen(Method::PUT, "/v1/health", StatusCode::NOT_FOUND, json!({"code": "not_found", "message": "y"})),
    ];
    for case in cases {
        assert!(spec.check(&case).is_err(), "{case:?} must be refused");
    }
}

/// The document's constraints say what the server accepts, no more and no less: a sign-up's
/// email against the server's validation, and a blob's name against its hash parsing.
#[test]
fn the_documents_constraints_agree_with_the_servers_checks() {
    let spec = Spec::served();
    let signup = Spec::schema("SignUpRequest");
    for email in [
        "ana@example.com",
        "  ana@example.com ",
        "a@b.c",
        "a@b..c",
        "ana",
        "@example.com",
        "ana@example",
        "ana@.example.com",
        "ana@example.com.",
        "an a@example.com",
        "ana@@example.com",
        "ana@exa@mple.com",
        "",
        // Control characters (C0 and C1) are refused, as the fuzzer found.
        "an\u{8c}a@example.com",
        "ana@exam\u{1}ple.com",
        "\r\n\t ana@example.com \u{b}",
        "ana\u{7f}@example.com",
        "ånä@exämple.com",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("{}@example.com", "a".repeat(242)), format!("{}@example.com", "a".repeat(243))])
    {
        let email = email.as_str();
        let body = json!({"email": email, "password": "correct horse"});
        let documented = spec.validate(&signup, &body).is_ok();
        let accepted = trackflow_domain::validate::email_address(email).is_ok();
        assert_eq!(documented, accepted, "{email:?}: the document and the server disagree");
    }
    let scope = &spec.doc["components"]["parameters"]["Scope"]["schema"];
    let id = "01a21dc5-234a-74d2-b426-639a7febbbb9";
    for name in [
        "people".to_owned(),
        format!("project:{id}"),
        format!("project:{}", id.to_uppercase()),
        format!("project:{}", id.replace('-', "")),
        format!("project:{{{id}}}"),
        format!("project:urn:uuid:{id}"),
        format!("user:{id}"),
        "project:".to_owned(),
        String::new(),
        "everything".to_owned(),
    ] {
        let documented = spec.validate(scope, &json!(name)).is_ok();
        let accepted = name == "people"
            || matches!(
                name.parse::<trackflow_domain::entities::Scope>(),
                Ok(trackflow_domain::entities::Scope::Shared(_))
            );
        assert_eq!(documented, accepted, "scope {name:?}: the document and the server disagree");
    }
    let item = &spec.doc["paths"]["/v1/blobs/{sha256}"]["parameters"][0]["schema"];
    for name in
        ["a".repeat(64), "A".repeat(64), "0".repeat(63), "0".repeat(65), format!("{}g", "0".repeat(63))]
    {
        let documented = spec.validate(item, &json!(name)).is_ok();
        let accepted = trackflow_domain::BlobHash::parse(&name).is_ok();
        assert_eq!(documented, accepted, "{name}: the document and the server disagree");
    }
}

/// The event stream's events, as the server sends them, match the schema the document gives
/// each event (`x-itemSchema`): the `ready` that opens it and a `poke` after a push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_streams_events_match_their_schema() {
    let spec = Spec::served();
    let media = &spec.doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    let item = &media["x-itemSchema"];
    assert_eq!(item, &Spec::schema("ServerSentEvent"));
    let server = TestServer::start().await;
    let (user, token) = server.sign_up().await;
    let mut stream = server
        .client
        .get(format!("{}/v1/events", server.server.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("open the stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let mut text = String::new();
    let mut events: Vec<Value> = Vec::new();
    let mut pushed = false;
    while events.len() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
            .await
            .expect("an event within 10 s")
            .expect("the stream")
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        // Events end with a blank line; comments (`:` lines) are keep-alives.
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                frame.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_owned())
            };
            if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                events.push(json!({"event": event, "data": data}));
            }
        }
        if !events.is_empty() && !pushed {
            let project = Project::new(user, "Poked", None, Timestamp(1)).expect("valid");
            let (status, _) = server.push(&token, &Writer::new().creating(&project)).await;
            assert_eq!(status, StatusCode::OK);
            pushed = true;
        }
    }
    assert_eq!((events[0]["event"].as_str(), events[1]["event"].as_str()), (Some("ready"), Some("poke")));
    for event in &events {
        spec.validate(item, event).unwrap_or_else(|e| panic!("{event}: {e}"));
        // The data is JSON text; its schema is the event's `contentSchema`.
        let name = if event["event"] == "ready" { "ReadyEvent" } else { "PokeEvent" };
        let content = &spec.doc["components"]["schemas"][name]["properties"]["data"]["contentSchema"];
        let data: Value = serde_json::from_str(event["data"].as_str().expect("data")).expect("JSON data");
        spec.validate(content, &data).unwrap_or_else(|e| panic!("{event}: {e}"));
    }
    // The checks can fail: an event the schema does not describe is caught.
    assert!(spec.validate(item, &json!({"event": "poke", "data": 7})).is_err());
    assert!(spec.validate(item, &json!({"event": "gone", "data": "{}"})).is_err());
}
