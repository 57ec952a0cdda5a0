//! The order in which a page applies entity types: a pure function of what each type depends
//! on, table-tested.

use trackflow_domain::EntityType;

/// Why use cases do not make a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No use case applies this type.
    #[error("no sync use case applies {0}")]
    Missing(EntityType),
    /// Two use cases apply this type.
    #[error("two sync use cases apply {0}")]
    Duplicate(EntityType),
    /// A type depends on one no use case applies.
    #[error("{entity_type} depends on {dependency}, which no sync use case applies")]
    UnknownDependency {
        /// The type declaring the dependency.
        entity_type: EntityType,
        /// The type it depends on.
        dependency: EntityType,
    },
    /// These types depend on each other in a circle: none can go first.
    #[error("the dependencies of {0:?} form a cycle")]
    Cycle(Vec<EntityType>),
}

/// Orders `declared` types (each with the types it depends on) so that every type comes after
/// its dependencies. Among types ready at the same point, the one declared first goes first, so
/// the order is stable and readable: parents before children, as declared.
pub fn apply_order(declared: &[(EntityType, &[EntityType])]) -> Result<Vec<EntityType>, PlanError> {
    for (i, (entity_type, dependencies)) in declared.iter().enumerate() {
        if declared[..i].iter().any(|(earlier, _)| earlier == entity_type) {
            return Err(PlanError::Duplicate(*entity_type));
        }
        if let Some(dependency) = dependencies.iter().find(|d| !declared.iter().any(|(t, _)| t == *d)) {
            return Err(PlanError::UnknownDependency { entity_type: *entity_type, dependency: *dependency });
        }
    }
    let mut order: Vec<EntityType> = Vec::with_capacity(declared.len());
    while order.len() < declared.len() {
        let ready = declared.iter().find(|(entity_type, dependencies)| {
            !order.contains(entity_type) && dependencies.iter().all(|d| order.contains(d))
        });
        match ready {
            Some((entity_type, _)) => order.push(*entity_type),
            None => {
                let stuck = declared.iter().map(|(t, _)| *t).filter(|t| !order.contains(t)).collect();
                return Err(PlanError::Cycle(stuck));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::SyncEntity;

    const COMMENT: EntityType = trackflow_music::AudioComment::ENTITY_TYPE;
    const TRACK: EntityType = trackflow_music::AudioTrack::ENTITY_TYPE;
    const PLAYLIST: EntityType = trackflow_music::Playlist::ENTITY_TYPE;
    const PROJECT: EntityType = trackflow_music::Project::ENTITY_TYPE;
    const PROFILE: EntityType = trackflow_music::UserProfile::ENTITY_TYPE;

    #[test]
    fn types_come_after_what_they_depend_on() {
        type Case =
            (&'static str, Vec<(EntityType, &'static [EntityType])>, Result<Vec<EntityType>, PlanError>);
        let table: Vec<Case> = vec![
            ("nothing declared", vec![], Ok(vec![])),
            (
                "independent types keep their order",
                vec![(PROFILE, &[]), (PROJECT, &[])],
                Ok(vec![PROFILE, PROJECT]),
            ),
            (
                "a child declared before its parent goes after it",
                vec![(COMMENT, &[TRACK]), (TRACK, &[PROJECT]), (PROJECT, &[])],
                Ok(vec![PROJECT, TRACK, COMMENT]),
            ),
            (
                "a type waits for every dependency",
                vec![(PLAYLIST, &[PROJECT, TRACK]), (PROJECT, &[]), (TRACK, &[PROJECT])],
                Ok(vec![PROJECT, TRACK, PLAYLIST]),
            ),
            ("a type twice", vec![(PROJECT, &[]), (PROJECT, &[])], Err(PlanError::Duplicate(PROJECT))),
            (
                "a dependency nobody applies",
                vec![(COMMENT, &[TRACK])],
                Err(PlanError::UnknownDependency { entity_type: COMMENT, dependency: TRACK }),
            ),
            (
                "a cycle names the types caught in it",
                vec![(PROFILE, &[]), (TRACK, &[COMMENT]), (COMMENT, &[TRACK])],
                Err(PlanError::Cycle(vec![TRACK, COMMENT])),
            ),
            ("a type depending on itself", vec![(PROJECT, &[PROJECT])], Err(PlanError::Cycle(vec![PROJECT]))),
        ];
        for (name, declared, expected) in table {
            assert_eq!(apply_order(&declared), expected, "{name}");
        }
    }
}
