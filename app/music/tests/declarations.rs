//! The music model's declarations: each type round-trips through its wire fields, validates
//! what it reads, declares its scope, grants, priorities and parent as the engine reads them;
//! and the ports work against the generated mocks with its types.

/// Installs the music model's registry (idempotent), so entity type names read back.
fn music() {
    trackflow_music::install().expect("the music registry installs");
}

mod entities {
    use std::fmt;
    use trackflow_domain::{
        entities::*,
        serde_json::{self, Value},
        Priority, UserId,
    };
    use trackflow_music::*;

    #[test]
    fn entity_type_names_round_trip() {
        crate::music();
        for &t in EntityType::all() {
            assert_eq!(t.as_str().parse::<EntityType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).ok(), Some(Value::from(t.as_str())));
        }
        assert_eq!("track".parse::<EntityType>().unwrap_err().to_string(), "unknown entity type 'track'");
    }

    /// Every entity survives `fields` then `from_fields`, declares exactly the fields it
    /// serialises, and lists only real fields as immutable.
    fn check_round_trip<E: SyncEntity + PartialEq + fmt::Debug>(entity: &E) {
        let fields = entity.fields();
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut declared = E::FIELDS.to_vec();
        declared.sort_unstable();
        assert_eq!(names, declared, "{}: FIELDS matches fields()", E::ENTITY_TYPE);
        assert!(E::IMMUTABLE.iter().all(|f| E::FIELDS.contains(f)), "{}", E::ENTITY_TYPE);
        let rebuilt = E::from_fields(entity.entity_id(), &fields).expect("round trip");
        assert_eq!(&rebuilt, entity);
        assert_eq!(E::ENTITY_TYPE.parent_in(&fields), entity.parent(), "{}: parent_in", E::ENTITY_TYPE);
        assert_eq!(entity.scope().kind(), E::SCOPE, "{}: the declared scope kind", E::ENTITY_TYPE);
        assert_eq!(
            E::ENTITY_TYPE.as_str(),
            E::NAME,
            "{}: the registry reads the declaration",
            E::ENTITY_TYPE
        );
        let referred: Vec<EntityType> = entity.references().iter().map(|r| r.entity_type).collect();
        for entity_type in referred {
            assert!(
                E::ENTITY_TYPE.depends_on().contains(&entity_type),
                "{}: {entity_type} declared",
                E::ENTITY_TYPE
            );
        }
    }

    #[test]
    fn every_entity_round_trips_through_its_wire_fields() {
        crate::music();
        use trackflow_domain::{ids::UserId, Timestamp};
        let now = Timestamp(1_700_000_000_000);
        let owner = UserId::new();
        let mut profile = UserProfile::new(owner, "Ana", "ana@example.com", now).expect("valid");
        profile = profile
            .patched(&UserProfilePatch { creative_role: Some(Some("producer".into())), ..Default::default() })
            .expect("valid");
        let project = Project::new(owner, "Demo", Some("desc"), now).expect("valid");
        let track =
            AudioTrack::new(project.id(), owner, "T", 9_000, Some(&"a".repeat(64)), now).expect("valid");
        let comment = AudioComment::new(&track, owner, "nice", 1_000, now).expect("valid");
        let playlist = Playlist::new(project.id(), "Mix", vec![track.id()], now).expect("valid");
        let member = ProjectCollaborator::new(project.id(), UserId::new(), CollaboratorRole::Viewer, now)
            .expect("valid");
        check_round_trip(&profile);
        check_round_trip(&project);
        check_round_trip(&track);
        check_round_trip(&comment);
        check_round_trip(&playlist);
        check_round_trip(&member);
    }

    #[test]
    fn a_parent_is_read_from_wire_fields_only_when_they_name_a_valid_one() {
        crate::music();
        let now = trackflow_domain::Timestamp(0);
        let project = Project::new(UserId::new(), "Demo", None, now).expect("valid");
        let track = AudioTrack::new(project.id(), project.owner_id(), "T", 9_000, None, now).expect("valid");
        let with = |value: Option<Value>| {
            let mut fields = track.fields();
            match value {
                Some(v) => fields.insert("project_id".to_owned(), v),
                None => fields.remove("project_id"),
            };
            AudioTrack::ENTITY_TYPE.parent_in(&fields)
        };
        assert_eq!(with(None), None, "missing");
        assert_eq!(with(Some(Value::from("x"))), None, "not a uuid");
        assert_eq!(with(Some(Value::from(5))), None, "not a string");
        assert_eq!(with(Some(Value::from(project.id().to_string()))), track.parent());
        assert_eq!(Project::ENTITY_TYPE.parent_in(&project.fields()), None, "a project has no parent");
    }

    #[test]
    fn bad_wire_fields_name_the_field() {
        crate::music();
        let project =
            Project::new(UserId::new(), "Demo", None, trackflow_domain::Timestamp(0)).expect("valid");
        let id = project.entity_id();
        let with = |name: &str, value: Option<Value>| {
            let mut fields = project.fields();
            match value {
                Some(v) => fields.insert(name.to_owned(), v),
                None => fields.remove(name),
            };
            Project::from_fields(id, &fields).map_err(|e| (e.field, e.reason))
        };
        let table = [
            ("missing name", with("name", None), "name", "is required"),
            ("null name", with("name", Some(Value::Null)), "name", "is required"),
            ("name not a string", with("name", Some(Value::from(5))), "name", "has the wrong type"),
            ("owner not a uuid", with("owner_id", Some(Value::from("x"))), "owner_id", "has the wrong type"),
            ("name too long", with("name", Some(Value::from("n".repeat(101)))), "name", "the limit is 100"),
            ("unknown field", with("colour", Some(Value::from("red"))), "fields", "unknown field 'colour'"),
        ];
        for (case, result, field, reason) in table {
            let (got_field, got_reason) = result.expect_err(case);
            assert_eq!(got_field, field, "{case}");
            assert!(got_reason.contains(reason), "{case}: {got_reason}");
        }
        assert_eq!(with("description", None), Ok(project), "an absent optional field is None");
    }

    #[test]
    fn priorities_follow_the_documented_table() {
        crate::music();
        use trackflow_domain::sync::OperationKind as K;
        let table = [
            ("any delete is critical", Playlist::ENTITY_TYPE, K::Delete, Priority::Critical),
            ("access changes are critical", ProjectCollaborator::ENTITY_TYPE, K::Create, Priority::Critical),
            ("projects are high", Project::ENTITY_TYPE, K::Update, Priority::High),
            ("profiles are high", UserProfile::ENTITY_TYPE, K::Create, Priority::High),
            ("tracks are medium", AudioTrack::ENTITY_TYPE, K::Create, Priority::Medium),
            ("comments are medium", AudioComment::ENTITY_TYPE, K::Update, Priority::Medium),
            ("playlists are low", Playlist::ENTITY_TYPE, K::Create, Priority::Low),
        ];
        for (name, entity, kind, expected) in table {
            assert_eq!(entity.default_priority(kind), expected, "{name}");
        }
    }
}

mod scopes {
    use trackflow_domain::{entities::*, ids::ScopeId, UserId};
    use trackflow_domain::{
        entities::{AnyEntity, SyncEntity},
        Timestamp,
    };
    use trackflow_music::{AudioTrack, Project, ProjectCollaborator};

    #[test]
    fn scopes_round_trip_through_their_names() {
        crate::music();
        let user = Scope::User(UserId::new());
        let project = Scope::Shared(ScopeId::new());
        for scope in [user, project] {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
        for bad in ["", "user", "user:x", "team:0190f1f4-8d6e-7a00-8000-000000000000"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entities_inside_a_project_share_its_scope_and_grants_follow_the_records() {
        crate::music();
        let owner = UserId::new();
        let project = Project::new(owner, "P", None, Timestamp(0)).expect("valid");
        let track = AudioTrack::new(project.id(), owner, "T", 1, None, Timestamp(0)).expect("valid");
        let member =
            ProjectCollaborator::new(project.id(), UserId::new(), CollaboratorRole::Editor, Timestamp(0))
                .expect("valid");
        let any_track = AnyEntity::from_fields(AudioTrack::ENTITY_TYPE, track.entity_id(), &track.fields())
            .expect("round trip");
        assert_eq!(any_track, AnyEntity::new(track));
        assert_eq!(any_track.scope(), Scope::Shared(project.id().into()));
        assert_eq!(any_track.membership(), None);
        let grant = AnyEntity::new(project.clone()).membership().expect("owner");
        assert_eq!((grant.user_id, grant.role), (owner, CollaboratorRole::Owner));
        let grant = AnyEntity::new(member.clone()).membership().expect("member");
        assert_eq!(
            (grant.scope, grant.user_id, grant.role),
            (project.id().into(), member.user_id(), member.role())
        );
    }
}

mod ports {
    use mockall::predicate::eq;
    use trackflow_domain::{ports::*, EntityRef, RepositoryError, SyncEntity};
    use trackflow_domain::{Timestamp, UserId};
    use trackflow_music::{Project, ProjectId, ProjectPatch};

    /// Code written against the port runs unchanged against the generated mock.
    async fn rename_or_report(
        repo: &dyn Repository<Project>,
        id: ProjectId,
    ) -> Result<String, RepositoryError> {
        let patch = ProjectPatch { name: Some("Renamed".into()), ..Default::default() };
        repo.update(id, patch).await.map(|p| p.name().to_owned())
    }

    #[tokio::test]
    async fn ports_are_mockable() {
        crate::music();
        let project = Project::new(UserId::new(), "Demo", None, Timestamp(0)).expect("valid");
        let (known, unknown) = (project.id(), ProjectId::new());
        let mut repo = MockRepository::<Project>::new();
        repo.expect_update()
            .with(eq(known), mockall::predicate::always())
            .times(1)
            .returning(move |_, patch| Ok(project.patched(&patch).expect("valid")));
        repo.expect_update().with(eq(unknown), mockall::predicate::always()).times(1).returning(|id, _| {
            Err(RepositoryError::NotFound(EntityRef::new(Project::ENTITY_TYPE, id.as_uuid())))
        });

        assert_eq!(rename_or_report(&repo, known).await.expect("renamed"), "Renamed");
        let err = rename_or_report(&repo, unknown).await.expect_err("unknown project");
        assert_eq!(err.to_string(), format!("project {} not found", unknown.as_uuid()));
    }
}
