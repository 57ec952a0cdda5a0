use trackflow_domain::{
    authorization::*,
    entities::{ScopeKind, SyncEntity},
    CollaboratorRole, EntityType, OperationKind,
};
use trackflow_music::{AudioComment, AudioTrack, Playlist, Project, ProjectCollaborator, UserProfile};
use CollaboratorRole::{Editor, Owner, Viewer};

/// One row per entity type and relation: what reads, creates, updates and deletes give.
/// `-` allowed, `F` forbidden, `N` not found (hidden).
#[test]
fn every_entity_type_against_every_role() {
    crate::music();
    let project_roles =
        [("owner", Some(Owner)), ("editor", Some(Editor)), ("viewer", Some(Viewer)), ("stranger", None)];
    //                      entity type                  owner   editor  viewer  stranger
    let table: [(EntityType, [&str; 4]); 5] = [
        (Project::ENTITY_TYPE, ["----", "---F", "-FFF", "NNNN"]),
        (ProjectCollaborator::ENTITY_TYPE, ["----", "-FFF", "-FFF", "NNNN"]),
        (AudioTrack::ENTITY_TYPE, ["----", "----", "-FFF", "NNNN"]),
        (AudioComment::ENTITY_TYPE, ["----", "----", "-FFF", "NNNN"]),
        (Playlist::ENTITY_TYPE, ["----", "----", "-FFF", "NNNN"]),
    ];
    let in_projects = EntityType::all().iter().filter(|t| t.scope_kind() == ScopeKind::Shared).count();
    assert_eq!(table.len(), in_projects, "a row for every type kept in a project");
    let accesses = [
        Access::Read,
        Access::Write(OperationKind::Create),
        Access::Write(OperationKind::Update),
        Access::Write(OperationKind::Delete),
    ];
    for (entity_type, by_role) in table {
        for ((role_name, role), expected) in project_roles.iter().zip(by_role) {
            for (access, want) in accesses.iter().zip(expected.chars()) {
                let got = match authorize(entity_type, *access, Relation::Member(*role)) {
                    Ok(()) => '-',
                    Err(d) if d.code == "forbidden" => 'F',
                    Err(d) if d.code == "not_found" => 'N',
                    Err(d) => panic!("unexpected code {}", d.code),
                };
                assert_eq!(got, want, "{entity_type} {access:?} as {role_name}");
            }
        }
    }
}

#[test]
fn profiles_belong_to_their_user() {
    crate::music();
    let relations = [
        ("own", Relation::Profile { own: true, shares_project: false }, "----"),
        ("co-member", Relation::Profile { own: false, shares_project: true }, "-FFF"),
        ("stranger", Relation::Profile { own: false, shares_project: false }, "NFFF"),
    ];
    let accesses = [
        Access::Read,
        Access::Write(OperationKind::Create),
        Access::Write(OperationKind::Update),
        Access::Write(OperationKind::Delete),
    ];
    for (name, relation, expected) in relations {
        for (access, want) in accesses.iter().zip(expected.chars()) {
            let got = match authorize(UserProfile::ENTITY_TYPE, *access, relation) {
                Ok(()) => '-',
                Err(d) if d.code == "forbidden" => 'F',
                Err(_) => 'N',
            };
            assert_eq!(got, want, "profile {access:?} as {name}");
        }
    }
}

#[test]
fn a_refusal_says_what_only_the_owner_may_do() {
    crate::music();
    let editor = Relation::Member(Some(Editor));
    let message =
        |entity_type, kind| authorize(entity_type, Access::Write(kind), editor).expect_err("refused").message;
    assert_eq!(message(Project::ENTITY_TYPE, OperationKind::Delete), "only the owner deletes a project");
    assert_eq!(
        message(ProjectCollaborator::ENTITY_TYPE, OperationKind::Create),
        "only the owner manages project collaborators"
    );
    let viewer = authorize(
        AudioTrack::ENTITY_TYPE,
        Access::Write(OperationKind::Update),
        Relation::Member(Some(Viewer)),
    );
    assert_eq!(viewer.expect_err("refused").message, "viewers cannot change a project");
}

#[test]
fn mismatched_facts_are_refused_not_guessed() {
    crate::music();
    assert!(authorize(UserProfile::ENTITY_TYPE, Access::Read, Relation::Member(Some(Owner))).is_err());
    let profile_facts = Relation::Profile { own: true, shares_project: true };
    assert!(authorize(AudioTrack::ENTITY_TYPE, Access::Read, profile_facts).is_err());
}

/// A type declaring `WriteRule::AUTHORED` (a comment): after `authorize`, the author rule.
/// `-` allowed, `F` forbidden; per role, for its author and for another member: create,
/// update, delete.
#[test]
fn only_its_author_changes_a_comment_and_the_owner_may_delete_it() {
    crate::music();
    let (author, other) = (trackflow_domain::UserId::new(), trackflow_domain::UserId::new());
    //                  role            author  other member
    let table = [(Some(Owner), ["---", "-F-"]), (Some(Editor), ["---", "-FF"]), (None, ["---", "-FF"])];
    let kinds = [OperationKind::Create, OperationKind::Update, OperationKind::Delete];
    for entity_type in EntityType::all() {
        let declared = entity_type.write_rule().author_only;
        assert_eq!(declared, *entity_type == AudioComment::ENTITY_TYPE, "{entity_type} declares the rule");
        for (role, [by_author, by_other]) in table {
            for (user, expected) in [(author, by_author), (other, by_other)] {
                for (kind, want) in kinds.iter().zip(expected.chars()) {
                    let got = match authorize_author(*entity_type, *kind, Some(author), user, role) {
                        Ok(()) => '-',
                        Err(d) if d.code == "forbidden" => 'F',
                        Err(d) => panic!("unexpected code {}", d.code),
                    };
                    // A type without the rule lets every member through.
                    let want = if declared { want } else { '-' };
                    assert_eq!(got, want, "{entity_type} {kind:?} as {role:?}, author: {}", user == author);
                }
            }
        }
    }
}
