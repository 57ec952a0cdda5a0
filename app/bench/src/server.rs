//! Server scenarios: the real server on a local port, driven over HTTP by clients in the same
//! process, on SQLite and (with `--postgres`) on PostgreSQL. Each report's baseline is a trivial
//! JSON endpoint added to the same server, so the ratios show what sync costs beyond HTTP.

use super::{summarize, BenchArgs, Measurement, Report};
use anyhow::{bail, Context};
use axum::{routing::post, Json};
use reqwest::{header::CONTENT_TYPE, Client};
use serde_json::json;
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use trackflow_domain::{
    ports::ServerStore,
    protocol::{Mutation, PullRequest, PullResponse, PushRequest},
    sync::HybridLogicalClock,
    NodeId, OperationKind, SyncEntity, SyncOperation, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, Project, ProjectId};
use trackflow_server::{AppState, ServerConfig};
use trackflow_server_store::{DieselServerStore, ScratchDatabase};

/// A database for one backend's run; a PostgreSQL scratch database is dropped afterwards.
struct Database {
    label: &'static str,
    url: String,
    _scratch: Option<ScratchDatabase>,
}

fn databases(dir: &Path, args: &BenchArgs, name: &str) -> anyhow::Result<Vec<Database>> {
    let file = dir.join(format!("{name}-server.db"));
    let mut all =
        vec![Database { label: "sqlite", url: file.to_string_lossy().into_owned(), _scratch: None }];
    if let Some(admin) = &args.postgres {
        let scratch = ScratchDatabase::create(admin, "trackflow_bench")
            .context("creating a scratch database on --postgres")?;
        all.push(Database { label: "postgres", url: scratch.url().to_owned(), _scratch: Some(scratch) });
    }
    Ok(all)
}

/// The server with one extra route, `POST /bench/noop`, that answers `{"ok": true}` without
/// reading the body: the transport baseline.
struct Running {
    url: String,
    store: Arc<DieselServerStore>,
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(database: &Database) -> anyhow::Result<Running> {
    let url = database.url.clone();
    let store = Arc::new(tokio::task::spawn_blocking(move || DieselServerStore::open(&url, 16)).await??);
    let state = AppState::new(store.clone(), ServerConfig::default());
    let app =
        trackflow_server::router(state).route("/bench/noop", post(|| async { Json(json!({"ok": true})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    let client = Client::builder().pool_max_idle_per_host(64).build()?;
    Ok(Running { url: format!("http://{addr}"), store, client, stop })
}

/// Where requests go: a server's base URL and the HTTP client to use.
#[derive(Clone)]
pub(super) struct Endpoint {
    pub(super) url: String,
    pub(super) client: Client,
}

impl Running {
    fn endpoint(&self) -> Endpoint {
        Endpoint { url: self.url.clone(), client: self.client.clone() }
    }
}

/// Signs up a user over HTTP; returns (user, token).
pub(super) async fn sign_up(server: &Endpoint) -> anyhow::Result<(UserId, String)> {
    let email = format!("bench-{}@example.com", uuid::Uuid::now_v7().simple());
    let response = server
        .client
        .post(format!("{}/v1/auth/signup", server.url))
        .json(&json!({"email": email, "password": "benchmark password"}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("sign-up failed: {}", response.text().await?);
    }
    let body: serde_json::Value = response.json().await?;
    let user = serde_json::from_value(body["user_id"].clone())?;
    Ok((user, body["token"].as_str().unwrap_or_default().to_owned()))
}

/// One client's mutations: its own node id and a hybrid logical clock on the real time, as a
/// client's outbox stamps them. (A reading that only added 1 ms per mutation ran ahead of the
/// server's clock after 60,000 mutations, and the server refused it as clock skew.)
pub(super) struct Writer {
    node: NodeId,
    clock: HybridLogicalClock,
}

impl Writer {
    pub(super) fn new() -> Self {
        let node = NodeId::new();
        Self { node, clock: HybridLogicalClock::new(node) }
    }

    pub(super) fn mutation(&mut self, kind: OperationKind, entity: &impl SyncEntity) -> Mutation {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let hlc = self.clock.now(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        let fields = match kind {
            OperationKind::Update => entity.fields().into_iter().filter(|(k, _)| k == "name").collect(),
            _ => entity.fields(),
        };
        // Built the way a client's outbox builds it.
        let op = SyncOperation::new(entity.entity_ref(), kind, fields, hlc, 0, vec![], Timestamp(0));
        Mutation::from(&op)
    }

    /// A push of the mutations `build` makes with this writer.
    pub(super) fn request(&mut self, build: impl FnOnce(&mut Self) -> Vec<Mutation>) -> PushRequest {
        let mutations = build(self);
        PushRequest { client_id: self.node, mutations }
    }
}

pub(super) fn track(project: ProjectId, owner: UserId, i: usize) -> AudioTrack {
    AudioTrack::new(project, owner, &format!("Track {i}"), 180_000, None, Timestamp(1_800_000_000_000))
        .expect("valid track")
}

async fn post_bytes(server: &Endpoint, path: &str, token: &str, body: Vec<u8>) -> anyhow::Result<Duration> {
    Ok(post_json(server, path, token, body).await?.0)
}

/// Posts the JSON `body` to `path` with `token`: the round trip and the answer's body, or an
/// error for an answer that is not a success.
pub(super) async fn post_json(
    server: &Endpoint,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> anyhow::Result<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let response = server
        .client
        .post(format!("{}{path}", server.url))
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.bytes().await?;
    if !status.is_success() {
        bail!("{path}: {status}: {}", String::from_utf8_lossy(&text));
    }
    Ok((started.elapsed(), text.to_vec()))
}

/// One client of a concurrent run: where it sends, its token, and its request bodies in order.
type ClientWork = (Endpoint, String, Vec<Vec<u8>>);

/// Runs the clients concurrently, each sending its bodies to `path` in turn. Returns every
/// request's latency and the wall-clock time of the whole run.
async fn concurrent(path: &'static str, work: Vec<ClientWork>) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|(server, token, bodies)| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(bodies.len());
                for body in bodies {
                    latencies.push(post_bytes(&server, path, &token, body).await?);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all, started.elapsed()))
}

/// A pushing client: its user, token, clock and project (created over HTTP).
pub(super) struct Pusher {
    pub(super) user: UserId,
    pub(super) token: String,
    pub(super) writer: Writer,
    pub(super) project: ProjectId,
}

/// Signs up `n` users through `server`, each with a project of their own.
pub(super) async fn pushers(server: &Endpoint, n: usize) -> anyhow::Result<Vec<Pusher>> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let (user, token) = sign_up(server).await?;
        let mut writer = Writer::new();
        let project = Project::new(user, "Bench", None, Timestamp(1_800_000_000_000))?;
        let body =
            serde_json::to_vec(&writer.request(|w| vec![w.mutation(OperationKind::Create, &project)]))?;
        post_bytes(server, "/v1/sync/push", &token, body).await?;
        all.push(Pusher { user, token, writer, project: project.id() });
    }
    Ok(all)
}

/// Mutations pushed per measurement of batch size `batch`.
fn total_mutations(batch: usize) -> usize {
    match batch {
        1 => 2_000,
        2..=100 => 20_000,
        _ => 40_000,
    }
}

/// Each pusher's requests of `batch` track creates, sent to `servers[i % servers.len()]`.
fn push_work(pushers: &mut [Pusher], servers: &[Endpoint], batch: usize) -> anyhow::Result<Vec<ClientWork>> {
    let requests_per_client = (total_mutations(batch) / batch / pushers.len()).max(1);
    let mut work = Vec::new();
    for (i, p) in pushers.iter_mut().enumerate() {
        let mut bodies = Vec::with_capacity(requests_per_client);
        for r in 0..requests_per_client {
            let request = p.writer.request(|w| {
                (0..batch)
                    .map(|k| w.mutation(OperationKind::Create, &track(p.project, p.user, r * batch + k)))
                    .collect()
            });
            bodies.push(serde_json::to_vec(&request)?);
        }
        work.push((servers[i % servers.len()].clone(), p.token.clone(), bodies));
    }
    Ok(work)
}

/// Runs `work` and reports its mutations per second of wall-clock time.
async fn measure_pushes(name: &str, batch: usize, work: Vec<ClientWork>) -> anyhow::Result<Measurement> {
    let (latencies, wall) = concurrent("/v1/sync/push", work).await?;
    let mutations = latencies.len() * batch;
    let mut m = summarize(name, latencies);
    m.per_second = mutations as f64 / wall.as_secs_f64();
    Ok(m)
}

/// Push throughput: batches of `--push-batches` track creates from `--push-clients` clients.
pub(super) async fn push(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut measurements = Vec::new();
    for database in databases(dir, args, "push")? {
        let server = Arc::new(start(&database).await?);
        let endpoint = server.endpoint();
        let most = args.push_clients.iter().copied().max().unwrap_or(1);
        let mut users = pushers(&endpoint, most).await?;
        for &clients in &args.push_clients {
            // Transport baseline: the same number of concurrent clients, a trivial endpoint.
            let noop: Vec<_> = users
                .iter()
                .take(clients)
                .map(|p| (endpoint.clone(), p.token.clone(), vec![b"{}".to_vec(); 2000 / clients]))
                .collect();
            let (latencies, wall) = concurrent("/bench/noop", noop).await?;
            let count = latencies.len();
            let mut baseline = summarize(
                &format!("{} noop request, {clients} client(s) [req/s]", database.label),
                latencies,
            );
            baseline.per_second = count as f64 / wall.as_secs_f64();
            let base_p50 = baseline.p50_us;
            measurements.push(baseline);
            for &batch in &args.push_batches {
                let work = push_work(&mut users[..clients], std::slice::from_ref(&endpoint), batch)?;
                let name =
                    format!("{} push batch {batch}, {clients} client(s) [mutations/s]", database.label);
                let mut m = measure_pushes(&name, batch, work).await?;
                m.ratio_p50 = m.p50_us / base_p50;
                measurements.push(m);
            }
        }
        let Running { stop, .. } =
            Arc::try_unwrap(server).map_err(|_| anyhow::anyhow!("server still shared"))?;
        let _ = stop.send(());
    }
    // Ratios are per concurrency level against that level's noop request; keep them as set.
    Ok(Report { scenario: "server-push".into(), measurements })
}

/// A `trackflow server` process started by [`spawn_server`]; killed when dropped.
pub(super) struct ServerProcess {
    pub(super) endpoint: Endpoint,
    /// Its process id, for its memory.
    pub(super) pid: u32,
    _child: tokio::process::Child,
}

/// Starts `trackflow-bench serve` (the code of `trackflow server`, LISTEN/NOTIFY relay
/// included) on `url` and waits for the address it prints.
pub(super) async fn spawn_server(url: &str, blobs: &Path) -> anyhow::Result<ServerProcess> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--db", url, "--listen", "127.0.0.1:0", "--connections", "16", "--blobs"])
        .arg(blobs)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting a server process")?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("its stderr")?).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.strip_prefix("trackflow server listening on ") {
            let url = rest.split_whitespace().next().unwrap_or_default().to_owned();
            // Keep reading its stderr, so the process never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let client = Client::builder().pool_max_idle_per_host(64).build()?;
            let pid = child.id().context("its process id")?;
            return Ok(ServerProcess { endpoint: Endpoint { url, client }, pid, _child: child });
        }
    }
    bail!("the server process ended before it listened")
}

/// Two server processes on one PostgreSQL database against one: the same clients, each in its
/// own project, split between the instances.
pub(super) async fn scale_out(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let Some(admin) = &args.postgres else { bail!("scale-out needs --postgres") };
    let scratch = ScratchDatabase::create(admin, "trackflow_bench").context("a scratch database")?;
    let blobs = dir.join("scale-out-blobs");
    let clients = args.push_clients.iter().copied().max().unwrap_or(16);
    let first = spawn_server(scratch.url(), &blobs).await?;
    let mut users = pushers(&first.endpoint, clients).await?;
    let mut measurements = Vec::new();
    for instances in [1usize, 2] {
        let mut servers = vec![first.endpoint.clone()];
        let mut more = Vec::new();
        for _ in 1..instances {
            let process = spawn_server(scratch.url(), &blobs).await?;
            servers.push(process.endpoint.clone());
            more.push(process);
        }
        for &batch in &args.push_batches {
            let work = push_work(&mut users, &servers, batch)?;
            let name = format!("postgres push batch {batch}, {clients} clients, {instances} instance(s)");
            measurements.push(measure_pushes(&name, batch, work).await?);
        }
    }
    // Each measurement's p50 against the one-instance figure of the same batch size.
    let batches = args.push_batches.len();
    for k in 0..measurements.len() {
        measurements[k].ratio_p50 = measurements[k].p50_us / measurements[k % batches].p50_us;
    }
    Ok(Report { scenario: "scale-out".into(), measurements })
}

pub(super) async fn pull(dir: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut measurements = Vec::new();
    for database in databases(dir, args, "pull")? {
        let server = Arc::new(start(&database).await?);
        let (user, token) = sign_up(&server.endpoint()).await?;
        let mut writer = Writer::new();
        let project = Project::new(user, "Mine", None, Timestamp(1_800_000_000_000))?;
        server
            .store
            .push(user, writer.request(|w| vec![w.mutation(OperationKind::Create, &project)]))
            .await?;
        // Strangers' projects: half of every database belongs to people this user never sees.
        let mut strangers = Vec::new();
        for _ in 0..10 {
            let stranger = UserId::new();
            let mut w = Writer::new();
            let p = Project::new(stranger, "Theirs", None, Timestamp(1_800_000_000_000))?;
            server.store.push(stranger, w.request(|w| vec![w.mutation(OperationKind::Create, &p)])).await?;
            strangers.push((stranger, w, p.id()));
        }
        let mut rows = 11usize;
        let mut mine = Vec::new();
        let mut latencies_by_size = Vec::new();
        for size in [1_000usize, 100_000] {
            // Grow the database to `size` rows: half in this user's project, half elsewhere.
            let mut k = rows;
            while rows < size {
                let n = (size - rows).min(500);
                let owner_turn = (rows / 500) % 2 == 0;
                let request = if owner_turn {
                    let tracks: Vec<_> = (0..n).map(|i| track(project.id(), user, k + i)).collect();
                    let request = writer
                        .request(|w| tracks.iter().map(|t| w.mutation(OperationKind::Create, t)).collect());
                    mine.extend(tracks);
                    (user, request)
                } else {
                    let (stranger, w, p) = &mut strangers[(rows / 1000) % 10];
                    let request = w.request(|w| {
                        (0..n)
                            .map(|i| w.mutation(OperationKind::Create, &track(*p, *stranger, k + i)))
                            .collect()
                    });
                    (*stranger, request)
                };
                server.store.push(request.0, request.1).await?;
                rows += n;
                k += n;
            }
            // The cursor at the end, then 10 changes after it.
            let mut cursor = None;
            loop {
                match server
                    .store
                    .pull(user, PullRequest { cursor: cursor.clone(), limit: 1000, scope: None })
                    .await?
                {
                    PullResponse::Changes { next_cursor, has_more, .. } => {
                        cursor = Some(next_cursor);
                        if !has_more {
                            break;
                        }
                    }
                    PullResponse::Reset => bail!("unexpected reset"),
                }
            }
            let updates = writer.request(|w| {
                mine.iter().rev().take(10).map(|t| w.mutation(OperationKind::Update, t)).collect()
            });
            server.store.push(user, updates).await?;
            let cursor = cursor.unwrap_or_default();
            let url = format!("{}/v1/sync/pull?cursor={cursor}&limit=500", server.url);
            let noop_url = format!("{}/bench/noop", server.url);
            let mut pulls = Vec::with_capacity(args.iterations);
            let mut noops = Vec::with_capacity(args.iterations);
            let mut bytes = 0usize;
            for i in 0..args.warmup + args.iterations {
                let started = Instant::now();
                let response = server.client.get(&url).bearer_auth(&token).send().await?;
                let body = response.bytes().await?;
                let took = started.elapsed();
                let started = Instant::now();
                server
                    .client
                    .post(&noop_url)
                    .header(CONTENT_TYPE, "application/json")
                    .body("{}")
                    .send()
                    .await?
                    .bytes()
                    .await?;
                let noop_took = started.elapsed();
                if i >= args.warmup {
                    pulls.push(took);
                    noops.push(noop_took);
                    bytes = body.len();
                }
                if i == 0 {
                    let parsed: serde_json::Value = serde_json::from_slice(&body)?;
                    let n = parsed["changes"].as_array().map_or(0, Vec::len);
                    if n != 10 {
                        bail!("expected 10 changes, got {n}: {parsed}");
                    }
                }
            }
            let noop = summarize(&format!("{} noop request ({size} rows)", database.label), noops);
            let mut m =
                summarize(&format!("{} pull 10 changes, {size} rows ({bytes} bytes)", database.label), pulls);
            m.ratio_p50 = m.p50_us / noop.p50_us;
            latencies_by_size.push(m.p50_us);
            measurements.push(noop);
            measurements.push(m);
        }
        if let [small, large] = latencies_by_size[..] {
            measurements.push(Measurement {
                name: format!("{} pull p50 at 100,000 rows / at 1,000 rows", database.label),
                samples: 0,
                p50_us: large,
                p95_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
                per_second: 0.0,
                ratio_p50: large / small,
            });
        }
        let Running { stop, .. } =
            Arc::try_unwrap(server).map_err(|_| anyhow::anyhow!("server still shared"))?;
        let _ = stop.send(());
    }
    Ok(Report { scenario: "server-pull".into(), measurements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_music::Project;

    /// However many mutations a writer makes, its readings stay on the real time: the server
    /// refuses readings more than a minute ahead of its clock.
    #[test]
    fn a_writers_clock_readings_stay_on_the_real_time() {
        trackflow_music::install().expect("the music registry installs");
        let project = Project::new(UserId::new(), "P", None, Timestamp(1)).expect("valid");
        let mut writer = Writer::new();
        let mut last = None;
        for _ in 0..100_000 {
            let mutation = writer.mutation(OperationKind::Update, &project);
            let reading = mutation.fields.values().next().expect("a field").hlc;
            assert!(last.is_none_or(|l| l < reading), "readings only move forward");
            last = Some(reading);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
        let ahead =
            last.expect("readings").wall_ms.saturating_sub(u64::try_from(now.as_millis()).expect("ms"));
        assert!(ahead < 1_000, "the last reading is {ahead} ms ahead of the real time");
    }
}
