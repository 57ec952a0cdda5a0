use crate::{CollaboratorId, Project, ProjectId};
use serde::Serialize;
use std::collections::BTreeMap;
use trackflow_domain::{
    entities::FieldReader, entities::Membership, entities::Parent, entities::Scope, entities::ScopeKind,
    entities::WriteRule, ports::WriteContext, serde_json::Value, uuid::Uuid, CollaboratorRole, EntityRef,
    Priority, RepositoryError, SyncEntity, Timestamp, UserId, ValidationError,
};

/// A user's membership in a project with a role.
/// Serialises to its wire fields. It is deliberately not `Deserialize`: every way in goes
/// through the validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectCollaborator {
    id: CollaboratorId,
    project_id: ProjectId,
    user_id: UserId,
    role: CollaboratorRole,
    created_at: Timestamp,
}

/// Changes to a [`ProjectCollaborator`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectCollaboratorPatch {
    /// A new role.
    pub role: Option<CollaboratorRole>,
}

impl ProjectCollaborator {
    /// `user_id` joins `project_id` with `role` (editor or viewer).
    pub fn new(
        project_id: ProjectId,
        user_id: UserId,
        role: CollaboratorRole,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Self::restore(CollaboratorId::new(), project_id, user_id, role, now)
    }

    /// Rebuilds a membership from stored or received parts, validating them.
    pub fn restore(
        id: CollaboratorId,
        project_id: ProjectId,
        user_id: UserId,
        role: CollaboratorRole,
        created_at: Timestamp,
    ) -> Result<Self, ValidationError> {
        if role == CollaboratorRole::Owner {
            return Err(ValidationError::new(
                "role",
                "a project has exactly one owner, its creator; collaborators are editors or viewers",
            ));
        }
        Ok(Self { id, project_id, user_id, role, created_at })
    }

    /// This membership with `patch` applied, validated.
    pub fn patched(&self, patch: &ProjectCollaboratorPatch) -> Result<Self, ValidationError> {
        Self::restore(
            self.id,
            self.project_id,
            self.user_id,
            patch.role.unwrap_or(self.role),
            self.created_at,
        )
    }

    /// The id.
    pub fn id(&self) -> CollaboratorId {
        self.id
    }
    /// The project.
    pub fn project_id(&self) -> ProjectId {
        self.project_id
    }
    /// The member.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }
    /// The member's role.
    pub fn role(&self) -> CollaboratorRole {
        self.role
    }
    /// When the user joined.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
}

impl SyncEntity for ProjectCollaborator {
    type Id = CollaboratorId;
    type Patch = ProjectCollaboratorPatch;

    const NAME: &'static str = "project_collaborator";
    const PARENT: Option<Parent> = Some(Parent { entity_type: Project::ENTITY_TYPE, field: "project_id" });
    const SCOPE: ScopeKind = ScopeKind::Shared;
    const WRITE: WriteRule = WriteRule::OWNER;
    const PRIORITY: Priority = Priority::Critical;
    const TABLE: &'static str = "project_collaborators";
    const SCOPE_FIELD: &'static str = "project_id";
    const MEMBER_FIELD: Option<&'static str> = Some("user_id");
    const FIELDS: &'static [&'static str] = &["project_id", "user_id", "role", "created_at"];
    const IMMUTABLE: &'static [&'static str] = &["project_id", "user_id", "created_at"];

    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let f = FieldReader::new(fields, Self::FIELDS)?;
        Self::restore(
            CollaboratorId::from_uuid(id),
            f.required("project_id")?,
            f.required("user_id")?,
            f.required("role")?,
            f.required("created_at")?,
        )
    }

    fn scope(&self) -> Scope {
        Scope::Shared(self.project_id.into())
    }

    fn membership(&self) -> Option<Membership> {
        Some(Membership { scope: self.project_id.into(), user_id: self.user_id, role: self.role })
    }

    fn patched(&self, patch: &ProjectCollaboratorPatch) -> Result<Self, ValidationError> {
        ProjectCollaborator::patched(self, patch)
    }

    /// A user joins a project at most once, and the owner is never a collaborator. An update
    /// changes the role alone, so only creates are checked.
    fn check_write(
        &self,
        before: Option<&Self>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        if before.is_some() {
            return Ok(());
        }
        let project: Project = store.require(self.project_id.as_uuid())?;
        if project.owner_id() == self.user_id {
            return Err(ValidationError::new("user_id", "is the project's owner").into());
        }
        let members: Vec<ProjectCollaborator> = store.children_of(self.project_id.as_uuid())?;
        if members.iter().any(|m| m.user_id == self.user_id && m.id != self.id) {
            return Err(RepositoryError::Conflict(format!(
                "user {} is already a collaborator of project {}",
                self.user_id, self.project_id
            )));
        }
        Ok(())
    }

    fn entity_id(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn references(&self) -> Vec<EntityRef> {
        vec![EntityRef::new(Project::ENTITY_TYPE, self.project_id.as_uuid())]
    }

    fn parent(&self) -> Option<EntityRef> {
        Some(EntityRef::new(Project::ENTITY_TYPE, self.project_id.as_uuid()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collaborators_are_editors_or_viewers() {
        let table = [
            (CollaboratorRole::Editor, None),
            (CollaboratorRole::Viewer, None),
            (CollaboratorRole::Owner, Some("role")),
        ];
        for (role, failing) in table {
            let result = ProjectCollaborator::new(ProjectId::new(), UserId::new(), role, Timestamp(0));
            assert_eq!(result.err().map(|e| e.field), failing, "{role}");
        }
        assert!(CollaboratorRole::Editor.can_write() && !CollaboratorRole::Viewer.can_write());
        assert_eq!("admin".parse::<CollaboratorRole>().unwrap_err().field, "role");
    }
}
