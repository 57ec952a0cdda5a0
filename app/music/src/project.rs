use crate::ProjectId;
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_domain::{
    entities::FieldReader, entities::Index, entities::Membership, entities::Scope, entities::ScopeKind,
    entities::WriteRule, ids::ScopeId, serde_json::Value, uuid::Uuid, validate::optional_text,
    validate::required_text, CollaboratorRole, EntityRef, Priority, SyncEntity, Timestamp, UserId,
    ValidationError,
};

/// A music project: the unit of collaboration and of authorization.
/// Serialises to its wire fields. It is deliberately not `Deserialize`: every way in goes
/// through the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    id: ProjectId,
    owner_id: UserId,
    name: String,
    description: Option<String>,
    created_at: Timestamp,
}

/// Changes to a [`Project`]; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPatch {
    /// A new name.
    pub name: Option<String>,
    /// A new description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
}

/// A project is the root of a shared scope, named by its id.
impl From<ProjectId> for ScopeId {
    fn from(id: ProjectId) -> Self {
        ScopeId::from_uuid(id.as_uuid())
    }
}

impl Project {
    /// Longest allowed name, in characters.
    pub const MAX_NAME: usize = 100;
    /// Longest allowed description, in characters.
    pub const MAX_DESCRIPTION: usize = 2_000;
    /// The index of the projects a user owns or collaborates on, keyed by the user's id
    /// (`Repository::list_by`).
    pub const BY_MEMBER: &'static str = "member";

    /// A new project owned by `owner_id`, with a fresh id.
    pub fn new(
        owner_id: UserId,
        name: &str,
        description: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Self::restore(ProjectId::new(), owner_id, name, description, now)
    }

    /// Rebuilds a project from stored or received parts, validating them like [`Project::new`].
    pub fn restore(
        id: ProjectId,
        owner_id: UserId,
        name: &str,
        description: Option<&str>,
        created_at: Timestamp,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            id,
            owner_id,
            name: required_text("name", name, Self::MAX_NAME)?,
            description: optional_text("description", description, Self::MAX_DESCRIPTION)?,
            created_at,
        })
    }

    /// This project with `patch` applied, validated.
    pub fn patched(&self, patch: &ProjectPatch) -> Result<Self, ValidationError> {
        Self::restore(
            self.id,
            self.owner_id,
            patch.name.as_deref().unwrap_or(&self.name),
            match &patch.description {
                Some(new) => new.as_deref(),
                None => self.description.as_deref(),
            },
            self.created_at,
        )
    }

    /// The id.
    pub fn id(&self) -> ProjectId {
        self.id
    }
    /// The owner, the one user who may delete the project and manage collaborators.
    pub fn owner_id(&self) -> UserId {
        self.owner_id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// When the project was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

impl SyncEntity for Project {
    type Id = ProjectId;
    type Patch = ProjectPatch;

    const NAME: &'static str = "project";
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const WRITE: WriteRule = WriteRule { delete: CollaboratorRole::Owner, ..WriteRule::MEMBERS };
    const PRIORITY: Priority = Priority::High;
    const TABLE: &'static str = "projects";
    const INDEXES: &'static [Index] = &[Index::members(Project::BY_MEMBER, "owner_id")];
    const MEMBER_FIELD: Option<&'static str> = Some("owner_id");
    const FIELDS: &'static [&'static str] = &["owner_id", "name", "description", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["owner_id", "created_at"];

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Self::restore(
            ProjectId::from_uuid(id),
            f.required("owner_id")?,
            &f.required::<String>("name")?,
            f.optional::<String>("description")?.as_deref(),
            f.required("created_at")?,
        )
    }

    fn scope(&self) -> Scope {
        Scope::Shared(self.id.into())
    }

    fn membership(&self) -> Option<Membership> {
        Some(Membership { scope: self.id.into(), user_id: self.owner_id, role: CollaboratorRole::Owner })
    }

    fn patched(&self, patch: &ProjectPatch) -> Result<Self, ValidationError> {
        Project::patched(self, patch)
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        Vec::new()
    }

    fn parent(&self) -> Option<EntityRef> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::entities::changed_fields;

    fn project(name: &str) -> Result<Project, ValidationError> {
        Project::new(UserId::new(), name, None, Timestamp(1))
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let table: [(&str, &str, Option<&str>); 5] = [
            ("plain name", "Demo", None),
            ("trimmed", "  Demo  ", None),
            ("empty", "", Some("name")),
            ("blank", "   ", Some("name")),
            ("over long", &"x".repeat(101), Some("name")),
        ];
        for (case, name, failing_field) in table {
            match (project(name), failing_field) {
                (Ok(p), None) => assert_eq!(p.name(), "Demo", "{case}"),
                (Err(e), Some(field)) => assert_eq!(e.field, field, "{case}"),
                (result, _) => panic!("{case}: unexpected {result:?}"),
            }
        }
        assert!(project(&"x".repeat(100)).is_ok(), "exactly the limit is allowed");
    }

    #[test]
    fn description_is_optional_and_bounded() {
        let owner = UserId::new();
        let p = Project::new(owner, "A", Some("  "), Timestamp(1)).expect("valid");
        assert_eq!(p.description(), None, "a blank description is no description");
        let err = Project::new(owner, "A", Some(&"d".repeat(2_001)), Timestamp(1)).unwrap_err();
        assert_eq!(err.field, "description");
    }

    #[test]
    fn patch_changes_only_named_fields() {
        let p = Project::new(UserId::new(), "Old", Some("keep"), Timestamp(1)).expect("valid");
        let q = p.patched(&ProjectPatch { name: Some("New".into()), description: None }).expect("valid");
        assert_eq!((q.name(), q.description()), ("New", Some("keep")));
        let changed = changed_fields(&p, &q);
        assert_eq!(changed.keys().collect::<Vec<_>>(), ["name"]);
        let cleared = q.patched(&ProjectPatch { name: None, description: Some(None) }).expect("valid");
        assert_eq!(cleared.description(), None);
        assert!(p.patched(&ProjectPatch { name: Some(String::new()), ..Default::default() }).is_err());
    }
}
