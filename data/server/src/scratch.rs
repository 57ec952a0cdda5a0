//! Throwaway PostgreSQL databases, for tests and benchmarks that each need a fresh one.

use diesel::{prelude::*, sql_query};
use trackflow_db::error::{StoreError, StoreResult};

/// A database created on an existing PostgreSQL server and dropped (connections and all) when
/// this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<uuid>` on the server `admin_url` points at (its user must be allowed
    /// to create databases).
    pub fn create(admin_url: &str, prefix: &str) -> StoreResult<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let open_error = |e: String| StoreError::Open { path: "postgres".into(), message: e };
        let mut conn = PgConnection::establish(admin_url).map_err(|e| open_error(e.to_string()))?;
        sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
        Ok(Self { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name })
    }

    /// The new database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let _ =
                sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}
