use trackflow_domain::{ports::*, EntityType, SyncEntity};
use trackflow_music::{Playlist, Project};

#[test]
fn a_plan_orders_every_entity_type_exactly_once() {
    crate::music();
    let all = EntityType::all().to_vec();
    let without_playlists: Vec<EntityType> =
        all.iter().copied().filter(|t| *t != Playlist::ENTITY_TYPE).collect();
    let mut repeated = all.clone();
    repeated.push(Project::ENTITY_TYPE);
    let table: [(&str, Vec<EntityType>, Result<(), IncompletePlan>); 3] = [
        ("every type once", all, Ok(())),
        ("a type missing", without_playlists, Err(IncompletePlan(Playlist::ENTITY_TYPE, "missing"))),
        ("a type twice", repeated, Err(IncompletePlan(Project::ENTITY_TYPE, "repeated"))),
    ];
    for (name, order, expected) in table {
        let plan = ApplyPlan::new(order.clone(), ConflictPolicies::default());
        assert_eq!(plan.as_ref().map(|_| ()).map_err(Clone::clone), expected, "{name}");
        if let Ok(plan) = plan {
            assert_eq!(plan.order(), order.as_slice(), "{name}");
            assert_eq!(plan.rank(order[2]), 2, "{name}");
        }
    }
}
