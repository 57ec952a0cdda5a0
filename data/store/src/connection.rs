//! Opening the database: connection settings, the pool, migrations and replica identity.

use super::{schema::local_settings, LocalStoreOptions};
use diesel::{
    connection::SimpleConnection,
    prelude::*,
    r2d2::{ConnectionManager, CustomizeConnection, Pool},
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use std::path::Path;
use trackflow_db::{
    error::{StoreError, StoreResult},
    migrate::MigrateError,
    sqlite::configure_connection,
};
use trackflow_domain::{
    entities::{AppMigration, Registry},
    NodeId,
};

/// The client schema migrations (migrations/local), embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/local");

pub(super) struct Opened {
    pub pool: Pool<ConnectionManager<SqliteConnection>>,
    pub replica: NodeId,
    /// The saved offset of the server's clock from the device's.
    pub server_offset_ms: Option<i64>,
}

#[derive(Debug)]
struct Pragmas {
    busy_timeout: std::time::Duration,
    inline_checkpoint: u32,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        configure_connection(conn, self.busy_timeout).map_err(diesel::r2d2::Error::QueryError)?;
        conn.batch_execute(&format!("PRAGMA wal_autocheckpoint = {}", self.inline_checkpoint))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// One connection to the database file at `path`, configured like every pooled one; an error
/// says why the file cannot be opened.
pub(super) fn establish(path: &Path, busy_timeout: std::time::Duration) -> StoreResult<SqliteConnection> {
    let open_error = |message: String| StoreError::Open { path: path.to_owned(), message };
    let url = path.to_str().ok_or_else(|| open_error("the path is not valid UTF-8".into()))?;
    let mut conn = SqliteConnection::establish(url).map_err(|e| open_error(e.to_string()))?;
    configure_connection(&mut conn, busy_timeout).map_err(|e| open_error(e.to_string()))?;
    Ok(conn)
}

pub(super) fn open(options: &LocalStoreOptions, now: trackflow_domain::Timestamp) -> StoreResult<Opened> {
    let path = &options.path;
    let open_error = |message: String| StoreError::Open { path: path.clone(), message };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
    }
    let url = path.to_str().ok_or_else(|| open_error("the path is not valid UTF-8".into()))?;

    // One direct connection first: it reports the real reason if the file cannot be opened
    // (r2d2 would only time out), and it migrates before the pool hands out connections.
    let mut conn = establish(path, options.busy_timeout)?;
    migrate(&mut conn, path)?;
    migrate_app(&mut conn, Registry::global().schema())?;
    super::renamed::move_renamed_fields(&mut conn)?;
    super::upstream::recount_queued_if_asked(&mut conn)?;
    super::kept::let_in_declared(&mut conn, now)?;
    let replica = replica_id(&mut conn)?;
    let server_offset_ms = super::records::saved_offset(&mut conn)?;
    // Keep the clock floor where the queue has it, so it survives the queue being emptied. In a
    // write transaction, so a concurrent raise cannot be overwritten with an older value.
    conn.immediate_transaction(|conn| match super::outbox::newest_hlc(conn)? {
        Some(newest) => super::records::raise_high_water(conn, newest),
        None => Ok(()),
    })?;
    drop(conn);

    let pool = Pool::builder()
        .max_size(options.max_connections.max(1))
        .min_idle(Some(1))
        // Connections are local files; a `SELECT 1` on every checkout buys nothing.
        .test_on_check_out(false)
        .connection_timeout(options.busy_timeout.max(std::time::Duration::from_secs(1)))
        .connection_customizer(Box::new(Pragmas {
            busy_timeout: options.busy_timeout,
            inline_checkpoint: options.checkpoint.inline_pages,
        }))
        .build(ConnectionManager::<SqliteConnection>::new(url))
        .map_err(|e| open_error(e.to_string()))?;
    Ok(Opened { pool, replica, server_offset_ms })
}

/// Applies pending migrations, refusing a file that holds migrations this build does not know
/// (it was written by a newer build). Check and migration share one write transaction, so two
/// processes opening a new file at once cannot both migrate it.
pub(super) fn migrate(conn: &mut SqliteConnection, path: &Path) -> StoreResult<()> {
    conn.immediate_transaction(|conn| {
        trackflow_db::migrate::apply(conn, MIGRATIONS).map_err(|e| match e {
            MigrateError::Newer { found, known } => {
                StoreError::NewerSchema { path: path.to_owned(), found, known }
            }
            MigrateError::Failed(message) => StoreError::Migration(message),
        })
    })
}

/// Applies the installed registry's migrations (the tables of the program's types) not applied
/// yet, in version order, each in one write transaction with its record.
pub(super) fn migrate_app(conn: &mut SqliteConnection, schema: &[AppMigration]) -> StoreResult<()> {
    use super::schema::app_migrations::dsl::{app_migrations, applied_at, version};
    for migration in schema {
        conn.immediate_transaction(|conn| {
            let done: i64 = app_migrations.filter(version.eq(migration.version)).count().get_result(conn)?;
            if done == 0 {
                conn.batch_execute(migration.up)
                    .map_err(|e| StoreError::Migration(format!("{}: {e}", migration.version)))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                diesel::insert_into(app_migrations)
                    .values((version.eq(migration.version), applied_at.eq(now)))
                    .execute(conn)?;
            }
            StoreResult::Ok(())
        })?;
    }
    Ok(())
}

/// This replica's id, created on first open.
fn replica_id(conn: &mut SqliteConnection) -> StoreResult<NodeId> {
    const KEY: &str = "replica_id";
    conn.immediate_transaction(|conn| {
        let stored: Option<String> =
            local_settings::table.find(KEY).select(local_settings::value).get_result(conn).optional()?;
        match stored {
            Some(text) => text.parse().map_err(|e| StoreError::corrupt("local_settings", e)),
            None => {
                let id = NodeId::new();
                diesel::insert_into(local_settings::table)
                    .values((local_settings::key.eq(KEY), local_settings::value.eq(id.to_string())))
                    .execute(conn)?;
                Ok(id)
            }
        }
    })
}
