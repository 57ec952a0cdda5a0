//! Settings every SQLite connection of the stores gets.

use diesel::{connection::SimpleConnection, QueryResult, SqliteConnection};
use std::time::Duration;

/// Applies the settings every SQLite connection of a store gets before first use: WAL,
/// `synchronous = NORMAL`, foreign keys on and a busy timeout. Public so benchmarks can give a
/// baseline connection exactly the same settings.
///
/// `busy_timeout` comes first so that switching to WAL waits for other connections instead of
/// failing.
pub fn configure_connection(conn: &mut SqliteConnection, busy_timeout: Duration) -> QueryResult<()> {
    let busy_timeout_ms = busy_timeout.as_millis();
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {busy_timeout_ms};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;"
    ))
}
