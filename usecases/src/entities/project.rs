//! Projects: the roots of everything a collaboration holds.

use super::sync_use_case;

sync_use_case! {
    /// Applies pulled projects. A project depends on nothing, so it goes first among a project
    /// scope's rows. A pulled tombstone hides the project and, through the parent links,
    /// everything inside it; rows pulled for it later wait for nothing and stay hidden. A
    /// project the user can no longer read at all is removed by the
    /// [`SyncDataManager`](crate::SyncDataManager) when its scope leaves the listing.
    SyncProjectsUseCase, trackflow_domain::EntityType::Project, depends_on: []
}
