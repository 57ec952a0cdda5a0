//! The per-entity sync use cases: one per entity type, each deciding how pulled rows of its
//! type are applied: which types must be in place before them, and how a pulled change meets
//! an unacknowledged local edit (its [`ConflictPolicy`]). Each comes from its type's
//! declaration ([`DeclaredUseCase`]), one per registered type; [`SyncUseCases`] gathers them,
//! checks them, and derives the [`ApplyPlan`] every pulled page follows. The store only carries
//! the plan out: no entity type's rules are written in it.
//!
//! A pull brings every type a scope holds in one page, so the use cases do not fetch each their
//! own collection (as the original design's did); the [`SyncDataManager`](crate::SyncDataManager)
//! runs the scopes, and the use cases shape how each page lands.

mod order;

pub use order::{apply_order, PlanError};

use std::{collections::BTreeMap, fmt, sync::Arc};
use trackflow_domain::{
    ports::{ApplyPlan, ConflictPolicies},
    sync::ConflictPolicy,
    EntityType,
};

/// How pulled rows of one entity type are applied. [`DeclaredUseCase`] reads both answers from
/// the type's declaration; a program may give a type a use case of its own.
pub trait EntitySyncUseCase: fmt::Debug + Send + Sync {
    /// The entity type whose rows this use case applies.
    fn entity_type(&self) -> EntityType;

    /// The types whose rows go before this type's in a page: what a row of this type lives
    /// inside or refers to. A row whose parent is on no page yet waits for it in the store.
    fn depends_on(&self) -> Vec<EntityType>;

    /// How a pulled change meets a field with an unacknowledged local edit.
    fn policy(&self) -> ConflictPolicy;
}

/// The use case a type's declaration makes: its rows go after its parent's and after the types
/// it refers to (a comment after its track, a playlist after the tracks it lists), and conflicts
/// resolve by the policy chosen when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredUseCase {
    entity_type: EntityType,
    policy: ConflictPolicy,
}

impl DeclaredUseCase {
    /// The use case of `entity_type`, resolving conflicts by `policy`.
    pub const fn new(entity_type: EntityType, policy: ConflictPolicy) -> Self {
        Self { entity_type, policy }
    }
}

impl EntitySyncUseCase for DeclaredUseCase {
    fn entity_type(&self) -> EntityType {
        self.entity_type
    }

    fn depends_on(&self) -> Vec<EntityType> {
        self.entity_type.depends_on()
    }

    fn policy(&self) -> ConflictPolicy {
        self.policy
    }
}

/// The use cases of every entity type, and the plan they make together.
#[derive(Debug, Clone)]
pub struct SyncUseCases {
    use_cases: Vec<Arc<dyn EntitySyncUseCase>>,
    plan: ApplyPlan,
}

impl SyncUseCases {
    /// Gathers `use_cases`, one per entity type, and derives their plan: an order in which
    /// every type comes after what it depends on (ties in the order given), and each type's
    /// policy. Fails when a type has no use case or two, or the dependencies form a cycle.
    pub fn new(use_cases: Vec<Arc<dyn EntitySyncUseCase>>) -> Result<Self, PlanError> {
        let depends_on: Vec<Vec<EntityType>> = use_cases.iter().map(|u| u.depends_on()).collect();
        let declared: Vec<(EntityType, &[EntityType])> =
            use_cases.iter().zip(&depends_on).map(|(u, d)| (u.entity_type(), d.as_slice())).collect();
        let order = apply_order(&declared)?;
        let policies = ConflictPolicies(use_cases.iter().map(|u| (u.entity_type(), u.policy())).collect());
        let plan = ApplyPlan::new(order, policies).map_err(|incomplete| PlanError::Missing(incomplete.0))?;
        Ok(Self { use_cases, plan })
    }

    /// The declared use case of every registered type, with `policies` (types not named
    /// resolve by their declared policy).
    pub fn standard(policies: &ConflictPolicies) -> Self {
        let use_cases: Vec<Arc<dyn EntitySyncUseCase>> = EntityType::all()
            .iter()
            .map(|&entity_type| {
                Arc::new(DeclaredUseCase::new(entity_type, policies.of(entity_type)))
                    as Arc<dyn EntitySyncUseCase>
            })
            .collect();
        // Checked by `the_standard_use_cases_make_a_plan`: one per type, no cycle.
        Self::new(use_cases).expect("the declared use cases form a plan")
    }

    /// The plan every pulled page follows.
    pub fn plan(&self) -> &ApplyPlan {
        &self.plan
    }

    /// The use case of each entity type.
    pub fn by_type(&self) -> BTreeMap<EntityType, &dyn EntitySyncUseCase> {
        self.use_cases.iter().map(|u| (u.entity_type(), u.as_ref())).collect()
    }
}

impl Default for SyncUseCases {
    /// [`SyncUseCases::standard`], every type resolving by last writer wins.
    fn default() -> Self {
        Self::standard(&ConflictPolicies::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::{CollaboratorRole, SyncEntity, Timestamp, UserId};
    use trackflow_music::{
        AudioComment, AudioTrack, AudioTrackId, Playlist, Project, ProjectCollaborator, UserProfile,
    };

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    /// The types `entity` lives inside or refers to, which its use case must put first.
    fn needs<E: SyncEntity>(entity: &E) -> (EntityType, Vec<EntityType>) {
        let needed = entity.parent().into_iter().chain(entity.references()).map(|r| r.entity_type).collect();
        (E::ENTITY_TYPE, needed)
    }

    #[test]
    fn the_standard_use_cases_make_a_plan() {
        trackflow_music::install().expect("the music registry installs");
        let use_cases = SyncUseCases::default();
        assert_eq!(use_cases.plan().order(), EntityType::all(), "parents first, as the domain lists them");
        assert_eq!(use_cases.by_type().len(), EntityType::all().len());
    }

    #[test]
    fn each_use_case_puts_first_what_its_entity_lives_inside_and_refers_to() {
        trackflow_music::install().expect("the music registry installs");
        let owner = UserId::new();
        let project = Project::new(owner, "EP", None, NOW).expect("valid");
        let track = AudioTrack::new(project.id(), owner, "Intro", 1_000, None, NOW).expect("valid");
        let samples = [
            needs(&UserProfile::new(owner, "Ana", "ana@example.com", NOW).expect("valid")),
            needs(&project),
            needs(
                &ProjectCollaborator::new(project.id(), UserId::new(), CollaboratorRole::Editor, NOW)
                    .expect("valid"),
            ),
            needs(&AudioComment::new(&track, owner, "late bass", 10, NOW).expect("valid")),
            needs(
                &Playlist::new(project.id(), "Set", vec![track.id(), AudioTrackId::new()], NOW)
                    .expect("valid"),
            ),
            needs(&track),
        ];
        let use_cases = SyncUseCases::default();
        let by_type = use_cases.by_type();
        for (entity_type, needed) in samples {
            let use_case = by_type[&entity_type];
            for dependency in needed {
                assert!(
                    use_case.depends_on().contains(&dependency),
                    "{entity_type} must come after {dependency}"
                );
                assert!(
                    use_cases.plan().rank(dependency) < use_cases.plan().rank(entity_type),
                    "{dependency} goes before {entity_type}"
                );
            }
        }
    }

    #[test]
    fn configured_policies_reach_the_plan_and_the_rest_stay_last_writer_wins() {
        trackflow_music::install().expect("the music registry installs");
        let policies = ConflictPolicies(BTreeMap::from([
            (Project::ENTITY_TYPE, ConflictPolicy::Manual),
            (AudioComment::ENTITY_TYPE, ConflictPolicy::ServerWins),
        ]));
        let use_cases = SyncUseCases::standard(&policies);
        let table = [
            (Project::ENTITY_TYPE, ConflictPolicy::Manual),
            (AudioComment::ENTITY_TYPE, ConflictPolicy::ServerWins),
            (AudioTrack::ENTITY_TYPE, ConflictPolicy::LastWriterWins),
            (UserProfile::ENTITY_TYPE, ConflictPolicy::LastWriterWins),
        ];
        for (entity_type, policy) in table {
            assert_eq!(use_cases.plan().policy(entity_type), policy, "{entity_type}");
            assert_eq!(use_cases.by_type()[&entity_type].policy(), policy, "{entity_type}");
        }
    }

    #[test]
    fn a_missing_use_case_is_refused() {
        trackflow_music::install().expect("the music registry installs");
        let mut use_cases: Vec<Arc<dyn EntitySyncUseCase>> = SyncUseCases::default()
            .use_cases
            .iter()
            .filter(|u| u.entity_type() != Playlist::ENTITY_TYPE)
            .cloned()
            .collect();
        assert_eq!(
            SyncUseCases::new(use_cases.clone()).err(),
            Some(PlanError::Missing(Playlist::ENTITY_TYPE))
        );
        use_cases.push(Arc::new(DeclaredUseCase::new(Playlist::ENTITY_TYPE, ConflictPolicy::LastWriterWins)));
        assert!(SyncUseCases::new(use_cases).is_ok());
    }
}
