//! Applying embedded migrations, shared by the local store and the server store.

use diesel::{backend::Backend, migration::MigrationSource};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// Why migrating failed.
pub enum MigrateError {
    /// The database holds a migration this build does not know: a newer build wrote it.
    Newer {
        /// The newest unknown migration found.
        found: String,
        /// The newest migration this build knows.
        known: String,
    },
    /// Reading or applying migrations failed.
    Failed(String),
}

/// Applies the pending migrations of `source`, refusing a database that holds migrations this
/// build does not know. The caller decides what makes this safe against a concurrent migrator
/// (a write transaction on SQLite, an advisory lock on PostgreSQL).
pub fn apply<DB: Backend>(
    conn: &mut impl MigrationHarness<DB>,
    source: EmbeddedMigrations,
) -> Result<(), MigrateError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| MigrateError::Failed(e.to_string());
    let known: Vec<String> = MigrationSource::<DB>::migrations(&source)
        .map_err(failed)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied = conn.applied_migrations().map_err(failed)?;
    let newest_unknown = applied.iter().map(ToString::to_string).filter(|v| !known.contains(v)).max();
    if let Some(found) = newest_unknown {
        return Err(MigrateError::Newer { found, known: known.iter().max().cloned().unwrap_or_default() });
    }
    conn.run_pending_migrations(source).map_err(failed)?;
    Ok(())
}
