//! User profiles: the signed-in user's own, and those of the people they work with.

use super::sync_use_case;

sync_use_case! {
    /// Applies pulled user profiles (the `people` scope: the user's own profile and the
    /// profiles of fellow members). A profile depends on nothing. Only its owner writes it, so
    /// its conflicts are between the owner's own devices, and last writer wins is what the
    /// owner expects; a stored profile is merged field by field, never replaced wholesale.
    SyncUserProfileUseCase, trackflow_domain::EntityType::UserProfile, depends_on: []
}
