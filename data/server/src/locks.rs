//! Lock domains and versions: what lets pushes to different projects commit concurrently while
//! a pull still never skips a change.
//!
//! Every row has a version, and a pull trusts that once it has seen version `v` of a scope,
//! every change of that scope below `v` is visible. That holds when a scope's changes commit in
//! version order. Pushes therefore lock their *domains* (rows of `scope_locks`), in name order so
//! two pushes never wait for each other in a circle, before they take versions:
//!
//! - a project is a domain of its own (it and everything in it);
//! - `people` covers every user scope and every membership: a user's profile stream mixes many
//!   users' scopes, and a membership's version decides from where a fellow member's profile is
//!   read, so those must be ordered together. Writes there are rare (profiles, collaborators).
//!
//! Versions come from one counter (a sequence on PostgreSQL), so they still compare across
//! domains; only their commit order is per domain. A pull of one domain needs nothing more. A
//! pull spanning several (scope `None`: everything a user reads) share-locks their rows first,
//! so it waits for pushes in flight there and holds new ones back for its few queries.
//!
//! SQLite has one writer at a time: a push takes the database's write lock first, which covers
//! every domain, and reads see one snapshot, so none of this locking happens there, and
//! versions come from the counter in `server_meta` as they always did (no `scope_locks`).

use super::{
    connection::ServerConnection,
    schema::{scope_locks, server_meta},
};
use diesel::{prelude::*, sql_types::BigInt};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use trackflow_db::error::StoreError;
use trackflow_domain::{entities::Scope, EntityType};

/// The domain of every user scope and of memberships.
pub(super) const PEOPLE: &str = "people";

/// The lock domain of a scope.
pub(super) fn domain(scope: Scope) -> String {
    match scope {
        Scope::Shared(_) => scope.to_string(),
        Scope::User(_) => PEOPLE.to_owned(),
    }
}

/// The domains a write of an `entity_type` in `scope` must hold: its scope's, and `people`
/// when the type grants membership (a scope root grants its owner, a member record its user).
pub(super) fn domains_of(entity_type: EntityType, scope: Scope) -> impl Iterator<Item = String> {
    let grants = entity_type.is_scope_root() || entity_type.member_field().is_some();
    std::iter::once(domain(scope)).chain(grants.then(|| PEOPLE.to_owned()))
}

/// What a push transaction holds.
#[derive(Debug)]
pub(super) enum Held {
    /// SQLite's write lock: every domain.
    Database,
    /// These domains' rows (PostgreSQL).
    Domains(BTreeSet<String>),
}

impl Held {
    /// Whether writing in `domain` is ordered by what is held.
    pub fn covers(&self, domain: &str) -> bool {
        match self {
            Held::Database => true,
            Held::Domains(held) => held.contains(domain),
        }
    }
}

/// Takes the write lock of each domain, in name order (a `BTreeSet` iterates in order).
/// On PostgreSQL an upsert locks the row, waiting for any push holding it, and creates it for a
/// domain's first push; nothing to do on SQLite, whose write lock covers every domain.
pub(super) fn lock(conn: &mut ServerConnection, domains: &BTreeSet<String>) -> Result<(), StoreError> {
    let ServerConnection::Pg(pg) = conn else { return Ok(()) };
    for name in domains {
        diesel::insert_into(scope_locks::table)
            .values((scope_locks::scope.eq(name), scope_locks::issued.eq(0)))
            .on_conflict(scope_locks::scope)
            .do_update()
            .set(scope_locks::issued.eq(scope_locks::issued))
            .execute(pg)?;
    }
    Ok(())
}

/// Share-locks the domains of the `scopes` a pull reads, in name order, waiting for pushes in
/// flight there; on PostgreSQL, in a READ COMMITTED transaction (nothing to do on SQLite).
/// Returns whether it locked anything. Every domain that exists has its row (the migration made
/// them; a new project's first push makes its own while holding `people`, which a pull of
/// everything holds first), so nothing is inserted here: an inserted row would be held
/// exclusively to the end of the pull.
pub(super) fn share(
    conn: &mut ServerConnection,
    scopes: impl Iterator<Item = Scope>,
) -> Result<bool, StoreError> {
    let ServerConnection::Pg(pg) = conn else { return Ok(false) };
    let domains: BTreeSet<String> = scopes.map(domain).collect();
    // Rows are locked as the sorted result is produced: in name order.
    scope_locks::table
        .filter(scope_locks::scope.eq_any(&domains))
        .order(scope_locks::scope)
        .select(scope_locks::scope)
        .for_share()
        .load::<String>(pg)?;
    Ok(true)
}

/// Versions for one push, taken after the locks; they only grow.
pub(super) enum Versions {
    /// SQLite: the counter in `server_meta`, read once (the write lock is held), counted up in
    /// memory and written back at the end, as one writer at a time can.
    Counter { last: i64 },
    /// PostgreSQL: blocks from the sequence, and the count per domain for
    /// `scope_locks.issued` (a block's unused versions are never used).
    Sequence { ready: VecDeque<i64>, block: usize, issued: BTreeMap<String, i64> },
}

impl Versions {
    /// Versions for a push of about `expected` of them (its mutation count).
    pub fn new(conn: &mut ServerConnection, expected: usize) -> Result<Self, StoreError> {
        Ok(match conn {
            ServerConnection::Pg(_) => {
                Versions::Sequence { ready: VecDeque::new(), block: expected.max(1), issued: BTreeMap::new() }
            }
            ServerConnection::Sqlite(_) => Versions::Counter { last: newest(conn)? },
        })
    }

    /// The next version, for a write in `scope`.
    pub fn next(&mut self, conn: &mut ServerConnection, scope: Scope) -> Result<i64, StoreError> {
        match self {
            Versions::Counter { last } => {
                *last += 1;
                Ok(*last)
            }
            Versions::Sequence { ready, block, issued } => {
                if ready.is_empty() {
                    *ready = allocate(conn, *block)?.into();
                    // A delete reaching thousands of children: fewer, larger blocks.
                    *block = (*block * 2).min(10_000);
                }
                *issued.entry(domain(scope)).or_default() += 1;
                Ok(ready.pop_front().expect("a block is never empty"))
            }
        }
    }

    /// Writes the counter back (SQLite), or adds what this push issued to each domain's count
    /// (PostgreSQL; the domains are locked, so the rows exist).
    pub fn record(self, conn: &mut ServerConnection) -> Result<(), StoreError> {
        match self {
            Versions::Counter { last } => {
                diesel::update(server_meta::table.find(1))
                    .set(server_meta::last_version.eq(last))
                    .execute(conn)?;
            }
            Versions::Sequence { issued, .. } => {
                for (name, count) in &issued {
                    diesel::update(scope_locks::table.find(name))
                        .set(scope_locks::issued.eq(scope_locks::issued + count))
                        .execute(conn)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// `n` new versions from the sequence, in increasing order. One statement's nextval calls
/// return increasing values, not always consecutive ones (other pushes draw at the same time).
fn allocate(conn: &mut ServerConnection, n: usize) -> Result<Vec<i64>, StoreError> {
    let ServerConnection::Pg(pg) = conn else { unreachable!("SQLite counts in memory") };
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    Ok(diesel::sql_query("SELECT nextval('entity_versions') AS value FROM generate_series(1, $1) ORDER BY 1")
        .bind::<BigInt, _>(n)
        .load::<Value>(pg)?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

/// The newest version handed out (committed or not): a cursor beyond it is not from here.
pub(super) fn newest(conn: &mut ServerConnection) -> Result<i64, StoreError> {
    match conn {
        ServerConnection::Pg(pg) => Ok(diesel::sql_query(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS value FROM entity_versions",
        )
        .get_result::<Value>(pg)?
        .value),
        ServerConnection::Sqlite(_) => {
            Ok(server_meta::table.find(1).select(server_meta::last_version).get_result(conn)?)
        }
    }
}

/// Versions issued by every push, in all domains: on SQLite the counter (it has no gaps), on
/// PostgreSQL the domains' counts.
pub(super) fn issued(conn: &mut ServerConnection) -> Result<i64, StoreError> {
    match conn {
        ServerConnection::Sqlite(_) => newest(conn),
        // Summed here: SUM of a BIGINT is NUMERIC on PostgreSQL. One row per domain.
        ServerConnection::Pg(pg) => {
            Ok(scope_locks::table.select(scope_locks::issued).load::<i64>(pg)?.iter().sum())
        }
    }
}
