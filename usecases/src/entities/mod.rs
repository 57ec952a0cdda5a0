//! The per-entity sync use cases: one per entity type, each deciding how pulled rows of its
//! type are applied: which types must be in place before them, and how a pulled change meets
//! an unacknowledged local edit (its [`ConflictPolicy`]). [`SyncUseCases`] gathers them, checks
//! them, and derives the [`ApplyPlan`] every pulled page follows. The store only carries the
//! plan out: no entity type's rules are written in it.
//!
//! A pull brings every type a scope holds in one page, so the use cases do not fetch each their
//! own collection (as the original design's did); the [`SyncDataManager`](crate::SyncDataManager)
//! runs the scopes, and the use cases shape how each page lands.

mod audio_comment;
mod audio_track;
mod collaborator;
mod order;
mod playlist;
mod project;
mod user_profile;

pub use audio_comment::SyncAudioCommentsUseCase;
pub use audio_track::SyncAudioTracksUseCase;
pub use collaborator::SyncProjectCollaboratorsUseCase;
pub use order::{apply_order, PlanError};
pub use playlist::SyncPlaylistsUseCase;
pub use project::SyncProjectsUseCase;
pub use user_profile::SyncUserProfileUseCase;

use std::{collections::BTreeMap, fmt, sync::Arc};
use trackflow_domain::{
    ports::{ApplyPlan, ConflictPolicies},
    sync::ConflictPolicy,
    EntityType,
};

/// How pulled rows of one entity type are applied.
pub trait EntitySyncUseCase: fmt::Debug + Send + Sync {
    /// The entity type whose rows this use case applies.
    fn entity_type(&self) -> EntityType;

    /// The types whose rows go before this type's in a page: what a row of this type lives
    /// inside or refers to. A row whose parent is on no page yet waits for it in the store.
    fn depends_on(&self) -> &'static [EntityType];

    /// How a pulled change meets a field with an unacknowledged local edit.
    fn policy(&self) -> ConflictPolicy;
}

/// Declares the use case `$name` of `$entity_type`, applied after `$depends_on`, with a
/// conflict policy chosen when it is built (last writer wins by default).
macro_rules! sync_use_case {
    ($(#[$doc:meta])* $name:ident, $entity_type:expr, depends_on: [$($dependency:expr),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name {
            policy: trackflow_domain::sync::ConflictPolicy,
        }

        impl $name {
            /// The use case, resolving conflicts by `policy`.
            pub const fn new(policy: trackflow_domain::sync::ConflictPolicy) -> Self {
                Self { policy }
            }
        }

        impl $crate::entities::EntitySyncUseCase for $name {
            fn entity_type(&self) -> trackflow_domain::EntityType {
                $entity_type
            }

            fn depends_on(&self) -> &'static [trackflow_domain::EntityType] {
                &[$($dependency),*]
            }

            fn policy(&self) -> trackflow_domain::sync::ConflictPolicy {
                self.policy
            }
        }
    };
}
use sync_use_case;

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
        let declared: Vec<(EntityType, &[EntityType])> =
            use_cases.iter().map(|u| (u.entity_type(), u.depends_on())).collect();
        let order = apply_order(&declared)?;
        let policies = ConflictPolicies(use_cases.iter().map(|u| (u.entity_type(), u.policy())).collect());
        let plan = ApplyPlan::new(order, policies).map_err(|incomplete| PlanError::Missing(incomplete.0))?;
        Ok(Self { use_cases, plan })
    }

    /// The built-in use cases of the six TrackFlow entity types, with `policies` (types not
    /// named resolve by last writer wins).
    pub fn standard(policies: &ConflictPolicies) -> Self {
        let of = |entity_type| policies.of(entity_type);
        let use_cases: Vec<Arc<dyn EntitySyncUseCase>> = vec![
            Arc::new(SyncUserProfileUseCase::new(of(EntityType::UserProfile))),
            Arc::new(SyncProjectsUseCase::new(of(EntityType::Project))),
            Arc::new(SyncProjectCollaboratorsUseCase::new(of(EntityType::ProjectCollaborator))),
            Arc::new(SyncAudioTracksUseCase::new(of(EntityType::AudioTrack))),
            Arc::new(SyncAudioCommentsUseCase::new(of(EntityType::AudioComment))),
            Arc::new(SyncPlaylistsUseCase::new(of(EntityType::Playlist))),
        ];
        // Checked by `the_standard_use_cases_make_a_plan`: one per type, no cycle.
        Self::new(use_cases).expect("the built-in use cases form a plan")
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
    use trackflow_domain::{
        AudioComment, AudioTrack, AudioTrackId, CollaboratorRole, Playlist, Project, ProjectCollaborator,
        SyncEntity, Timestamp, UserId, UserProfile,
    };

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    /// The types `entity` lives inside or refers to, which its use case must put first.
    fn needs<E: SyncEntity>(entity: &E) -> (EntityType, Vec<EntityType>) {
        let needed = entity.parent().into_iter().chain(entity.references()).map(|r| r.entity_type).collect();
        (E::ENTITY_TYPE, needed)
    }

    #[test]
    fn the_standard_use_cases_make_a_plan() {
        let use_cases = SyncUseCases::default();
        assert_eq!(use_cases.plan().order(), EntityType::ALL, "parents first, as the domain lists them");
        assert_eq!(use_cases.by_type().len(), EntityType::ALL.len());
    }

    #[test]
    fn each_use_case_puts_first_what_its_entity_lives_inside_and_refers_to() {
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
        let policies = ConflictPolicies(BTreeMap::from([
            (EntityType::Project, ConflictPolicy::Manual),
            (EntityType::AudioComment, ConflictPolicy::ServerWins),
        ]));
        let use_cases = SyncUseCases::standard(&policies);
        let table = [
            (EntityType::Project, ConflictPolicy::Manual),
            (EntityType::AudioComment, ConflictPolicy::ServerWins),
            (EntityType::AudioTrack, ConflictPolicy::LastWriterWins),
            (EntityType::UserProfile, ConflictPolicy::LastWriterWins),
        ];
        for (entity_type, policy) in table {
            assert_eq!(use_cases.plan().policy(entity_type), policy, "{entity_type}");
            assert_eq!(use_cases.by_type()[&entity_type].policy(), policy, "{entity_type}");
        }
    }

    #[test]
    fn a_missing_use_case_is_refused() {
        let mut use_cases: Vec<Arc<dyn EntitySyncUseCase>> = SyncUseCases::default()
            .use_cases
            .iter()
            .filter(|u| u.entity_type() != EntityType::Playlist)
            .cloned()
            .collect();
        assert_eq!(
            SyncUseCases::new(use_cases.clone()).err(),
            Some(PlanError::Missing(EntityType::Playlist))
        );
        use_cases.push(Arc::new(SyncPlaylistsUseCase::default()));
        assert!(SyncUseCases::new(use_cases).is_ok());
    }
}
