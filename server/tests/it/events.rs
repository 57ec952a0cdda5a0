//! The event stream: opened with `ready`, then pokes for changes the user may read, and none
//! for changes they may not; and the metrics endpoint counting what happened.

use crate::harness::{TestServer, Writer};
use reqwest::StatusCode;
use std::{sync::Arc, time::Duration};
use trackflow_domain::SyncEntity;
use trackflow_domain::{
    ports::{AccessToken, EventSource, EventStream, MockSessionStorage, ServerEvent, Session},
    protocol::Poke,
    CollaboratorRole, Timestamp, UserId,
};
use trackflow_music::{Project, ProjectCollaborator, UserProfile};
use trackflow_remote::{HttpRemote, RemoteOptions};

/// The stream of `user`, opened through the client's own event source, past its `ready`.
async fn open_stream(server: &TestServer, user: UserId, token: &str) -> Box<dyn EventStream> {
    let mut session = MockSessionStorage::new();
    let (url, token) = (server.server.url(), token.to_owned());
    session.expect_load().returning(move || {
        Ok(Some(Session {
            user_id: user,
            server_url: Some(url.clone()),
            access_token: Some(AccessToken::new(token.clone())),
        }))
    });
    let remote = HttpRemote::new(Arc::new(session), &RemoteOptions::default()).expect("client");
    let mut stream = remote.connect().await.expect("stream");
    assert_eq!(next(&mut stream).await, ServerEvent::Ready);
    stream
}

async fn next(stream: &mut Box<dyn EventStream>) -> ServerEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .expect("a readable event")
}

fn scopes(event: ServerEvent) -> Vec<String> {
    match event {
        ServerEvent::Poke(Poke { scopes: Some(scopes), .. }) => scopes,
        other => panic!("expected a poke naming scopes, got {other:?}"),
    }
}

#[tokio::test]
async fn pokes_reach_the_readers_of_a_change_and_nobody_else() {
    let server = TestServer::start().await;
    let (owner, owner_token) = server.sign_up().await;
    let (member, member_token) = server.sign_up().await;
    let (stranger, stranger_token) = server.sign_up().await;
    let mut writer = Writer::new();
    let project = Project::new(owner, "EP", None, Timestamp(1)).expect("project");
    let share = ProjectCollaborator::new(project.id(), member, CollaboratorRole::Editor, Timestamp(1))
        .expect("share");
    let mutations = vec![writer.create(&project), writer.create(&share)];
    let (status, _) = server.push(&owner_token, &writer.batch(mutations)).await;
    assert_eq!(status, StatusCode::OK);

    let mut owners = open_stream(&server, owner, &owner_token).await;
    let mut members = open_stream(&server, member, &member_token).await;
    let mut strangers = open_stream(&server, stranger, &stranger_token).await;
    assert_eq!(server.server_state_streams(), 3);

    let scope = format!("project:{}", project.id());
    let rename = writer.update(Project::ENTITY_TYPE, project.id().as_uuid(), &[("name", "EP 2".into())]);
    let (status, _) = server.push(&owner_token, &writer.batch(vec![rename])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scopes(next(&mut owners).await), vec![scope.clone()]);
    assert_eq!(scopes(next(&mut members).await), vec![scope]);

    // The stranger's next event is about their own profile: the project's poke, delivered to
    // every stream before this push was made, never reached them.
    let mut own = Writer::new();
    let profile = UserProfile::new(stranger, "Stranger", "s@example.com", Timestamp(1)).expect("profile");
    let (status, _) = server.push(&stranger_token, &own.creating(&profile)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scopes(next(&mut strangers).await), vec![format!("user:{stranger}")]);

    let metrics = server.metrics().await;
    for line in [
        "trackflow_event_streams 3",
        "trackflow_mutations_total{outcome=\"applied\"} 4",
        "trackflow_http_requests_total{route=\"/v1/sync/push\",status=\"200\"} 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing '{line}' in:\n{metrics}");
    }
    drop((owners, members, strangers));
}

impl TestServer {
    /// Event streams open on the server, from its metrics.
    fn server_state_streams(&self) -> usize {
        self.state.event_streams()
    }

    async fn metrics(&self) -> String {
        let response =
            self.client.get(format!("{}/metrics", self.server.url())).send().await.expect("metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("text")
    }
}

/// A stream ends once its token stops working (logged out here; an expired token is the same
/// lookup), at the stream's next token check; another user's stream stays open.
#[tokio::test]
async fn a_stream_closes_when_its_token_is_logged_out() {
    let config = trackflow_server::ServerConfig {
        token_check_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let server = TestServer::with_config(config).await;
    let (ana, ana_token) = server.sign_up().await;
    let (ben, ben_token) = server.sign_up().await;
    let mut anas = open_stream(&server, ana, &ana_token).await;
    let mut bens = open_stream(&server, ben, &ben_token).await;
    let (status, _) = server.call(reqwest::Method::POST, "/v1/auth/logout", Some(&ana_token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(10), anas.next())
        .await
        .expect("the stream ends within 10 s");
    assert!(ended.is_none(), "Ana's stream is closed, not sending: {ended:?}");

    // Ben's token still works: his stream still delivers.
    let mut own = Writer::new();
    let profile = UserProfile::new(ben, "Ben", "ben@example.com", Timestamp(1)).expect("profile");
    let (status, _) = server.push(&ben_token, &own.creating(&profile)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scopes(next(&mut bens).await), vec![format!("user:{ben}")]);
}
