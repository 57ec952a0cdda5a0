//! Model-based test: random sequences of project and track writes run against the real store
//! and against a plain in-memory model of what the repositories promise. After every step the
//! reads, the outbox and the error kinds must agree with the model.

use super::Fixture;
use proptest::prelude::*;
use trackflow_domain::{
    ports::{PendingOperationsRepository, Repository},
    OperationKind, RepositoryError, Timestamp, UserId,
};
use trackflow_music::{
    AudioComment, AudioTrack, AudioTrackId, AudioTrackPatch, Project, ProjectId, ProjectPatch,
};
use trackflow_store::{SqlitePendingOperationsRepository, SqliteRepository};

#[derive(Debug, Clone)]
enum Step {
    CreateProject(u8),
    RenameProject(usize, u8),
    DeleteProject(usize),
    CreateTrack(usize, u8),
    RenameTrack(usize, u8),
    DeleteTrack(usize),
    CommentOnTrack(usize),
}

fn step() -> impl Strategy<Value = Step> {
    // Few names, so renames to the current name (no-ops) happen.
    let name = 0u8..3;
    // Small indexes, so most steps hit an entity that exists.
    let index = 0usize..3;
    prop_oneof![
        2 => name.clone().prop_map(Step::CreateProject),
        2 => (index.clone(), name.clone()).prop_map(|(i, n)| Step::RenameProject(i, n)),
        1 => index.clone().prop_map(Step::DeleteProject),
        3 => (index.clone(), name.clone()).prop_map(|(i, n)| Step::CreateTrack(i, n)),
        2 => (index.clone(), name).prop_map(|(i, n)| Step::RenameTrack(i, n)),
        1 => index.clone().prop_map(Step::DeleteTrack),
        2 => index.prop_map(Step::CommentOnTrack),
    ]
}

#[derive(Default)]
struct Model {
    projects: Vec<(ProjectId, String, bool)>,
    tracks: Vec<(AudioTrackId, usize, String, bool)>,
    comments_per_track: Vec<usize>,
    queued: Vec<OperationKind>,
}

impl Model {
    fn project_visible(&self, p: usize) -> bool {
        self.projects.get(p).is_some_and(|(_, _, deleted)| !deleted)
    }

    fn track_visible(&self, t: usize) -> bool {
        self.tracks.get(t).is_some_and(|(_, p, _, deleted)| !deleted && self.project_visible(*p))
    }
}

/// What a step should do: `Ok(Some(kind))` queues an operation, `Ok(None)` changes nothing,
/// `Err(())` is refused as not found.
type Expected = Result<Option<OperationKind>, ()>;

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let fx = Fixture::new().await;
    let projects = SqliteRepository::<Project>::new(fx.store.clone());
    let tracks = SqliteRepository::<AudioTrack>::new(fx.store.clone());
    let outbox = SqlitePendingOperationsRepository::new(fx.store.clone());
    let comments = SqliteRepository::<AudioComment>::new(fx.store.clone());
    let owner = UserId::new();
    let mut model = Model::default();
    let now = Timestamp(0);
    let name = |n: u8| format!("name {n}");

    for (number, step) in steps.into_iter().enumerate() {
        let (expected, actual): (Expected, Result<(), RepositoryError>) = match step {
            Step::CreateProject(n) => {
                let p = Project::new(owner, &name(n), None, now).expect("valid");
                model.projects.push((p.id(), name(n), false));
                (Ok(Some(OperationKind::Create)), projects.create(p).await.map(drop))
            }
            Step::RenameProject(i, n) => {
                let Some((id, current, _)) = model.projects.get(i).cloned() else { continue };
                let expected = match model.project_visible(i) {
                    false => Err(()),
                    true if current == name(n) => Ok(None),
                    true => Ok(Some(OperationKind::Update)),
                };
                if expected.is_ok() {
                    model.projects[i].1 = name(n);
                }
                let patch = ProjectPatch { name: Some(name(n)), ..Default::default() };
                (expected, projects.update(id, patch).await.map(drop))
            }
            Step::DeleteProject(i) => {
                let Some((id, _, _)) = model.projects.get(i).cloned() else { continue };
                let expected =
                    if model.project_visible(i) { Ok(Some(OperationKind::Delete)) } else { Err(()) };
                if expected.is_ok() {
                    model.projects[i].2 = true;
                }
                (expected, projects.delete(id).await)
            }
            Step::CreateTrack(p, n) => {
                let Some((project_id, _, _)) = model.projects.get(p).cloned() else { continue };
                let track = AudioTrack::new(project_id, owner, &name(n), 1_000, None, now).expect("valid");
                let expected =
                    if model.project_visible(p) { Ok(Some(OperationKind::Create)) } else { Err(()) };
                if expected.is_ok() {
                    model.tracks.push((track.id(), p, name(n), false));
                    model.comments_per_track.push(0);
                }
                (expected, tracks.create(track).await.map(drop))
            }
            Step::RenameTrack(t, n) => {
                let Some((id, _, current, _)) = model.tracks.get(t).cloned() else { continue };
                let expected = match model.track_visible(t) {
                    false => Err(()),
                    true if current == name(n) => Ok(None),
                    true => Ok(Some(OperationKind::Update)),
                };
                if expected.is_ok() {
                    model.tracks[t].2 = name(n);
                }
                let patch = AudioTrackPatch { name: Some(name(n)), ..Default::default() };
                (expected, tracks.update(id, patch).await.map(drop))
            }
            Step::CommentOnTrack(t) => {
                let Some((track_id, p, _, _)) = model.tracks.get(t).cloned() else { continue };
                // Built against the track as it was created; the store checks what it holds now.
                let track = AudioTrack::restore(track_id, model.projects[p].0, owner, "t", 1_000, None, now)
                    .expect("valid");
                let comment = AudioComment::new(&track, owner, "nice", 500, now).expect("valid");
                let expected = if model.track_visible(t) { Ok(Some(OperationKind::Create)) } else { Err(()) };
                if expected.is_ok() {
                    model.comments_per_track[t] += 1;
                }
                (expected, comments.create(comment).await.map(drop))
            }
            Step::DeleteTrack(t) => {
                let Some((id, _, _, _)) = model.tracks.get(t).cloned() else { continue };
                let expected = if model.track_visible(t) { Ok(Some(OperationKind::Delete)) } else { Err(()) };
                if expected.is_ok() {
                    model.tracks[t].3 = true;
                }
                (expected, tracks.delete(id).await)
            }
        };
        match (&expected, &actual) {
            (Ok(kind), Ok(())) => model.queued.extend(*kind),
            (Err(()), Err(RepositoryError::NotFound(_))) => {}
            _ => prop_assert!(false, "step {number} {step:?}: expected {expected:?}, got {actual:?}"),
        }

        // Reads agree with the model: visible names, and nothing hidden.
        for (i, (id, name, _)) in model.projects.iter().enumerate() {
            let got = projects.get(*id).await.expect("get").map(|p| p.name().to_owned());
            prop_assert_eq!(
                got,
                model.project_visible(i).then(|| name.clone()),
                "project {} after step {}",
                i,
                number
            );
            let listed: Vec<String> = tracks
                .list_by_parent((*id).into())
                .await
                .expect("list")
                .iter()
                .map(|t| t.name().to_owned())
                .collect();
            let expected: Vec<String> = model
                .tracks
                .iter()
                .enumerate()
                .filter(|(t, (_, p, _, _))| *p == i && model.track_visible(*t))
                .map(|(_, (_, _, name, _))| name.clone())
                .collect();
            prop_assert_eq!(listed, expected, "tracks of project {} after step {}", i, number);
        }
        for (t, (id, ..)) in model.tracks.iter().enumerate() {
            let listed = comments.list_by_parent((*id).into()).await.expect("list").len();
            let expected = if model.track_visible(t) { model.comments_per_track[t] } else { 0 };
            prop_assert_eq!(listed, expected, "comments of track {} after step {}", t, number);
        }
        // The outbox holds exactly one operation per accepted change, in order.
        let kinds: Vec<OperationKind> =
            outbox.list(None).await.expect("list").iter().map(|o| o.kind).collect();
        prop_assert_eq!(&kinds, &model.queued, "outbox after step {}", number);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn repositories_behave_like_the_model(steps in prop::collection::vec(step(), 1..25)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(run(steps))?;
    }
}
