//! Errors of the data layer and how they map onto the domain's port errors.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::path::PathBuf;
use trackflow_domain::{EntityRef, RepositoryError, ValidationError};

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or configured.
    #[error("cannot open the local database at {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file was migrated by a newer build; opening it could corrupt data this build does
    /// not understand.
    #[error(
        "the database at {path} was written by a newer TrackFlow (schema {found}); this build \
         knows schemas up to {known}. Upgrade TrackFlow to open it"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The newest schema version found in the file.
        found: String,
        /// The newest schema version this build embeds.
        known: String,
    },
    /// Applying migrations failed.
    #[error("migrating the database failed: {0}")]
    Migration(String),
    /// A Diesel or SQLite error.
    #[error(transparent)]
    Database(#[from] DieselError),
    /// No pooled connection could be had in time.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// A stored row does not decode into a valid entity or operation.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What failed to decode.
        message: String,
    },
    /// The entity does not exist (or only as a tombstone).
    #[error("{0} not found")]
    NotFound(EntityRef),
    /// The input breaks a domain rule.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The write contradicts stored state.
    #[error("{0}")]
    Conflict(String),
    /// The signed-in user's known role does not allow the write.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// A file of the audio cache could not be read or written.
    #[error("{action} {path}: {message}")]
    File {
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's explanation.
        message: String,
    },
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// A decoding failure of a row of `table`.
    pub fn corrupt(table: &'static str, message: impl ToString) -> Self {
        StoreError::Corrupt { table, message: message.to_string() }
    }

    /// Whether `message` (an error's text) is SQLite saying that the database file is damaged:
    /// `SQLITE_CORRUPT` or `SQLITE_NOTADB`. Errors reach the caller through several layers, some
    /// as text, so the text is what is checked; these are SQLite's fixed messages for the two
    /// codes.
    pub fn is_damage(message: &str) -> bool {
        message.contains("database disk image is malformed") || message.contains("file is not a database")
    }

    /// Whether the same call may succeed if retried (the database was busy or the pool
    /// exhausted).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Database(DieselError::DatabaseError(_, info)) => {
                let message = info.message();
                message.contains("database is locked") || message.contains("database is busy")
            }
            _ => false,
        }
    }
}

impl From<StoreError> for RepositoryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(entity) => RepositoryError::NotFound(entity),
            StoreError::Validation(v) => RepositoryError::Validation(v),
            StoreError::Conflict(message) => RepositoryError::Conflict(message),
            StoreError::Forbidden(message) => RepositoryError::Forbidden(message),
            StoreError::Database(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::ForeignKeyViolation,
                info,
            )) => RepositoryError::Conflict(info.message().to_owned()),
            other => RepositoryError::Storage { transient: other.is_transient(), message: other.to_string() },
        }
    }
}
