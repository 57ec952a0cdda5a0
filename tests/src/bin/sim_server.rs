//! A sync server process for the seeded simulation: the reference server with the music model,
//! over a SQLite file or a PostgreSQL URL, that appends every push result to a log file (one
//! `trackflow_tests::sim::PushLog` JSON line each, written after the push committed) so the
//! driver can check that no mutation was applied twice. On PostgreSQL, pokes reach the other
//! instances on the same database. It prints `listening on http://ADDR` on stderr once it
//! accepts connections, and runs until it is killed.
//!
//! Usage: `trackflow-sim-server DATABASE LISTEN_ADDR BLOB_DIR PUSH_LOG`

use async_trait::async_trait;
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};
use trackflow_domain::{
    entities::Scope,
    ports::{Account, PokeRelay, Purged, Retention, ServerStore, ServerStoreError, StoredToken},
    protocol::{MutationOutcome, PullRequest, PullResponse, PushRequest, PushResponse, ScopeHead},
    BlobHash, EntityRef, Timestamp, UserId,
};
use trackflow_server::{AppState, LocalPokeRelay, RunningServer, ServerConfig};
use trackflow_server_store::{DieselServerStore, FsBlobStorage};
use trackflow_tests::sim::PushLog;
use uuid::Uuid;

/// The store, logging what each push did (and, with `TRACKFLOW_SIM_LOG` set, what each pull
/// answered, to `PUSH_LOG.pulls`).
struct Logged {
    inner: DieselServerStore,
    log: Mutex<std::fs::File>,
    pulls: Option<Mutex<std::fs::File>>,
}

fn entry(user: UserId, mutation: Uuid, outcome: &MutationOutcome) -> PushLog {
    let (name, version, code) = match outcome {
        MutationOutcome::Applied { version } => ("applied", *version, None),
        MutationOutcome::Conflict { server, .. } => ("conflict", server.version, None),
        MutationOutcome::Rejected { code, .. } => ("rejected", 0, Some(code.clone())),
        MutationOutcome::Duplicate { version, .. } => ("duplicate", *version, None),
    };
    PushLog { user: user.as_uuid(), mutation, outcome: name.to_owned(), version, code }
}

#[async_trait]
impl ServerStore for Logged {
    async fn create_account(&self, account: Account) -> Result<(), ServerStoreError> {
        self.inner.create_account(account).await
    }

    async fn find_account(&self, email: &str) -> Result<Option<Account>, ServerStoreError> {
        self.inner.find_account(email).await
    }

    async fn save_token(&self, token: StoredToken) -> Result<(), ServerStoreError> {
        self.inner.save_token(token).await
    }

    async fn user_for_token(&self, hash: &str, now: Timestamp) -> Result<Option<UserId>, ServerStoreError> {
        self.inner.user_for_token(hash, now).await
    }

    async fn revoke_token(&self, hash: &str) -> Result<(), ServerStoreError> {
        self.inner.revoke_token(hash).await
    }

    async fn push(&self, user: UserId, request: PushRequest) -> Result<PushResponse, ServerStoreError> {
        let response = self.inner.push(user, request).await?;
        let mut lines = String::new();
        for result in &response.results {
            let line = serde_json::to_string(&entry(user, result.id.as_uuid(), &result.outcome))
                .expect("a log entry serializes");
            lines.push_str(&line);
            lines.push('\n');
        }
        // One write per push: a kill never leaves half a line. A failed write fails the run.
        self.log.lock().expect("log").write_all(lines.as_bytes()).expect("append to the push log");
        Ok(response)
    }

    async fn pull(&self, user: UserId, request: PullRequest) -> Result<PullResponse, ServerStoreError> {
        let Some(pulls) = &self.pulls else { return self.inner.pull(user, request).await };
        let (scope, cursor) = (request.scope.clone(), request.cursor.clone());
        let response = self.inner.pull(user, request).await?;
        if let PullResponse::Changes { changes, next_cursor, has_more, .. } = &response {
            let changes: Vec<(Uuid, i64, bool)> =
                changes.iter().map(|c| (c.entity_id, c.version, c.deleted)).collect();
            let line = serde_json::json!({
                "user": user.as_uuid(), "scope": scope, "cursor": cursor, "next": next_cursor,
                "more": has_more, "changes": changes,
            });
            writeln!(pulls.lock().expect("log"), "{line}").expect("append to the pull log");
        }
        Ok(response)
    }

    async fn purge(&self, now: Timestamp, retention: Retention) -> Result<Purged, ServerStoreError> {
        self.inner.purge(now, retention).await
    }

    async fn scopes(&self, user: UserId) -> Result<Vec<ScopeHead>, ServerStoreError> {
        self.inner.scopes(user).await
    }

    async fn ping(&self) -> Result<(), ServerStoreError> {
        self.inner.ping().await
    }

    async fn scopes_of(&self, ids: Vec<Uuid>) -> Result<BTreeSet<Scope>, ServerStoreError> {
        self.inner.scopes_of(ids).await
    }

    async fn audience(
        &self,
        scopes: BTreeSet<Scope>,
    ) -> Result<BTreeMap<Scope, BTreeSet<UserId>>, ServerStoreError> {
        self.inner.audience(scopes).await
    }

    async fn grant_blob(&self, user: UserId, hash: BlobHash, now: Timestamp) -> Result<(), ServerStoreError> {
        self.inner.grant_blob(user, hash, now).await
    }

    async fn may_use_blob(&self, user: UserId, hash: BlobHash) -> Result<bool, ServerStoreError> {
        self.inner.may_use_blob(user, hash).await
    }

    async fn entity_file(
        &self,
        user: UserId,
        entity: EntityRef,
    ) -> Result<Option<BlobHash>, ServerStoreError> {
        self.inner.entity_file(user, entity).await
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, listen, blobs, log] = &args[..] else {
        anyhow::bail!("usage: trackflow-sim-server DATABASE LISTEN_ADDR BLOB_DIR PUSH_LOG");
    };
    trackflow_music::install()?;
    let (db, blobs) = (db.clone(), PathBuf::from(blobs));
    let (store, blobs) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((DieselServerStore::open(&db, 4)?, FsBlobStorage::open(blobs)?))
    })
    .await??;
    let relay: Arc<dyn PokeRelay> = match store.poke_relay() {
        Some(relay) => Arc::new(relay),
        None => Arc::new(LocalPokeRelay::default()),
    };
    let pull_log = format!("{log}.pulls");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let pulls = match std::env::var_os("TRACKFLOW_SIM_LOG") {
        Some(_) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(pull_log)?)),
        None => None,
    };
    let store = Logged { inner: store, log: Mutex::new(log), pulls };
    let state =
        AppState::with_relay(Arc::new(store), ServerConfig::default(), relay).with_blobs(Arc::new(blobs));
    let server = RunningServer::start(listen.parse()?, state).await?;
    eprintln!("listening on {}", server.url());
    std::future::pending::<()>().await;
    Ok(())
}
