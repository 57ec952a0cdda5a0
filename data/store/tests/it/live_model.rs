//! Live queries never miss a change: random local writes, pulls and forgotten scopes on
//! projects, tracks and grants, with live queries open on every project (its row, its tracks)
//! and on what each user is a member of. After every step, each query's latest result must
//! equal the query read directly: a change the query was not told of would leave it behind.

use super::{pulled, Fixture};
use futures_util::FutureExt;
use proptest::prelude::*;
use trackflow_domain::{
    ports::{ApplyPlan, ConflictPolicies, DownstreamRepository, LiveResults, Repository},
    sync::LiveQuery,
    CollaboratorRole, EntityType, ScopeId, SyncEntity, Timestamp, UserId,
};
use trackflow_music::{AudioTrack, AudioTrackPatch, Project, ProjectCollaborator, ProjectPatch};
use trackflow_store::{LocalStore, SqliteDownstreamRepository, SqliteRepository};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// Users: the first owns what is created locally, the second what is pulled.
const USERS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    CreateProject,
    RenameProject(usize),
    DeleteProject(usize),
    CreateTrack(usize),
    RenameTrack(usize),
    DeleteTrack(usize),
    Grant(usize, usize),
    Revoke(usize),
    /// A project of another owner and its tracks arrive by a pull, shared with a user.
    PullShared(usize, usize),
    /// The device forgets a project's scope (its user lost access).
    Forget(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let any = 0..8usize;
    prop_oneof![
        2 => Just(Step::CreateProject),
        1 => any.clone().prop_map(Step::RenameProject),
        1 => any.clone().prop_map(Step::DeleteProject),
        2 => any.clone().prop_map(Step::CreateTrack),
        1 => any.clone().prop_map(Step::RenameTrack),
        1 => any.clone().prop_map(Step::DeleteTrack),
        1 => (any.clone(), 0..USERS).prop_map(|(p, u)| Step::Grant(p, u)),
        1 => any.clone().prop_map(Step::Revoke),
        1 => (1..4usize, 0..USERS).prop_map(|(n, u)| Step::PullShared(n, u)),
        1 => any.clone().prop_map(Step::Forget),
    ]
}

/// The `i`-th of `ids`, round the list; none while it is empty.
fn pick<T: Copy>(ids: &[T], i: usize) -> Option<T> {
    (!ids.is_empty()).then(|| ids[i % ids.len()])
}

/// An open live query and the last result it gave.
struct Watched<E> {
    query: LiveQuery,
    live: Box<dyn LiveResults<E>>,
    last: Vec<E>,
}

impl<E: SyncEntity + PartialEq + std::fmt::Debug> Watched<E> {
    async fn open(repository: &SqliteRepository<E>, query: LiveQuery) -> Self {
        let mut live = repository.subscribe(query).await.expect("subscribe");
        let last = live.next().await.expect("open").expect("first result");
        Self { query, live, last }
    }

    /// Takes every result waiting (each read runs in place on the multi-thread runtime), then
    /// checks the latest against a direct read.
    async fn check(&mut self, repository: &SqliteRepository<E>, step: usize) -> Result<(), TestCaseError> {
        while let Some(result) = self.live.next().now_or_never() {
            self.last = result.expect("open").expect("result");
        }
        let direct = match self.query {
            LiveQuery::Get(id) => repository.get(id.into()).await.expect("get").into_iter().collect(),
            LiveQuery::ByParent(parent) => repository.list_by_parent(parent).await.expect("list"),
            LiveQuery::By(index, key) => repository.list_by(index, key).await.expect("list"),
        };
        prop_assert_eq!(&self.last, &direct, "{:?} after step {}", self.query, step);
        Ok(())
    }
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    super::music();
    let fx = Fixture::new().await;
    let store: &LocalStore = &fx.store;
    let projects = SqliteRepository::<Project>::new(store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(store.clone());
    let grants = SqliteRepository::<ProjectCollaborator>::new(store.clone());
    let downstream = SqliteDownstreamRepository::new(store.clone());
    let plan = ApplyPlan::new(EntityType::all().to_vec(), ConflictPolicies::default()).expect("plan");
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
    let mut member_of = Vec::new();
    for user in &users {
        member_of.push(Watched::open(&projects, LiveQuery::By(Project::BY_MEMBER, user.as_uuid())).await);
    }
    let (mut made, mut made_tracks, mut made_grants) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rows, mut lists) = (Vec::new(), Vec::new());
    for (number, step) in steps.into_iter().enumerate() {
        let mut new_projects = Vec::new();
        // Refused steps (what they name is gone) change nothing; the check still runs.
        match step {
            Step::CreateProject => {
                let project = Project::new(users[0], &format!("P{number}"), None, NOW).expect("valid");
                if let Ok(project) = projects.create(project).await {
                    new_projects.push(project.id());
                }
            }
            Step::RenameProject(i) => {
                if let Some(id) = pick(&made, i) {
                    let patch =
                        ProjectPatch { name: Some(format!("Renamed {number}")), ..Default::default() };
                    let _ = projects.update(id, patch).await;
                }
            }
            Step::DeleteProject(i) => {
                if let Some(id) = pick(&made, i) {
                    let _ = projects.delete(id).await;
                }
            }
            Step::CreateTrack(i) => {
                if let Some(id) = pick(&made, i) {
                    let track = AudioTrack::new(id, users[0], &format!("T{number}"), 1_000, None, NOW);
                    if let Ok(track) = tracks.create(track.expect("valid")).await {
                        made_tracks.push(track.id());
                    }
                }
            }
            Step::RenameTrack(i) => {
                if let Some(id) = pick(&made_tracks, i) {
                    let patch =
                        AudioTrackPatch { name: Some(format!("Renamed {number}")), ..Default::default() };
                    let _ = tracks.update(id, patch).await;
                }
            }
            Step::DeleteTrack(i) => {
                if let Some(id) = pick(&made_tracks, i) {
                    let _ = tracks.delete(id).await;
                }
            }
            Step::Grant(i, u) => {
                if let Some(id) = pick(&made, i) {
                    let grant = ProjectCollaborator::new(id, users[u], CollaboratorRole::Viewer, NOW);
                    if let Ok(grant) = grants.create(grant.expect("valid")).await {
                        made_grants.push(grant.id());
                    }
                }
            }
            Step::Revoke(i) => {
                if let Some(id) = pick(&made_grants, i) {
                    let _ = grants.delete(id).await;
                }
            }
            Step::PullShared(n, u) => {
                let owner = users[1];
                let project = Project::new(owner, &format!("Pulled {number}"), None, NOW).expect("valid");
                let grant = ProjectCollaborator::new(project.id(), users[u], CollaboratorRole::Editor, NOW);
                let mut page = vec![pulled(&project, 1, 5), pulled(&grant.expect("valid"), 1, 5)];
                for t in 0..n {
                    let track =
                        AudioTrack::new(project.id(), owner, &format!("Pulled {t}"), 1_000, None, NOW);
                    page.push(pulled(&track.expect("valid"), 1, 5));
                }
                downstream
                    .apply_page("all", page, Vec::new(), format!("c{number}"), &plan)
                    .await
                    .expect("apply");
                new_projects.push(project.id());
            }
            Step::Forget(i) => {
                if let Some(id) = pick(&made, i) {
                    downstream.forget_scope(ScopeId::from_uuid(id.as_uuid())).await.expect("forget");
                }
            }
        }
        for id in new_projects {
            made.push(id);
            rows.push(Watched::open(&projects, LiveQuery::Get(id.as_uuid())).await);
            lists.push(Watched::open(&tracks, LiveQuery::ByParent(id.as_uuid())).await);
        }
        for watched in &mut member_of {
            watched.check(&projects, number).await?;
        }
        for watched in &mut rows {
            watched.check(&projects, number).await?;
        }
        for watched in &mut lists {
            watched.check(&tracks, number).await?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn live_queries_always_catch_up_with_a_direct_read(steps in prop::collection::vec(step(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(steps))?;
    }
}
