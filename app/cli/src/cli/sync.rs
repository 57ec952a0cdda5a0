//! `trackflow sync`, `watch` and `status`: the sync engine seen from the command line.

use super::{
    commands::App,
    output::{Line, Printer},
};
use crate::config::Settings;
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shaku::HasComponent;
use std::{path::Path, sync::Arc, time::Duration};
use tokio::sync::watch;
use trackflow_client::engine::{EngineOptions, SyncEngine};
use trackflow_domain::{
    ports::{
        Clock, ConflictRepository, DownstreamRepository, EventSource, Missed, NetworkMonitor,
        PendingOperationsRepository, RemoteDataSource, ServerEvent, Session, SessionStorage,
    },
    sync::ChangeEvent,
    OperationStatus, SyncOperation, SyncPhase, SyncState, Timestamp,
};
use trackflow_executors::{upstream::health_of, UpstreamOptions};
use trackflow_music::UserProfile;
use trackflow_usecases::{ProbeOptions, ReachabilityMonitor, SyncDataOptions, SyncUseCases};

/// How often `trackflow watch` looks for writes made by other processes.
const WATCH_IDLE_POLL: Duration = Duration::from_secs(2);

/// The engine options the settings ask for.
fn options(settings: &Settings, periodic: Option<Duration>) -> EngineOptions {
    EngineOptions {
        downstream: SyncDataOptions {
            min_interval: settings.min_pull_interval,
            use_cases: SyncUseCases::standard(&settings.policies),
            ..SyncDataOptions::default()
        },
        periodic,
        ..EngineOptions::default()
    }
}

/// Whether `session` can sync: it names a server and holds a token (which the server may still
/// refuse; see `status`).
fn can_sync(session: Option<&Session>) -> bool {
    session.is_some_and(|s| s.access_token.is_some() && s.server_url.is_some())
}

/// Refuses to sync without a server and a token, with the command that fixes it: every flag it
/// needs, filled in with the server `login` would use and the profile's email.
async fn require_sign_in(engine: &SyncEngine, settings: &Settings) -> anyhow::Result<()> {
    let sessions: &dyn SessionStorage = engine.module.resolve_ref();
    let session = sessions.load().await?;
    if can_sync(session.as_ref()) {
        return Ok(());
    }
    // The server `login` would use: the configured one, else the last used.
    let server = settings.server.clone().or_else(|| session.as_ref().and_then(|s| s.server_url.clone()));
    let email = match &session {
        Some(session) => {
            engine.repository::<UserProfile>().get(session.user_id).await?.map(|p| p.email().to_owned())
        }
        None => None,
    };
    let server = server.unwrap_or_else(|| "URL".to_owned());
    let email = email.unwrap_or_else(|| "EMAIL".to_owned());
    bail!(
        "not logged in: run `trackflow login --server {server} --email {email}` (the password is \
         asked for, or read with --password-stdin), or `trackflow signup --server {server}` for a new account"
    )
}

/// `trackflow sync`: one push and pull of every scope that changed (a person asked: intervals
/// do not apply), with a progress bar on a terminal while it is long.
///
/// It exits 0 only when nothing is left queued but operations parked as failed, which it lists.
/// Operations held back by backoff after a failure are waited for when their next attempt is
/// due within [`SYNC_WAIT`], and tried again; past that, the command fails saying how many
/// remain and when they will be tried.
pub(super) async fn sync(data_dir: &Path, settings: &Settings, out: Printer) -> anyhow::Result<()> {
    let engine = SyncEngine::open(data_dir, options(settings, None)).await?;
    require_sign_in(&engine, settings).await?;
    let bar = (!out.json).then(|| progress_bar(engine.status()));
    let outcome = sync_until_settled(&engine, out).await;
    if let Some(bar) = bar {
        bar.abort();
    }
    engine.shutdown().await;
    let (state, queue) = outcome?;
    match state.phase {
        SyncPhase::Offline => bail!("{}", state.last_error.as_deref().unwrap_or("server unreachable")),
        SyncPhase::Error => bail!("sync failed: {}", state.last_error.as_deref().unwrap_or("unknown error")),
        _ => {}
    }
    if let Some(left) = still_queued(&queue) {
        bail!("{left}");
    }
    let failed: Vec<_> = queue.into_iter().filter(|op| op.status == OperationStatus::Failed).collect();
    let lines: Vec<String> = failed
        .iter()
        .map(|op| {
            let reason = op.last_error.as_deref().unwrap_or("no reason recorded");
            format!("failed: {} {} {}: {reason}", op.id, op.kind, op.entity)
        })
        .collect();
    let mut human = state.line();
    for line in &lines {
        human.push('\n');
        human.push_str(line);
    }
    let failed: Vec<serde_json::Value> = failed
        .iter()
        .map(|op| json!({ "id": op.id, "kind": op.kind, "entity": op.entity.to_string(), "error": op.last_error }))
        .collect();
    let mut value = serde_json::to_value(&state)?;
    value["failed_operations"] = failed.into();
    out.value(&value, &human)
}

/// `trackflow repair`: checks the local database and, if it is damaged, rebuilds it around what
/// only this device holds (changes not yet sent, its identity, the session) and pulls the rest
/// from the server. Exits 0 when the database is sound, or rebuilt and synced; a device that
/// cannot sync now is told to sync later, with a non-zero exit (its cache is not back yet).
pub(super) async fn repair(data_dir: &Path, settings: &Settings, out: Printer) -> anyhow::Result<()> {
    use trackflow_store::repair;
    let path = data_dir.join(trackflow_client::wiring::DATABASE_FILE);
    if !path.exists() {
        bail!("there is no local database in {} to check", data_dir.display());
    }
    let checked = path.clone();
    let check = tokio::task::spawn_blocking(move || repair::check(&checked)).await??;
    if check.is_sound() {
        return out.value(&json!({ "status": "sound" }), "the local database is sound");
    }
    let now = trackflow_store::SystemClock.now().as_millis();
    let rebuilt = tokio::task::spawn_blocking(move || repair::rebuild(&path, now)).await??;
    let mut human = vec![format!(
        "the local database was damaged ({}); rebuilt it, keeping {} change(s) not yet sent; the damaged \
         file is {}",
        check.problems.first().map_or("", String::as_str),
        rebuilt.operations_kept,
        rebuilt.damaged_copy.display()
    )];
    for (table, rows) in &rebuilt.unreadable {
        human.push(match table.as_str() {
            "pending_operations" => format!("lost: {rows} change(s) not yet sent could not be read"),
            other => format!("lost: {rows} unreadable row(s) of {other}"),
        });
    }
    let engine = SyncEngine::open(data_dir, options(settings, None)).await?;
    let sessions: &dyn SessionStorage = engine.module.resolve_ref();
    let signed_in = can_sync(sessions.load().await?.as_ref());
    let synced = if signed_in { Some(sync_until_settled(&engine, out).await) } else { None };
    engine.shutdown().await;
    let unreadable: serde_json::Map<String, serde_json::Value> =
        rebuilt.unreadable.iter().map(|(table, rows)| (table.clone(), (*rows).into())).collect();
    let mut value = json!({
        "status": "rebuilt",
        "problems": check.problems,
        "operations_kept": rebuilt.operations_kept,
        "rows_replayed": rebuilt.rows_replayed,
        "unreadable": unreadable,
        "damaged_copy": rebuilt.damaged_copy,
    });
    // What the sync brought: its state, or why the rest of the cache is not back yet.
    let synced = synced.map(|outcome| match outcome {
        Ok((state, _)) if !matches!(state.phase, SyncPhase::Offline | SyncPhase::Error) => Ok(state),
        Ok((state, _)) => Err(state.last_error.unwrap_or_else(|| "the server did not answer".into())),
        Err(error) => Err(format!("{error:#}")),
    });
    let state = match synced {
        None => {
            human.push(
                "not signed in: log in and run `trackflow sync` to fetch the rest from the server".into(),
            );
            None
        }
        Some(Ok(state)) => {
            human.push(state.line());
            Some(state)
        }
        Some(Err(why)) => bail!(
            "{}; fetching the rest from the server failed ({why}): run `trackflow sync` later",
            human.join("; ")
        ),
    };
    value["sync"] = serde_json::to_value(&state)?;
    out.value(&value, &human.join("\n"))
}

/// Why a sync that left `queue` behind did not finish: operations still queued that are not
/// parked as failed, how many and when they will be tried; `None` if only failed ones remain.
fn still_queued(queue: &[SyncOperation]) -> Option<String> {
    let (waiting, next) = waiting(queue);
    if waiting == 0 {
        return None;
    }
    let why = match next {
        Some(at) => format!("the next attempt is at {}", super::output::http_date(at)),
        None => "they wait behind failed operations: retry or discard those (`trackflow queue`)".to_owned(),
    };
    Some(format!("{waiting} operation(s) still queued; {why}"))
}

/// How many operations of `queue` are not parked as failed, and the earliest next attempt of
/// those held back by backoff.
fn waiting(queue: &[SyncOperation]) -> (usize, Option<Timestamp>) {
    let waiting: Vec<_> = queue.iter().filter(|op| op.status != OperationStatus::Failed).collect();
    (waiting.len(), waiting.iter().filter_map(|op| op.next_attempt_at).min())
}

/// How long `trackflow sync` waits for operations held back by backoff.
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// Syncs, then waits for and sends again the operations held back by backoff whose next
/// attempt is due within [`SYNC_WAIT`], while the server answers. Returns the last state and
/// what is left queued.
async fn sync_until_settled(
    engine: &SyncEngine,
    out: Printer,
) -> anyhow::Result<(SyncState, Vec<SyncOperation>)> {
    let outbox: &dyn PendingOperationsRepository = engine.module.resolve_ref();
    let clock: &dyn Clock = engine.module.resolve_ref();
    let deadline = clock.now().as_millis() + i64::try_from(SYNC_WAIT.as_millis()).unwrap_or(i64::MAX);
    loop {
        let state = engine.sync_now().await;
        let queue = outbox.list(None).await?;
        if matches!(state.phase, SyncPhase::Offline | SyncPhase::Error) {
            return Ok((state, queue));
        }
        let (held, Some(next)) = waiting(&queue) else {
            return Ok((state, queue));
        };
        if next.as_millis() > deadline {
            return Ok((state, queue));
        }
        let wait =
            Duration::from_millis(u64::try_from(next.as_millis() - clock.now().as_millis()).unwrap_or(0));
        if !out.json {
            eprintln!(
                "waiting {:.1} s for {held} operation(s) held back after a failure",
                wait.as_secs_f64()
            );
        }
        tokio::time::sleep(wait).await;
    }
}

/// Draws the progress of pushes and pulls on stderr (nothing when it is not a terminal).
fn progress_bar(mut states: watch::Receiver<SyncState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:8} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            match state.progress {
                // Short syncs finish before a bar would help.
                Some(progress) if progress.total >= 2 => {
                    bar.set_message(phase_name(state.phase));
                    bar.set_length(progress.total);
                    bar.set_position(progress.done);
                }
                _ => {}
            }
        }
        bar.finish_and_clear();
    })
}

fn phase_name(phase: SyncPhase) -> &'static str {
    match phase {
        SyncPhase::Idle => "idle",
        SyncPhase::Pushing => "pushing",
        SyncPhase::Pulling => "pulling",
        SyncPhase::Offline => "offline",
        SyncPhase::Error => "error",
    }
}

impl Line for SyncState {
    fn line(&self) -> String {
        let mut line = format!(
            "{}: {} pending, {} failed, {} open conflicts",
            phase_name(self.phase),
            self.pending,
            self.failed,
            self.conflicts
        );
        if let Some(progress) = self.progress {
            line.push_str(&format!(", {} of {} done", progress.done, progress.total));
        }
        if self.reverted > 0 {
            line.push_str(&format!(
                ", {} refused change(s) undone to match the server (see `trackflow queue`)",
                self.reverted
            ));
        }
        match self.last_successful_sync {
            Some(at) => line.push_str(&format!("; last synced {}", super::output::http_date(at))),
            None => line.push_str("; never synced"),
        }
        match self.upgrade_required {
            Some(0) => line.push_str(
                "; upgrade required: the server syncs with a newer schema version only \
                 (queued changes are kept for the upgraded app)",
            ),
            Some(version) => line.push_str(&format!(
                "; upgrade required: the server syncs with schema version {version} or later \
                 (queued changes are kept for the upgraded app)"
            )),
            None => {}
        }
        if let Some(error) = &self.last_error {
            line.push_str(&format!("; last error: {error}"));
        }
        line
    }
}

/// `trackflow watch`: the engine in the foreground, syncing on its own, printing each state.
pub(super) async fn watch(data_dir: &Path, settings: &Settings, out: Printer) -> anyhow::Result<()> {
    let mut options = options(settings, Some(settings.sync_interval));
    // Writes made by other processes (another `trackflow` command) wake nothing here: the
    // processor finds them at its idle poll, so poll often while someone watches.
    options.upstream.idle_poll = WATCH_IDLE_POLL;
    let mut engine = SyncEngine::open(data_dir, options).await?;
    require_sign_in(&engine, settings).await?;
    let mut states = engine.status();
    let mut changes = engine.changes();
    engine.status_provider().refresh_counts().await?;
    print_state(out, &states.borrow_and_update())?;
    // Whether the server's event stream is open (never, with realtime off). Watched before the
    // engine starts: a receiver taken later would count a connection made meanwhile as seen.
    let mut realtime = engine.realtime().map(|listener| listener.connected());
    engine.start().await;
    loop {
        tokio::select! {
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = states.borrow_and_update().clone();
                print_state(out, &state)?;
            }
            event = changes.next() => match event {
                Some(event) => print_changes(out, event)?,
                None => break,
            },
            Some(connected) = async {
                let receiver = realtime.as_mut()?;
                receiver.changed().await.ok()?;
                Some(*receiver.borrow_and_update())
            } => print_realtime(out, connected)?,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    engine.shutdown().await;
    Ok(())
}

/// Whether the server's event stream opens and says it is ready within a few seconds.
async fn realtime_opens(events: &dyn EventSource) -> bool {
    let ready = async {
        let mut stream = events.connect().await.ok()?;
        stream.next().await?.ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), ready).await, Ok(Some(ServerEvent::Ready)))
}

/// One line per changed entity (what the UI of an app would redraw), or the number of events a
/// watcher that fell behind missed.
fn print_changes(out: Printer, event: Result<Arc<ChangeEvent>, Missed>) -> anyhow::Result<()> {
    let event = match event {
        Ok(event) => event,
        Err(missed) if out.json => {
            say!("{}", json!({ "missed_changes": missed.0 }));
            return Ok(());
        }
        Err(missed) => {
            say!("{missed}");
            return Ok(());
        }
    };
    for change in &event.changes {
        if out.json {
            say!("{}", json!({ "seq": event.seq, "change": change }));
        } else {
            let inside = change.parent.map(|p| format!(" in {} {}", p.entity_type, p.id)).unwrap_or_default();
            say!(
                "{} {} {}{inside} ({})",
                change.kind,
                change.entity.entity_type,
                change.entity.id,
                change.origin
            );
        }
    }
    Ok(())
}

/// Whether the server's event stream is open: pokes arrive at once, or only at the next poll.
fn print_realtime(out: Printer, connected: bool) -> anyhow::Result<()> {
    if out.json {
        say!("{}", json!({ "realtime_connected": connected }));
    } else if connected {
        say!("realtime: connected (changes arrive as they happen)");
    } else {
        say!("realtime: not connected (changes arrive at the next poll)");
    }
    Ok(())
}

fn print_state(out: Printer, state: &SyncState) -> anyhow::Result<()> {
    if out.json {
        // One object per line, for scripts reading the stream.
        say!("{}", serde_json::to_string(state)?);
    } else {
        say!("{}", state.line());
    }
    Ok(())
}

impl App<'_> {
    /// `trackflow status`: the sync state as this data directory records it (the phase from a
    /// quick look at the server when signed in), the outbox, conflicts and pull statistics.
    pub(super) async fn status(&self) -> anyhow::Result<()> {
        let outbox: &dyn PendingOperationsRepository = self.module.resolve_ref();
        let conflicts: &dyn ConflictRepository = self.module.resolve_ref();
        let downstream: &dyn DownstreamRepository = self.module.resolve_ref();
        let sessions: &dyn SessionStorage = self.module.resolve_ref();
        let counts = outbox.counts().await?;
        let health = health_of(&counts, self.now(), UpstreamOptions::default().stale_after);
        let open = conflicts.list(true).await?.len();
        let statistics = downstream.statistics().await?;
        let session = sessions.load().await?;
        let has_token = can_sync(session.as_ref());
        // One client for both looks at the server: whether it answers, then whether it still
        // takes the token (a token it refuses, expired or logged out elsewhere, is no sign-in).
        let remote = if has_token { self.quick_remote() } else { None };
        let answers = match &remote {
            Some(remote) => ReachabilityMonitor::new(remote.clone(), ProbeOptions::default()).check().await,
            None => false,
        };
        let token_refused = match &remote {
            Some(remote) if answers => {
                matches!(remote.scopes().await, Err(trackflow_domain::ports::RemoteError::Unauthorized(_)))
            }
            _ => false,
        };
        let signed_in = has_token && !token_refused;
        // Whether the server's event stream opens for this device now: with it, a running
        // `watch` or app hears of changes as they happen.
        let realtime = match &remote {
            Some(remote) if signed_in => realtime_opens(remote.as_ref()).await,
            _ => false,
        };
        let phase = if has_token && !answers { SyncPhase::Offline } else { SyncPhase::Idle };
        let state = SyncState {
            phase,
            pending: health.pending,
            failed: health.failed,
            conflicts: open as u64,
            last_successful_sync: statistics.iter().map(|s| s.last_sync_at).max(),
            last_error: health.last_error.clone(),
            progress: None,
            reverted: 0,
            // Known only from a request the server refused (`trackflow sync` reports it).
            upgrade_required: None,
        };
        let server = session.as_ref().and_then(|s| s.server_url.clone());
        if self.out.json {
            return self.out.value(
                &json!({
                    "state": state,
                    "signed_in": signed_in,
                    "token_refused": token_refused,
                    "realtime": realtime,
                    "server": server,
                    "user_id": session.as_ref().map(|s| s.user_id),
                    "upstream": health,
                    "open_conflicts": open,
                    "statistics": statistics,
                }),
                "",
            );
        }
        match (&server, signed_in) {
            (Some(server), true) if realtime => say!("signed in at {server}; realtime stream connects"),
            (Some(server), true) => {
                say!("signed in at {server}; realtime stream does not connect (changes arrive at each poll)")
            }
            (Some(server), false) if token_refused => {
                say!("not logged in: {server} refused this device's token (expired or logged out); run `trackflow login`")
            }
            _ => say!("not logged in (offline only)"),
        }
        say!("{}", state.line());
        say!(
            "upstream {}: {} pending, {} failed; {open} open conflicts",
            serde_json::to_value(health.status)?.as_str().unwrap_or("unknown"),
            health.pending,
            health.failed
        );
        self.out.many(&statistics, "never pulled")
    }

    /// A client of the configured server for a quick look: a couple of seconds at most.
    pub(super) fn quick_remote(&self) -> Option<Arc<trackflow_remote::HttpRemote>> {
        let options = trackflow_remote::RemoteOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
        };
        trackflow_remote::HttpRemote::new(self.module.resolve(), &options).ok().map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::{EntityRef, Hlc, OperationKind, SyncEntity};

    fn op(status: OperationStatus, next_attempt_at: Option<Timestamp>) -> SyncOperation {
        trackflow_music::install().expect("the music registry installs");
        let entity = EntityRef::new(trackflow_music::Project::ENTITY_TYPE, uuid::Uuid::now_v7());
        let mut op = SyncOperation::new(
            entity,
            OperationKind::Update,
            Default::default(),
            Hlc::ZERO,
            1,
            vec![],
            Timestamp(0),
        );
        op.status = status;
        op.next_attempt_at = next_attempt_at;
        op
    }

    #[test]
    fn sync_succeeds_only_when_nothing_but_failed_operations_is_left() {
        assert_eq!(still_queued(&[]), None);
        assert_eq!(
            still_queued(&[op(OperationStatus::Failed, None)]),
            None,
            "failed ones are listed, not waited for"
        );
        let held = [
            op(OperationStatus::Pending, Some(Timestamp(1_800_000_000_000))),
            op(OperationStatus::Failed, None),
        ];
        assert_eq!(
            still_queued(&held).as_deref(),
            Some("1 operation(s) still queued; the next attempt is at Fri, 15 Jan 2027 08:00:00 GMT")
        );
        let behind = [op(OperationStatus::Pending, None), op(OperationStatus::InFlight, None)];
        let message = still_queued(&behind).expect("not settled");
        assert!(
            message.starts_with("2 operation(s) still queued; they wait behind failed operations"),
            "{message}"
        );
    }

    #[test]
    fn a_state_line_says_when_the_app_must_be_upgraded() {
        let state = SyncState {
            phase: SyncPhase::Error,
            pending: 1,
            upgrade_required: Some(2),
            ..SyncState::default()
        };
        let line = state.line();
        assert!(line.starts_with("error: 1 pending"), "{line}");
        assert!(
            line.contains("; upgrade required: the server syncs with schema version 2 or later"),
            "{line}"
        );
        assert!(!SyncState::default().line().contains("upgrade"));
    }
}
