//! Adding offline-first sync to a Rust program: open an engine on a data directory, sign in,
//! start it, and write through its repositories. Writes return at once; the engine pushes them,
//! pulls what others wrote, and reports on its status stream. A second device of the same user
//! keeps a live query of the user's projects open and prints the list whenever it changes, as
//! a UI would redraw it.
//!
//! Run with `cargo run -p trackflow-client --example embed`. It starts a sync server in this process
//! so that it runs anywhere (the server is one of this crate's dev-dependencies, not something
//! an embedding program compiles); a real program would point at its own server instead.

use std::{sync::Arc, time::Duration};
use trackflow_client::{
    domain::{ports::Clock, protocol::SignUpRequest, sync::LiveQuery, UserId},
    remote::{AuthClient, RemoteOptions},
    shaku::HasComponent,
    EngineOptions, SyncEngine,
};
use trackflow_music::{Project, UserProfile};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 0. The program's synced types, registered once at start (here the music model's; see
    // examples/tasks for a program declaring its own).
    trackflow_music::install()?;

    // A sync server for the example (your program uses its own; this one comes from the
    // crate's dev-dependencies).
    let server_store = DieselServerStore::open("sqlite::memory:", 1)?;
    let server_files = tempfile::tempdir()?;
    let audio = Arc::new(FsBlobStorage::open(server_files.path())?);
    let state = trackflow_server::AppState::new(Arc::new(server_store), Default::default()).with_blobs(audio);
    let server = trackflow_server::RunningServer::start("127.0.0.1:0".parse()?, state).await?;

    // 1. The engine over a local database: every read and write goes here first.
    let data = tempfile::tempdir()?;
    let mut engine = SyncEngine::open(data.path(), EngineOptions::default()).await?;
    // This device's user: a profile like any synced entity, written through the repository the
    // engine gives for its type.
    let now = HasComponent::<dyn Clock>::resolve_ref(engine.module.as_ref()).now();
    let profile = UserProfile::new(UserId::new(), "Ana", "ana@example.com", now)?;
    let me = engine.repository::<UserProfile>().create(profile).await?;

    // 2. An account on the server, and the session that lets the engine sync.
    let request = SignUpRequest {
        email: "ana@example.com".into(),
        password: "a long password".into(),
        user_id: Some(me.id()),
    };
    let account = AuthClient::new(&RemoteOptions::default())?.sign_up(&server.url(), &request).await?;
    engine.sign_in(me.id(), &server.url(), &account.token).await?;

    // 3. A second device of the same user, with a live query of the user's projects: the
    // current list at once, then a new list after each change that can affect it.
    let other_data = tempfile::tempdir()?;
    let mut other = SyncEngine::open(other_data.path(), EngineOptions::default()).await?;
    other.sign_in(me.id(), &server.url(), &account.token).await?;
    other.start().await;
    let mut listed =
        other.repository::<Project>().subscribe(LiveQuery::By(Project::BY_MEMBER, me.id().as_uuid())).await?;
    let names = |projects: Vec<Project>| projects.iter().map(|p| p.name().to_owned()).collect::<Vec<_>>();
    if let Some(first) = listed.next().await {
        println!("other device, projects now: {:?}", names(first?));
    }

    // 4. Start syncing in the background, then write: the write returns before any network.
    engine.start().await;
    let projects = engine.repository::<Project>();
    let project = projects.create(Project::new(me.id(), "Written offline-first", None, now)?).await?;
    println!("stored locally and queued: {}", project.name());

    // 5. The status stream says when the server holds it. (Clone what you read: a borrowed
    // state held across an await would keep the engine from publishing the next one.)
    let mut status = engine.status();
    engine.status_provider().refresh_counts().await?;
    let synced =
        tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.pending == 0)).await??.clone();
    println!("synced: {} pending, {} failed", synced.pending, synced.failed);

    // 6. The other device pulls it (the server pokes it) and its live query gives the new list.
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), listed.next()).await?;
        let Some(result) = next else { anyhow::bail!("the live query ended") };
        let list = names(result?);
        println!("other device, projects now: {list:?}");
        if list.iter().any(|name| name == project.name()) {
            break;
        }
    }

    other.shutdown().await;
    engine.shutdown().await;
    server.shutdown().await?;
    Ok(())
}
