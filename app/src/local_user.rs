//! This device's user.

use crate::wiring::LocalModule;
use anyhow::bail;
use shaku::HasComponent;
use trackflow_domain::{
    ports::{Clock, Session, SessionStorage, UserProfileRepository},
    UserId, UserProfile,
};

/// Creates this device's user: the session that makes it the user every later write is made
/// as, then its profile (queued for sync like any write).
///
/// The session is stored first, so a setup cut short between the two steps leaves a session
/// without a profile, and running this again finishes it with the same user id, instead of
/// leaving a second, orphaned user queued for sync.
pub async fn create(module: &LocalModule, name: &str, email: &str) -> anyhow::Result<UserProfile> {
    let clock: &dyn Clock = module.resolve_ref();
    let profiles: &dyn UserProfileRepository = module.resolve_ref();
    let sessions: &dyn SessionStorage = module.resolve_ref();
    let user_id = match sessions.load().await? {
        Some(session) if profiles.get(session.user_id).await?.is_some() => {
            bail!("this device already has a profile ({}); use `trackflow profile update`", session.user_id)
        }
        Some(session) => session.user_id,
        None => UserId::new(),
    };
    // Validate before storing anything.
    let profile = UserProfile::new(user_id, name, email, clock.now())?;
    sessions.save(Session { user_id, server_url: None, access_token: None }).await?;
    Ok(profiles.create(profile).await?)
}
