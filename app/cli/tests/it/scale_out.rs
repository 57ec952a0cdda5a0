//! Two `trackflow server` processes on one PostgreSQL database, one client on each: a write
//! accepted by one instance pokes the client of the other (LISTEN/NOTIFY), and both converge.

use crate::server_process::ServerProcess;
use shaku::HasComponent;
use std::{ffi::OsStr, path::Path, sync::Arc, time::Duration};
use trackflow_client::engine::{EngineOptions, SyncEngine};
use trackflow_client::wiring::repository;
use trackflow_domain::{
    ports::{AccessToken, Session, SessionStorage},
    protocol::SignUpRequest,
    CollaboratorRole, Timestamp, UserId,
};
use trackflow_executors::UpstreamOptions;
use trackflow_music::{Project, ProjectCollaborator, ProjectPatch};
use trackflow_remote::{AuthClient, RemoteOptions};
use trackflow_server_store::ScratchDatabase;
use trackflow_usecases::ProbeOptions;

/// A client of `server`, signed up as a new user, syncing only in the background: no periodic
/// pulls and no idle polling, so only pokes bring other people's changes.
async fn client(dir: &Path, server: &str, email: &str) -> (SyncEngine, UserId) {
    let user = UserId::new();
    let request =
        SignUpRequest { email: email.into(), password: "correct horse".into(), user_id: Some(user) };
    let auth = AuthClient::new(&RemoteOptions::default()).expect("client");
    let token = auth.sign_up(server, &request).await.expect("sign up").token;
    let hour = Duration::from_secs(3_600);
    let options = EngineOptions {
        upstream: UpstreamOptions { idle_poll: hour, ..UpstreamOptions::default() },
        periodic: None,
        probe: ProbeOptions { first: Duration::from_millis(20), cap: Duration::from_millis(500) },
        ..EngineOptions::default()
    };
    let mut engine = SyncEngine::open(dir, options).await.expect("engine");
    let session: Arc<dyn SessionStorage> = engine.module.resolve();
    let signed_in = Session {
        user_id: user,
        server_url: Some(server.into()),
        access_token: Some(AccessToken::new(token)),
    };
    session.save(signed_in).await.expect("session");
    engine.start().await;
    let mut connected = engine.realtime().expect("realtime").connected();
    tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c))
        .await
        .expect("the event stream opens")
        .expect("listener alive");
    (engine, user)
}

/// Waits (at most 30 s) until `engine` holds `project` named `name`, re-checking after each of
/// its coordinated runs.
async fn until_named(engine: &SyncEngine, project: &Project, name: &str) {
    let projects = repository::<Project>(&engine.module);
    let mut runs = engine.coordinator().runs();
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let held = projects.get(project.id()).await.expect("get");
            if held.as_ref().is_some_and(|p| p.name() == name) {
                return;
            }
            runs.changed().await.expect("coordinator alive");
        }
    })
    .await;
    assert!(arrived.is_ok(), "'{name}' did not arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_pokes_a_client_of_the_other_and_both_converge() {
    let Some(admin) = trackflow_server_store::test_postgres_url("two instances") else { return };
    trackflow_music::install().expect("the music registry installs");
    let scratch = ScratchDatabase::create(&admin, "trackflow_scale_out").expect("scratch database");
    let blobs = tempfile::tempdir().expect("blob dir");
    let start = || {
        let args: [&OsStr; 6] = [
            "--db".as_ref(),
            scratch.url().as_ref(),
            "--blobs".as_ref(),
            blobs.path().as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        ServerProcess::start_with(&args)
    };
    let (one, two) = (start(), start());
    let (dir_ana, dir_ben) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let (ana, ana_id) = client(dir_ana.path(), &one.url(), "ana@example.com").await;
    let (ben, ben_id) = client(dir_ben.path(), &two.url(), "ben@example.com").await;

    // Ana, on instance one, starts a project and shares it with Ben, who is on instance two.
    let projects = repository::<Project>(&ana.module);
    let members = repository::<ProjectCollaborator>(&ana.module);
    let project = projects
        .create(Project::new(ana_id, "Split", None, Timestamp(1)).expect("valid"))
        .await
        .expect("create");
    let share = ProjectCollaborator::new(project.id(), ben_id, CollaboratorRole::Editor, Timestamp(1))
        .expect("valid");
    members.create(share).await.expect("share");
    until_named(&ben, &project, "Split").await;

    // Ben renames it on instance two; the poke crosses back to Ana on instance one.
    let bens = repository::<Project>(&ben.module);
    bens.update(project.id(), ProjectPatch { name: Some("Split, renamed".into()), ..Default::default() })
        .await
        .expect("rename");
    until_named(&ana, &project, "Split, renamed").await;
    let (a, b) = (projects.get(project.id()).await.expect("get"), bens.get(project.id()).await.expect("get"));
    assert_eq!(a, b, "both clients hold the same project");
    ana.shutdown().await;
    ben.shutdown().await;
    drop((one, two));
}
