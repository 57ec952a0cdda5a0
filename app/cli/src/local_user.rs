//! This device's user.

use anyhow::bail;
use shaku::HasComponent;
use trackflow_client::wiring::repository;
use trackflow_client::wiring::ClientModule;
use trackflow_domain::{
    ports::{Clock, Session, SessionStorage},
    UserId,
};
use trackflow_music::UserProfile;

/// Creates this device's user: the session that makes it the user every later write is made
/// as, then its profile (queued for sync like any write).
///
/// The session is stored first, and only if none exists, so a setup cut short between the two
/// steps leaves a session without a profile, and running this again finishes it with the same
/// user id; two setups racing end with one user (the loser's profile create fails as a
/// duplicate), never with a second, orphaned user queued for sync.
pub async fn create(module: &ClientModule, name: &str, email: &str) -> anyhow::Result<UserProfile> {
    let clock: &dyn Clock = module.resolve_ref();
    let profiles = repository::<UserProfile>(module);
    let sessions: &dyn SessionStorage = module.resolve_ref();
    // Validate before storing anything.
    UserProfile::new(UserId::new(), name, email, clock.now())?;
    let proposed = Session { user_id: UserId::new(), server_url: None, access_token: None };
    let user_id = sessions.save_if_absent(proposed).await?.user_id;
    if profiles.get(user_id).await?.is_some() {
        bail!("this device already has a profile ({user_id}); use `trackflow profile update`");
    }
    Ok(profiles.create(UserProfile::new(user_id, name, email, clock.now())?).await?)
}
