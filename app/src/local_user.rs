//! This device's user.

use crate::wiring::LocalModule;
use shaku::HasComponent;
use trackflow_domain::{
    ports::{Clock, Session, SessionStorage, UserProfileRepository},
    UserId, UserProfile,
};

/// Creates this device's user: a profile (queued for sync like any write) and the session
/// that makes it the user every later write is made as.
pub async fn create(module: &LocalModule, name: &str, email: &str) -> anyhow::Result<UserProfile> {
    let clock: &dyn Clock = module.resolve_ref();
    let profiles: &dyn UserProfileRepository = module.resolve_ref();
    let sessions: &dyn SessionStorage = module.resolve_ref();
    let profile = profiles.create(UserProfile::new(UserId::new(), name, email, clock.now())?).await?;
    sessions.save(Session { user_id: profile.id(), server_url: None, access_token: None }).await?;
    Ok(profile)
}
