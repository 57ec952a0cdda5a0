//! # trackflow-server-store
//!
//! The sync server's store: Diesel over SQLite (the default, a file or memory) or PostgreSQL
//! (for several server instances sharing one database), behind the domain's [`ServerStore`]
//! port. One implementation serves both: queries are written once against
//! [`ServerConnection`], and only locking and isolation differ per backend.
//!
//! - `push`: applying mutations with their dedupe records, versions assigned under a lock.
//! - `pull`: changes after a cursor for the scopes a user may read.
//! - `accounts`: accounts and hashed bearer tokens.

mod accounts;
mod audience;
mod blobs;
mod connection;
mod locks;
mod notify;
mod pull;
mod purge;
mod push;
mod rows;
mod schema;
mod scratch;

pub use blobs::FsBlobStorage;
pub use connection::{ServerConnection, ServerDatabase, ServerPool, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
pub use notify::PgPokeRelay;
pub use scratch::{test_postgres_url, ScratchDatabase, REQUIRE_POSTGRES, TEST_POSTGRES_URL};

use async_trait::async_trait;
use diesel::{
    connection::SimpleConnection,
    prelude::*,
    r2d2::{PooledConnection, R2D2Connection},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};
use trackflow_db::{
    blocking::run_blocking,
    error::{StoreError, StoreResult},
};
use trackflow_domain::{
    entities::Scope,
    ports::{Account, Purged, Retention, ServerStore, ServerStoreError, StoredToken},
    protocol::{PullRequest, PullResponse, PushRequest, PushResponse},
    BlobHash, EntityRef, Timestamp, UserId,
};

/// The server store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct DieselServerStore {
    pool: ServerPool,
    database: Arc<ServerDatabase>,
    /// On SQLite, writes from this process take turns here before they take the database's
    /// write lock, so writers do not queue inside SQLite's busy handler. PostgreSQL's pushes
    /// lock only their own domains (see `locks`) and do not take turns.
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for DieselServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselServerStore")
            .field("database", &self.database.redacted())
            .finish_non_exhaustive()
    }
}

impl DieselServerStore {
    /// Opens the database `url` names (`postgres://...`, a SQLite path, or `sqlite::memory:`),
    /// creating and migrating it as needed. Blocking: call it before the runtime serves
    /// requests, or through `spawn_blocking`.
    pub fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let database = ServerDatabase::parse(url);
        let pool = connection::open(&database, max_connections)?;
        Ok(Self { pool, database: Arc::new(database), writer: Arc::new(Mutex::new(())) })
    }

    /// Which database this store uses.
    pub fn database(&self) -> &ServerDatabase {
        &self.database
    }

    /// On PostgreSQL, a relay carrying pokes between every instance on this database (it
    /// starts listening at once); `None` on SQLite, where one instance owns the database.
    pub fn poke_relay(&self) -> Option<PgPokeRelay> {
        match self.database.as_ref() {
            ServerDatabase::Postgres(url) => Some(PgPokeRelay::start(self.clone(), url.clone())),
            _ => None,
        }
    }

    /// What the store holds of pushes: (mutation records, distinct mutation ids, versions
    /// issued). Every applied mutation is recorded once and issues one version, so the three
    /// are equal exactly when nothing was applied twice; tests and benchmarks check it.
    pub async fn applied_counts(&self) -> Result<AppliedCounts, ServerStoreError> {
        use diesel::{dsl::count, prelude::*};
        use schema::applied_mutations;
        self.with_connection(|conn| {
            let records: i64 = applied_mutations::table.count().get_result(conn).map_err(db_error)?;
            let distinct_ids: i64 = applied_mutations::table
                .select(count(applied_mutations::mutation_id).aggregate_distinct())
                .get_result(conn)
                .map_err(db_error)?;
            let versions = locks::issued(conn).map_err(storage_error)?;
            Ok(AppliedCounts { records, distinct_ids, versions })
        })
        .await
    }

    /// Reclaims the space of deleted and emptied rows and returns the database's size in bytes:
    /// on SQLite `VACUUM` and a WAL checkpoint, then pages × page size; on PostgreSQL
    /// `VACUUM FULL` (which locks each table while it rewrites it: a maintenance operation, not
    /// for busy hours), then `pg_database_size`.
    pub async fn vacuum(&self) -> Result<u64, ServerStoreError> {
        #[derive(QueryableByName)]
        struct Size {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            bytes: i64,
        }
        self.with_connection(|conn| {
            let size: Size = match conn {
                ServerConnection::Pg(pg) => {
                    pg.batch_execute("VACUUM FULL").map_err(db_error)?;
                    diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
                        .get_result(pg)
                        .map_err(db_error)?
                }
                ServerConnection::Sqlite(sqlite) => {
                    sqlite.batch_execute("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);").map_err(db_error)?;
                    diesel::sql_query(
                        "SELECT page_count * page_size AS bytes FROM pragma_page_count(), pragma_page_size()",
                    )
                    .get_result(sqlite)
                    .map_err(db_error)?
                }
            };
            Ok(u64::try_from(size.bytes).unwrap_or(0))
        })
        .await
    }

    /// Runs `work` on a pooled connection, off the async workers.
    async fn with_connection<T, F>(&self, work: F) -> Result<T, ServerStoreError>
    where
        F: FnOnce(&mut ServerConnection) -> Result<T, ServerStoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        run_blocking(move || work(&mut *checkout(&pool)?)).await
    }

    /// Runs `work` in a transaction, on SQLite as the one writer of this process, and again
    /// while its failure says another attempt may succeed ([`push::PushFailure::retry`]).
    async fn write<T, F>(&self, mut work: F) -> Result<T, ServerStoreError>
    where
        F: FnMut(&mut ServerConnection) -> Result<T, push::PushFailure> + Send + 'static,
        T: Send + 'static,
    {
        let (writer, pool) = (self.writer.clone(), self.pool.clone());
        let takes_turns = !matches!(*self.database, ServerDatabase::Postgres(_));
        run_blocking(move || {
            // The turn first, then a connection: pushes waiting their turn hold no connection
            // that pulls and token checks need. A panic while holding the lock leaves nothing
            // behind it: the transaction rolled back.
            let _turn = takes_turns.then(|| writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
            let mut conn = checkout(&pool)?;
            let mut attempt = 0;
            loop {
                match (*conn).transaction(&mut work) {
                    Err(failure) if failure.retry(attempt) => attempt += 1,
                    done => return done.map_err(ServerStoreError::from),
                }
            }
        })
        .await
    }
}

/// A pooled connection, or the port's error when none comes in time.
fn checkout(pool: &ServerPool) -> Result<PooledConnection<connection::Manager>, ServerStoreError> {
    pool.get().map_err(|e| storage_error(StoreError::Pool(e.to_string())))
}

/// See [`DieselServerStore::applied_counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedCounts {
    /// Mutation records (one per applied mutation and sender).
    pub records: i64,
    /// Distinct mutation ids among them.
    pub distinct_ids: i64,
    /// Versions the store has issued.
    pub versions: i64,
}

/// A database failure as the port reports it.
pub(crate) fn storage_error(e: StoreError) -> ServerStoreError {
    let transient = e.is_transient() || is_serialization_failure(&e);
    ServerStoreError::Storage { message: e.to_string(), transient }
}

fn is_serialization_failure(e: &StoreError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        e,
        StoreError::Database(Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection,
            _
        ))
    ) || is_deadlock(e)
}

/// PostgreSQL's "deadlock detected" (40P01), which Diesel does not name: one transaction of the
/// cycle is rolled back, and running it again succeeds. Domains are locked in name order, so this
/// is not expected; it is retried rather than refused if it happens.
pub(crate) fn is_deadlock(e: &StoreError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(e, StoreError::Database(Error::DatabaseError(DatabaseErrorKind::Unknown, info))
        if info.message().starts_with("deadlock detected"))
}

fn db_error(e: diesel::result::Error) -> ServerStoreError {
    storage_error(e.into())
}

#[async_trait]
impl ServerStore for DieselServerStore {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn create_account(&self, account: Account) -> Result<(), ServerStoreError> {
        self.with_connection(move |conn| accounts::create(conn, &account)).await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn find_account(&self, email: &str) -> Result<Option<Account>, ServerStoreError> {
        let email = email.to_owned();
        self.with_connection(move |conn| accounts::find(conn, &email)).await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn save_token(&self, token: StoredToken) -> Result<(), ServerStoreError> {
        self.with_connection(move |conn| accounts::save_token(conn, &token)).await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn user_for_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<UserId>, ServerStoreError> {
        let token_hash = token_hash.to_owned();
        self.with_connection(move |conn| accounts::user_for_token(conn, &token_hash, now)).await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn revoke_token(&self, token_hash: &str) -> Result<(), ServerStoreError> {
        let token_hash = token_hash.to_owned();
        self.with_connection(move |conn| accounts::revoke_token(conn, &token_hash)).await
    }

    #[tracing::instrument(skip_all, fields(%user, mutations = request.mutations.len()), err(level = "debug"))]
    async fn push(&self, user: UserId, request: PushRequest) -> Result<PushResponse, ServerStoreError> {
        push::check_request(&request)?;
        // Domains a failed attempt found it had to hold as well.
        let mut extra = BTreeSet::new();
        self.write(move |conn| {
            let applied = push::apply(conn, user, &request, &extra);
            if let Err(push::PushFailure::Relock(more)) = &applied {
                extra.extend(more.iter().cloned());
            }
            applied
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(%user), err(level = "debug"))]
    async fn pull(&self, user: UserId, request: PullRequest) -> Result<PullResponse, ServerStoreError> {
        self.with_connection(move |conn| {
            let mut answer = None;
            conn.transaction(|conn| {
                // One snapshot for every query of the pull (SQLite's read transaction is one).
                // A pull of everything spans lock domains: it share-locks them instead, and
                // then needs to read what was committed while it waited.
                if let ServerConnection::Pg(pg) = conn {
                    pg.batch_execute(if request.scope.is_none() {
                        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
                    } else {
                        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                    })?;
                }
                answer = Some(pull::pull(conn, user, &request));
                QueryResult::Ok(())
            })
            .map_err(db_error)?;
            answer.unwrap_or_else(|| Err(db_error(diesel::result::Error::RollbackTransaction)))
        })
        .await
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge(&self, now: Timestamp, retention: Retention) -> Result<Purged, ServerStoreError> {
        self.write(move |conn| purge::purge(conn, now, retention).map_err(push::PushFailure::Store)).await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn scopes(
        &self,
        user: UserId,
    ) -> Result<Vec<trackflow_domain::protocol::ScopeHead>, ServerStoreError> {
        self.with_connection(move |conn| pull::scopes(conn, user)).await
    }

    async fn scopes_of(&self, ids: Vec<uuid::Uuid>) -> Result<BTreeSet<Scope>, ServerStoreError> {
        self.with_connection(move |conn| audience::scopes_of(conn, &ids).map_err(storage_error)).await
    }

    async fn audience(
        &self,
        scopes: BTreeSet<Scope>,
    ) -> Result<BTreeMap<Scope, BTreeSet<UserId>>, ServerStoreError> {
        self.with_connection(move |conn| audience::audience(conn, &scopes).map_err(storage_error)).await
    }

    async fn grant_blob(&self, user: UserId, hash: BlobHash, now: Timestamp) -> Result<(), ServerStoreError> {
        self.with_connection(move |conn| {
            audience::grant_blob(conn, user, &hash, now.as_millis()).map_err(storage_error)
        })
        .await
    }

    async fn may_use_blob(&self, user: UserId, hash: BlobHash) -> Result<bool, ServerStoreError> {
        self.with_connection(move |conn| audience::may_use_blob(conn, user, &hash).map_err(storage_error))
            .await
    }

    #[tracing::instrument(skip_all, fields(%user, %entity), err(level = "debug"))]
    async fn entity_file(
        &self,
        user: UserId,
        entity: EntityRef,
    ) -> Result<Option<BlobHash>, ServerStoreError> {
        self.with_connection(move |conn| audience::entity_file(conn, user, entity).map_err(storage_error))
            .await
    }

    async fn ping(&self) -> Result<(), ServerStoreError> {
        self.with_connection(|conn| conn.ping().map_err(db_error)).await
    }
}
