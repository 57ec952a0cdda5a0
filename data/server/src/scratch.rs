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

/// The variable naming the PostgreSQL server test suites create scratch databases on.
pub const TEST_POSTGRES_URL: &str = "TRACKFLOW_TEST_POSTGRES_URL";
/// The variable that, when set, makes a suite without [`TEST_POSTGRES_URL`] fail instead of
/// skipping its PostgreSQL half (CI sets it, so a missing database cannot pass unseen).
pub const REQUIRE_POSTGRES: &str = "TRACKFLOW_REQUIRE_POSTGRES";

/// The PostgreSQL server `suite` should use, from the environment: `None` (said loudly on
/// stderr, past the test harness's capture) when none is configured and none is required.
///
/// # Panics
/// When none is configured but [`REQUIRE_POSTGRES`] is set.
pub fn test_postgres_url(suite: &str) -> Option<String> {
    postgres_url_from(
        std::env::var(TEST_POSTGRES_URL).ok(),
        std::env::var_os(REQUIRE_POSTGRES).is_some(),
        suite,
    )
}

/// [`test_postgres_url`] with the environment passed in.
fn postgres_url_from(url: Option<String>, required: bool, suite: &str) -> Option<String> {
    match (url, required) {
        (Some(url), _) => Some(url),
        (None, true) => {
            panic!("{suite} needs PostgreSQL: {REQUIRE_POSTGRES} is set but {TEST_POSTGRES_URL} is not")
        }
        (None, false) => {
            use std::io::Write as _;
            let _ =
                writeln!(std::io::stderr(), "SKIPPED {suite} on PostgreSQL: {TEST_POSTGRES_URL} is not set");
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::postgres_url_from;

    #[test]
    fn a_missing_database_skips_unless_one_is_required() {
        assert_eq!(
            postgres_url_from(Some("postgres://x/y".into()), true, "s"),
            Some("postgres://x/y".into())
        );
        assert_eq!(
            postgres_url_from(None, false, "(the check of skipping itself)"),
            None,
            "skipped, and said so"
        );
        let required = std::panic::catch_unwind(|| postgres_url_from(None, true, "the contract suite"));
        let message = required.expect_err("a required database that is missing fails");
        let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("the contract suite needs PostgreSQL"), "{text}");
    }
}
