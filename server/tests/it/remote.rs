//! The client's reqwest remote (`trackflow_remote::HttpRemote`) against the real server, and
//! against small hand-made servers that fail in the ways networks do.

use crate::harness::{TestServer, Writer};
use std::{sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use trackflow_domain::{
    ports::{AccessToken, MockSessionStorage, RemoteDataSource, RemoteError, Session},
    protocol::{MutationOutcome, PullRequest, PullResponse},
    SyncEntity, Timestamp, UserId,
};
use trackflow_music::Project;
use trackflow_remote::{HttpRemote, RemoteOptions};

fn remote(url: &str, user: UserId, token: Option<&str>, options: &RemoteOptions) -> HttpRemote {
    let session = Session {
        user_id: user,
        server_url: Some(url.to_owned()),
        access_token: token.map(AccessToken::new),
    };
    let mut storage = MockSessionStorage::new();
    storage.expect_load().returning(move || Ok(Some(session.clone())));
    HttpRemote::new(Arc::new(storage), options).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_pulls_through_the_real_server() {
    let server = TestServer::start().await;
    let (user, token) = server.sign_up().await;
    let remote = remote(&server.server.url(), user, Some(&token), &RemoteOptions::default());
    let mut writer = Writer::new();
    let project = Project::new(user, "Album", None, Timestamp(1)).expect("valid");
    let response = remote.push(&writer.creating(&project)).await.expect("push");
    assert!(matches!(response.results[0].outcome, MutationOutcome::Applied { .. }), "{response:?}");
    match remote.pull(PullRequest { cursor: None, limit: 10, scope: None }).await.expect("pull") {
        PullResponse::Changes { changes, .. } => assert_eq!(changes[0].entity_id, project.entity_id()),
        PullResponse::Reset => panic!("unexpected reset"),
    }
    // A cursor with characters that need escaping in a query string still arrives intact.
    let odd = remote
        .pull(PullRequest { cursor: Some("a b&c=d".into()), limit: 10, scope: None })
        .await
        .expect("pull");
    assert_eq!(odd, PullResponse::Reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refusals_are_classified() {
    let server = TestServer::start().await;
    let (user, token) = server.sign_up().await;
    let wrong = remote(&server.server.url(), user, Some("not-a-token"), &RemoteOptions::default());
    let error = wrong.pull(PullRequest { cursor: None, limit: 10, scope: None }).await.expect_err("401");
    assert!(matches!(error, RemoteError::Unauthorized(_)), "{error:?}");
    let signed_out = remote(&server.server.url(), user, None, &RemoteOptions::default());
    let error =
        signed_out.pull(PullRequest { cursor: None, limit: 10, scope: None }).await.expect_err("no token");
    assert!(matches!(error, RemoteError::Unauthorized(_)), "{error:?}");

    let good = remote(&server.server.url(), user, Some(&token), &RemoteOptions::default());
    let mut writer = Writer::new();
    let mut request = writer.creating(&Project::new(user, "Album", None, Timestamp(1)).expect("valid"));
    request.mutations[0].fields.remove("name");
    let error = good.push(&request).await.expect_err("422");
    assert!(matches!(error, RemoteError::Permanent { ref code, .. } if code == "invalid_field"), "{error:?}");
}

/// A server that accepts connections and does `behave` with each.
async fn fake_server<F, Fut>(behave: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let behave = Arc::new(behave);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let behave = behave.clone();
            tokio::spawn(async move { behave(stream).await });
        }
    });
    url
}

/// Reads one request's head (enough for these tests: the bodies are small).
async fn read_request(stream: &mut tokio::net::TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    let _ = stream.read(&mut buffer).await;
}

async fn answer(mut stream: tokio::net::TcpStream, response: &'static str) {
    read_request(&mut stream).await;
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_failures_are_transient() {
    let user = UserId::new();
    let fast = RemoteOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(300),
    };
    let pull = PullRequest { cursor: None, limit: 10, scope: None };

    // Nobody listens.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let error = remote(&closed, user, Some("t"), &fast).pull(pull.clone()).await.expect_err("refused");
    assert!(
        matches!(error, RemoteError::Unreachable { ref message } if message.starts_with("cannot connect")),
        "{error:?}"
    );

    // Accepts, reads the request, never answers.
    let silent = fake_server(|mut stream| async move {
        read_request(&mut stream).await;
        std::future::pending::<()>().await;
    })
    .await;
    let error = remote(&silent, user, Some("t"), &fast).pull(pull.clone()).await.expect_err("timeout");
    assert!(
        matches!(error, RemoteError::Transient { ref message, .. } if message.starts_with("timed out")),
        "{error:?}"
    );

    // Cuts the connection once the request is sent.
    let cut = fake_server(|mut stream| async move {
        read_request(&mut stream).await;
        drop(stream);
    })
    .await;
    let error = remote(&cut, user, Some("t"), &fast).pull(pull.clone()).await.expect_err("cut");
    assert!(error.is_transient(), "{error:?}");

    // 500, and 429 with Retry-After.
    let broken = fake_server(|stream| {
        answer(stream, "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    })
    .await;
    let error = remote(&broken, user, Some("t"), &fast).pull(pull.clone()).await.expect_err("500");
    assert!(matches!(error, RemoteError::Transient { retry_after_ms: None, .. }), "{error:?}");
    let busy = fake_server(|stream| {
        answer(
            stream,
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-type: application/json\r\ncontent-length: 40\r\nconnection: close\r\n\r\n{\"code\":\"slow_down\",\"message\":\"wait...\"}",
        )
    })
    .await;
    let error = remote(&busy, user, Some("t"), &fast).pull(pull.clone()).await.expect_err("429");
    assert_eq!(error, RemoteError::Busy { message: "wait...".into(), retry_after_ms: Some(3_000) });

    // A 200 whose body is cut short or is not the protocol: retry later, not a crash.
    let garbled = fake_server(|stream| {
        answer(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\nconnection: close\r\n\r\n{\"statu")
    })
    .await;
    let error = remote(&garbled, user, Some("t"), &fast).pull(pull).await.expect_err("garbled");
    assert!(error.is_transient(), "{error:?}");
}
