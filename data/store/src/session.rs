//! The current session, stored in the local database.

use super::{rows::parse, schema::session, LocalStore};
use async_trait::async_trait;
use diesel::prelude::*;
use shaku::Component;
use std::sync::Arc;
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    ports::{AccessToken, Reauthenticator, Session, SessionStorage},
    RepositoryError,
};

/// [`SessionStorage`] in the `session` table (one row). The token is stored as is: the
/// database file is the user's own, like a browser profile.
#[derive(Component)]
#[shaku(interface = SessionStorage)]
pub struct SqliteSessionStorage {
    /// The local database.
    store: LocalStore,
}

impl SqliteSessionStorage {
    /// Session storage in `store`.
    pub fn new(store: LocalStore) -> Self {
        Self { store }
    }
}

/// The one row of the `session` table.
#[derive(Insertable)]
#[diesel(table_name = session, treat_none_as_default_value = false)]
struct SessionRow {
    id: i32,
    user_id: String,
    server_url: Option<String>,
    access_token: Option<String>,
}

impl From<&Session> for SessionRow {
    fn from(s: &Session) -> Self {
        Self {
            id: 1,
            user_id: s.user_id.to_string(),
            server_url: s.server_url.clone(),
            access_token: s.access_token.as_ref().map(|t| t.expose().to_owned()),
        }
    }
}

/// The [`Reauthenticator`] of a client that cannot ask for a password in the background: a
/// refused token is replaced only if the stored session already holds another one (the user
/// signed in again, from this process or another). Otherwise upstream sync waits for sign-in.
#[derive(Component)]
#[shaku(interface = Reauthenticator)]
pub struct SessionReload {
    /// Where a new token would have been stored.
    #[shaku(inject)]
    session: Arc<dyn SessionStorage>,
}

impl SessionReload {
    /// Renewal from `session`.
    pub fn new(session: Arc<dyn SessionStorage>) -> Self {
        Self { session }
    }
}

#[async_trait]
impl Reauthenticator for SessionReload {
    async fn renew(&self, refused: Option<AccessToken>) -> Result<bool, RepositoryError> {
        let stored = self.session.load().await?.and_then(|s| s.access_token);
        Ok(stored.is_some() && stored != refused)
    }
}

/// The stored session, if any.
pub(crate) fn load(conn: &mut SqliteConnection) -> StoreResult<Option<Session>> {
    let row: Option<(String, Option<String>, Option<String>)> = session::table
        .select((session::user_id, session::server_url, session::access_token))
        .get_result(conn)
        .optional()?;
    row.map(|(user_id, server_url, token)| {
        Ok(Session {
            user_id: parse("session", &user_id)?,
            server_url,
            access_token: token.map(AccessToken::new),
        })
    })
    .transpose()
}

#[async_trait]
impl SessionStorage for SqliteSessionStorage {
    #[tracing::instrument(skip_all)]
    async fn load(&self) -> Result<Option<Session>, RepositoryError> {
        self.store.read(load).await
    }

    #[tracing::instrument(skip_all)]
    async fn save(&self, new: Session) -> Result<(), RepositoryError> {
        self.store
            .read(move |conn| {
                diesel::replace_into(session::table).values(SessionRow::from(&new)).execute(conn)?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn save_if_absent(&self, new: Session) -> Result<Session, RepositoryError> {
        self.store
            .read(move |conn| {
                conn.immediate_transaction(|conn| {
                    diesel::insert_or_ignore_into(session::table)
                        .values(SessionRow::from(&new))
                        .execute(conn)?;
                    load(conn)?.ok_or_else(|| StoreError::corrupt("session", "missing right after insert"))
                })
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn clear(&self) -> Result<(), RepositoryError> {
        self.store
            .read(|conn| {
                diesel::delete(session::table).execute(conn)?;
                Ok(())
            })
            .await
    }
}
