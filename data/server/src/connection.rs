//! Connecting the server store: one connection type over SQLite and PostgreSQL, the pool, and
//! migrations (on PostgreSQL under an advisory lock, so instances starting together are safe).

use diesel::{
    connection::SimpleConnection,
    prelude::*,
    r2d2::{CustomizeConnection, ManageConnection, Pool, R2D2Connection},
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use std::{path::PathBuf, time::Duration};
use trackflow_db::{
    error::{StoreError, StoreResult},
    migrate::{self, MigrateError},
};

/// The server schema on SQLite (migrations/server-sqlite).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/server-sqlite");
/// The server schema on PostgreSQL (migrations/server-postgres).
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/server-postgres");

/// Key of the session advisory lock held while migrating PostgreSQL ("trackflow" in ASCII).
const MIGRATION_LOCK: i64 = 0x7472_6163_6b66_6c6f;

/// A connection to either backend. Queries written once against it run on both.
#[derive(diesel::MultiConnection)]
pub enum ServerConnection {
    /// PostgreSQL.
    Pg(PgConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$conn` bound to the concrete connection of either backend, for the
/// statements the multi-backend connection cannot express (multi-row inserts).
macro_rules! on_each_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::ServerConnection::Pg($c) => $body,
            $crate::ServerConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_each_backend;

/// Which database a server store uses, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerDatabase {
    /// `postgres://...` or `postgresql://...`.
    Postgres(String),
    /// A SQLite file: a path, or `sqlite://path`.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database (`sqlite::memory:` or `:memory:`), for tests.
    SqliteMemory,
}

impl ServerDatabase {
    /// Parses a database URL.
    pub fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            ServerDatabase::Postgres(url.to_owned())
        } else if url == ":memory:" || url == "sqlite::memory:" {
            ServerDatabase::SqliteMemory
        } else {
            ServerDatabase::SqliteFile(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url)))
        }
    }

    /// The URL with any password removed, for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            ServerDatabase::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let userinfo = &url[scheme + 3..at];
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{}{user}{}", &url[..scheme + 3], &url[at..])
                }
                _ => url.clone(),
            },
            ServerDatabase::SqliteFile(path) => path.display().to_string(),
            ServerDatabase::SqliteMemory => ":memory:".to_owned(),
        }
    }
}

#[derive(Debug)]
struct Setup {
    busy_timeout: Duration,
}

impl CustomizeConnection<ServerConnection, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut ServerConnection) -> Result<(), diesel::r2d2::Error> {
        configure(conn, self.busy_timeout).map_err(diesel::r2d2::Error::QueryError)
    }
}

fn configure(conn: &mut ServerConnection, busy_timeout: Duration) -> QueryResult<()> {
    match conn {
        // The client store's settings: WAL, synchronous=NORMAL, foreign keys, busy timeout.
        ServerConnection::Sqlite(conn) => trackflow_db::sqlite::configure_connection(conn, busy_timeout),
        // Pushes look rows up with `= ANY($1)` over up to 500 ids. A generic cached plan is made
        // before the tables have statistics and then sticks to a sequential scan (measured: one
        // second per 500-row lookup at 100k rows); custom plans see the array and use the index.
        ServerConnection::Pg(conn) => conn.batch_execute("SET plan_cache_mode = force_custom_plan"),
    }
}

/// Makes connections of the one backend a store was opened with. (The derived
/// `ServerConnection::establish` would try PostgreSQL first with any URL.)
#[derive(Debug)]
pub struct Manager {
    postgres: bool,
    url: String,
}

impl Manager {
    fn establish(&self) -> ConnectionResult<ServerConnection> {
        if self.postgres {
            PgConnection::establish(&self.url).map(ServerConnection::Pg)
        } else {
            SqliteConnection::establish(&self.url).map(ServerConnection::Sqlite)
        }
    }
}

impl ManageConnection for Manager {
    type Connection = ServerConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<ServerConnection, Self::Error> {
        self.establish().map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut ServerConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut ServerConnection) -> bool {
        conn.is_broken()
    }
}

/// The pool type of the server store.
pub type ServerPool = Pool<Manager>;

/// Opens (creating and migrating if needed) the database and returns a pool of connections.
pub fn open(database: &ServerDatabase, max_connections: u32) -> StoreResult<ServerPool> {
    let open_error = |message: String| StoreError::Open { path: database.redacted().into(), message };
    let busy_timeout = Duration::from_secs(5);
    let (url, max_connections) = match database {
        ServerDatabase::Postgres(url) => (url.clone(), max_connections),
        ServerDatabase::SqliteFile(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
            }
            let url = path.to_str().ok_or_else(|| open_error("the path is not valid UTF-8".into()))?;
            (url.to_owned(), max_connections)
        }
        // A named shared-cache database lives while one connection to it is open: the pool
        // keeps exactly one, forever.
        ServerDatabase::SqliteMemory => {
            (format!("file:trackflow-{}?mode=memory&cache=shared", uuid::Uuid::now_v7().simple()), 1)
        }
    };
    // Connect directly first: a bad URL or an unreachable server is reported as such (r2d2
    // would only time out), and migration happens before the pool hands out connections.
    let manager = Manager { postgres: matches!(database, ServerDatabase::Postgres(_)), url };
    let mut conn = manager.establish().map_err(|e| open_error(e.to_string()))?;
    configure(&mut conn, busy_timeout).map_err(|e| open_error(e.to_string()))?;
    migrate_server(&mut conn, database)?;

    let pool = Pool::builder()
        .max_size(max_connections.max(1))
        .min_idle(Some(1))
        .max_lifetime(None)
        .idle_timeout(None)
        .connection_timeout(busy_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(Setup { busy_timeout }))
        .build(manager)
        .map_err(|e| open_error(e.to_string()))?;
    // Only now: an in-memory database must not lose its last connection before the pool has one.
    drop(conn);
    Ok(pool)
}

fn migrate_server(conn: &mut ServerConnection, database: &ServerDatabase) -> StoreResult<()> {
    let to_store_error = |e: MigrateError| match e {
        MigrateError::Newer { found, known } => {
            StoreError::NewerSchema { path: database.redacted().into(), found, known }
        }
        MigrateError::Failed(message) => StoreError::Migration(message),
    };
    match conn {
        ServerConnection::Sqlite(conn) => {
            conn.immediate_transaction(|conn| migrate::apply(conn, SQLITE_MIGRATIONS).map_err(to_store_error))
        }
        ServerConnection::Pg(conn) => {
            // A session lock, since each migration runs in a transaction of its own.
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(conn)?;
            let result = migrate::apply(conn, POSTGRES_MIGRATIONS).map_err(to_store_error);
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(conn)?;
            result
        }
    }
}
