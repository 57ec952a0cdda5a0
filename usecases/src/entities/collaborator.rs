//! Project collaborators: who may read and write a project, with which role.

use super::sync_use_case;
use trackflow_domain::EntityType;

sync_use_case! {
    /// Applies pulled collaborator rows. A collaborator lives inside its project, so it waits
    /// for the project; it names a user, whose profile (in the `people` scope, pulled before
    /// any project) goes first when both are on one page. A collaborator added after the user's
    /// last pull brings the project into the listing, and the project's scope is pulled whole.
    SyncProjectCollaboratorsUseCase, EntityType::ProjectCollaborator,
    depends_on: [EntityType::Project, EntityType::UserProfile]
}
