//! The `SyncDataManager`: pulls a scope's changes after its cursor, page by page, and hands each
//! page to the [`DownstreamRepository`], which merges it into the local tables together with the
//! new cursor in one transaction, as the per-entity sync use cases' plan says. A failed pull
//! leaves cursor and data as they were: every page applied so far is complete and its cursor
//! stored, and the next pull resumes there.

use crate::entities::SyncUseCases;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use trackflow_domain::{
    entities::Scope,
    ports::{
        ApplyCounts, Clock, DownstreamRepository, DownstreamSync, NoProgress, PullSummary, RemoteDataSource,
        RemoteError, SyncError, SyncProgressObserver, SyncStatistics,
    },
    protocol::{PullRequest, PullResponse, ScopeHead, DEFAULT_PULL_LIMIT, PEOPLE_SCOPE},
    EntityType, RepositoryError, ScopeId, Timestamp,
};

/// How the manager pulls.
#[derive(Debug, Clone)]
pub struct SyncDataOptions {
    /// Rows per page.
    pub page_size: u32,
    /// The shortest time between periodic pulls of a scope; forced pulls ignore it.
    pub min_interval: Duration,
    /// The per-entity sync use cases, which decide how each type's rows are applied.
    pub use_cases: SyncUseCases,
    /// How many project scopes pull at once.
    pub concurrency: usize,
}

impl Default for SyncDataOptions {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PULL_LIMIT,
            min_interval: trackflow_domain::ports::DEFAULT_PULL_INTERVAL,
            use_cases: SyncUseCases::default(),
            concurrency: 4,
        }
    }
}

/// Why a pull failed. Nothing of the failed page was stored.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The server could not be asked, or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The local store failed.
    #[error(transparent)]
    Local(#[from] RepositoryError),
    /// The server answered reset to a pull from the start.
    #[error("the server answered reset to a pull from the start")]
    ResetLoop,
}

/// What one pull of a scope did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullReport {
    /// The scope.
    pub scope: String,
    /// `false` when the pull was not due (periodic, inside the minimum interval) or the scope
    /// was up to date.
    pub ran: bool,
    /// The scope's head had not moved since it was last pulled to the end: nothing was asked.
    pub up_to_date: bool,
    /// Pages applied.
    pub pages: u64,
    /// Whether the server answered reset and the scope was pulled again from the start.
    pub reset: bool,
    /// Local rows removed because the user can no longer read the scope (a project they were
    /// removed from, or that is gone).
    pub removed: u64,
    /// What the pages did, per entity type.
    pub counts: BTreeMap<EntityType, ApplyCounts>,
}

/// Pulls remote changes into the local store.
pub struct SyncDataManager {
    remote: Arc<dyn RemoteDataSource>,
    store: Arc<dyn DownstreamRepository>,
    clock: Arc<dyn Clock>,
    options: SyncDataOptions,
}

impl SyncDataManager {
    /// A manager pulling from `remote` into `store`.
    pub fn new(
        remote: Arc<dyn RemoteDataSource>,
        store: Arc<dyn DownstreamRepository>,
        clock: Arc<dyn Clock>,
        options: SyncDataOptions,
    ) -> Self {
        Self { remote, store, clock, options }
    }

    /// Pulls every scope the user may read (when due, or always if `force`): the people scope
    /// first, then the projects, [`concurrency`](SyncDataOptions::concurrency) at a time. Each
    /// scope has its own cursor, and one failing leaves the others to complete; the answer holds
    /// each scope's outcome. A scope whose head has not moved since it was last pulled to the
    /// end is not asked for: it has nothing new. Fails as a whole only when the scopes cannot
    /// be listed.
    pub async fn pull(&self, force: bool) -> Result<Vec<(String, Result<PullReport, PullError>)>, PullError> {
        self.pull_with(force, &NoProgress).await
    }

    /// [`pull`](Self::pull), telling `progress` how many of the listed scopes are done.
    pub async fn pull_with(
        &self,
        force: bool,
        progress: &dyn SyncProgressObserver,
    ) -> Result<Vec<(String, Result<PullReport, PullError>)>, PullError> {
        let scopes = self.remote.scopes().await?.scopes;
        let total = scopes.len() as u64;
        let done = AtomicU64::new(0);
        let finished = || progress.progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        let lost = self.lost(&scopes).await?;
        let (people, projects): (Vec<ScopeHead>, Vec<ScopeHead>) =
            scopes.into_iter().partition(|s| s.scope == PEOPLE_SCOPE);
        let mut outcomes = Vec::with_capacity(people.len() + projects.len());
        for ScopeHead { scope, head } in people {
            let outcome = self.pull_at(&scope, Some(head), force).await;
            finished();
            outcomes.push((scope, outcome));
        }
        let concurrent: Vec<(String, Result<PullReport, PullError>)> = stream::iter(projects)
            .map(|ScopeHead { scope, head }| async move {
                let outcome = self.pull_at(&scope, Some(head), force).await;
                finished();
                (scope, outcome)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        outcomes.extend(concurrent);
        for root in lost {
            let scope = Scope::Shared(root).to_string();
            let outcome = self.store.forget_scope(root).await.map_err(PullError::from).map(|removed| {
                tracing::info!(%scope, removed, "no longer readable; its local rows are removed");
                PullReport { scope: scope.clone(), ran: true, removed, ..PullReport::default() }
            });
            outcomes.push((scope, outcome));
        }
        if let Some(mark) = self.store.people_left().await? {
            outcomes.push((PEOPLE_SCOPE.to_owned(), self.recount_people(mark).await));
        }
        Ok(outcomes)
    }

    /// Pulls the user's records from the start and forgets those that no longer come: someone
    /// may have left the people the user may read (see
    /// [`DownstreamRepository::people_left`]).
    async fn recount_people(&self, mark: u64) -> Result<PullReport, PullError> {
        self.store.restart_people().await?;
        let mut report = self.pull_at(PEOPLE_SCOPE, None, true).await?;
        report.removed = self.store.forget_unpulled_people(mark).await?;
        if report.removed > 0 {
            tracing::info!(removed = report.removed, "records of people no longer readable are removed");
        }
        Ok(report)
    }

    /// The shared scopes listed or pulled here before that the server no longer lists for the
    /// user: they were removed from them, or their roots are gone. This replica must not keep
    /// showing them. Scopes listed for the first time are recorded (see
    /// [`DownstreamRepository::listed`]); a sync that lists nothing new writes nothing.
    async fn lost(&self, listed: &[ScopeHead]) -> Result<Vec<ScopeId>, PullError> {
        let pulled = self.store.pulled_scopes().await?;
        let known: HashSet<&str> = pulled.iter().map(String::as_str).collect();
        let new: Vec<String> =
            listed.iter().filter(|s| !known.contains(s.scope.as_str())).map(|s| s.scope.clone()).collect();
        if !new.is_empty() {
            self.store.listed(new).await?;
        }
        let listed: HashSet<&str> = listed.iter().map(|s| s.scope.as_str()).collect();
        Ok(pulled
            .iter()
            .filter(|scope| !listed.contains(scope.as_str()))
            .filter_map(|scope| match scope.parse::<Scope>() {
                Ok(Scope::Shared(root)) => Some(root),
                _ => None,
            })
            .collect())
    }

    /// Pulls `scope` until the server has nothing more: when due, or always if `force`.
    pub async fn pull_scope(&self, scope: &str, force: bool) -> Result<PullReport, PullError> {
        self.pull_at(scope, None, force).await
    }

    /// [`pull_scope`](Self::pull_scope) for a scope whose server head is `head`, if known.
    #[tracing::instrument(skip(self))]
    async fn pull_at(&self, scope: &str, head: Option<i64>, force: bool) -> Result<PullReport, PullError> {
        let started = self.clock.now();
        let mut report = PullReport { scope: scope.to_owned(), ..PullReport::default() };
        let mut sync = self.store.scope(scope).await?;
        sync.min_interval = self.options.min_interval;
        if head.is_some() && sync.head == head && sync.cursor.is_some() {
            report.up_to_date = true;
            return Ok(report);
        }
        if !force && !sync.due(started) {
            return Ok(report);
        }
        report.ran = true;
        match self.pages(scope, sync.cursor, &mut report).await {
            Ok(()) => {
                let ended = self.clock.now();
                let stats = statistics(&report, started, ended);
                self.store.finish(scope, ended, head, stats).await?;
                Ok(report)
            }
            Err(error) => {
                tracing::warn!(%error, scope, "pull failed; cursor and data kept");
                if let Err(recording) = self.store.failed(scope).await {
                    tracing::warn!(error = %recording, "could not record the failed pull");
                }
                Err(error)
            }
        }
    }

    /// Pulls and applies pages from `cursor` until the server has no more. The next page is
    /// asked for as soon as a page's answer names it, and fetched while this one is applied: the
    /// server and the decoding of its answer work on other threads meanwhile, so a long pull
    /// costs about the slower of the two rather than their sum. Nothing of a fetched page is
    /// stored until it is applied; a failure drops (and so cancels) the fetch in flight.
    async fn pages(
        &self,
        scope: &str,
        mut cursor: Option<String>,
        report: &mut PullReport,
    ) -> Result<(), PullError> {
        let mut next = self.fetch(scope, cursor.clone());
        loop {
            match next.answer().await? {
                PullResponse::Changes { changes, unknown, next_cursor, has_more } => {
                    tracing::debug!(
                        scope,
                        from = ?cursor,
                        to = %next_cursor,
                        changes = ?changes.iter().map(|c| (c.entity_id, c.version, c.deleted)).collect::<Vec<_>>(),
                        "page pulled"
                    );
                    if !unknown.is_empty() {
                        let types: BTreeSet<&str> = unknown.iter().map(|u| u.entity_type.as_str()).collect();
                        tracing::info!(scope, rows = unknown.len(), ?types, "kept aside rows of types this build does not know: a newer server's; an upgrade lets them in");
                    }
                    let following = has_more.then(|| self.fetch(scope, Some(next_cursor.clone())));
                    let counts = self
                        .store
                        .apply_page(
                            scope,
                            changes,
                            unknown,
                            next_cursor.clone(),
                            self.options.use_cases.plan(),
                        )
                        .await?;
                    for (entity_type, c) in counts {
                        report.counts.entry(entity_type).or_default().add(c);
                    }
                    report.pages += 1;
                    cursor = Some(next_cursor);
                    match following {
                        Some(following) => next = following,
                        None => return Ok(()),
                    }
                }
                PullResponse::Reset if cursor.is_none() => return Err(PullError::ResetLoop),
                PullResponse::Reset => {
                    // Start over; what is stored stays, and pulled rows merge into it.
                    tracing::info!(scope, "the server answered reset; pulling the scope from the start");
                    self.store.reset(scope).await?;
                    report.reset = true;
                    cursor = None;
                    next = self.fetch(scope, None);
                }
            }
        }
    }

    /// Starts fetching the page of `scope` after `cursor` in a task of its own, in the caller's
    /// span. Dropping the answer cancels the fetch.
    fn fetch(&self, scope: &str, cursor: Option<String>) -> PageFetch {
        let remote = Arc::clone(&self.remote);
        let request = PullRequest { cursor, limit: self.options.page_size, scope: Some(scope.to_owned()) };
        PageFetch(AbortOnDropHandle::new(tokio::spawn(
            async move { remote.pull(request).await }.in_current_span(),
        )))
    }
}

/// A page being fetched (see [`SyncDataManager::fetch`]).
struct PageFetch(AbortOnDropHandle<Result<PullResponse, RemoteError>>);

impl PageFetch {
    /// The server's answer, once it has come.
    async fn answer(self) -> Result<PullResponse, RemoteError> {
        match self.0.await {
            Ok(answer) => answer,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            // Only a runtime shutting down cancels a fetch that is still awaited.
            Err(join) => Err(RemoteError::Transient {
                message: format!("the page fetch was cancelled: {join}"),
                retry_after_ms: None,
            }),
        }
    }
}

impl From<PullError> for SyncError {
    fn from(error: PullError) -> Self {
        match error {
            PullError::Remote(error) => SyncError::Remote(error),
            PullError::Local(error) => SyncError::Local(error),
            PullError::ResetLoop => SyncError::Protocol(PullError::ResetLoop.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl DownstreamSync for SyncDataManager {
    async fn pull(
        &self,
        force: bool,
        progress: Arc<dyn SyncProgressObserver>,
    ) -> Result<PullSummary, SyncError> {
        let outcomes = self.pull_with(force, progress.as_ref()).await?;
        Ok(summarize(&outcomes))
    }
}

/// One summary of every scope's outcome.
fn summarize(outcomes: &[(String, Result<PullReport, PullError>)]) -> PullSummary {
    let mut summary = PullSummary::default();
    for (scope, outcome) in outcomes {
        match outcome {
            Ok(report) => {
                summary.pulled += u64::from(report.ran);
                for counts in report.counts.values() {
                    summary.applied += counts.applied;
                    summary.conflicts += counts.conflicts;
                    summary.reverted += counts.reverted;
                }
            }
            Err(error) => {
                summary.failed += 1;
                summary.unreachable |= matches!(error, PullError::Remote(RemoteError::Unreachable { .. }));
                if let PullError::Remote(RemoteError::UpgradeRequired { min_version, .. }) = error {
                    summary.upgrade_required = Some(*min_version);
                }
                summary.first_error.get_or_insert_with(|| format!("{scope}: {error}"));
            }
        }
    }
    summary
}

/// The statistics of a completed pull, one entry per entity type it touched.
fn statistics(report: &PullReport, started: Timestamp, ended: Timestamp) -> Vec<SyncStatistics> {
    let duration_ms = u64::try_from(ended.as_millis() - started.as_millis()).unwrap_or(0);
    report
        .counts
        .iter()
        .map(|(entity_type, counts)| SyncStatistics {
            scope: report.scope.clone(),
            entity_type: *entity_type,
            last_sync_at: ended,
            duration_ms,
            counts: *counts,
            errors: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use trackflow_domain::ports::{MockClock, MockDownstreamRepository, MockRemoteDataSource, ScopeSync};

    const SCOPE: &str = "project:00000000-0000-0000-0000-000000000001";
    const WAIT: Duration = Duration::from_secs(10);

    fn page(next_cursor: &str, has_more: bool) -> PullResponse {
        PullResponse::Changes {
            changes: Vec::new(),
            unknown: Vec::new(),
            next_cursor: next_cursor.into(),
            has_more,
        }
    }

    /// A store that has never pulled the scope.
    fn never_pulled() -> MockDownstreamRepository {
        let mut store = MockDownstreamRepository::new();
        store.expect_scope().returning(|scope| {
            Ok(ScopeSync {
                scope: scope.to_owned(),
                cursor: None,
                last_sync_at: None,
                min_interval: Duration::ZERO,
                head: None,
            })
        });
        store
    }

    fn manager(remote: MockRemoteDataSource, store: MockDownstreamRepository) -> SyncDataManager {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(Timestamp(1_800_000_000_000));
        SyncDataManager::new(Arc::new(remote), Arc::new(store), Arc::new(clock), SyncDataOptions::default())
    }

    /// A scope of two pages: the first is applied only once the second has been asked for,
    /// which can happen only if the manager fetches it while the first is being applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_page_is_fetched_while_a_page_is_applied() {
        let (asked, asked_for) = mpsc::channel::<Option<String>>();
        let mut remote = MockRemoteDataSource::new();
        remote.expect_pull().times(2).returning(move |request| {
            let answer = match request.cursor.as_deref() {
                None => page("1", true),
                _ => page("2", false),
            };
            asked.send(request.cursor).expect("the test is waiting");
            Ok(answer)
        });
        let mut store = never_pulled();
        store.expect_apply_page().times(2).returning(move |_, _, _, next_cursor, _| {
            if next_cursor == "1" {
                // Blocks this page's application until the second request has gone out.
                let first = asked_for.recv_timeout(WAIT).expect("the first page was asked for");
                assert_eq!(first, None);
                let second = asked_for.recv_timeout(WAIT).expect("the second page was asked for meanwhile");
                assert_eq!(second.as_deref(), Some("1"));
            }
            Ok(BTreeMap::new())
        });
        store.expect_finish().times(1).returning(|_, _, _, _| Ok(()));
        let manager = manager(remote, store);

        let report = manager.pull_scope(SCOPE, true).await.expect("the pull completes");
        assert_eq!(report.pages, 2);
    }

    /// A page that fails to apply ends the pull with its error, although the next page was
    /// already being fetched: no later page is applied, and the pull does not finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_failing_to_apply_ends_the_pull_and_nothing_after_it_is_applied() {
        let mut remote = MockRemoteDataSource::new();
        remote.expect_pull().returning(|request| {
            Ok(match request.cursor.as_deref() {
                None => page("1", true),
                _ => page("2", false),
            })
        });
        let mut store = never_pulled();
        store.expect_apply_page().times(1).returning(|_, _, _, _, _| {
            Err(RepositoryError::Storage { message: "injected failure".into(), transient: false })
        });
        store.expect_failed().times(1).returning(|_| Ok(()));
        store.expect_finish().never();
        let manager = manager(remote, store);

        let error = manager.pull_scope(SCOPE, true).await.expect_err("the pull fails");
        assert!(matches!(error, PullError::Local(RepositoryError::Storage { .. })), "{error:?}");
    }
}
