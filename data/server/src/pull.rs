//! Pulling: the changes a user may see, after their cursor, in pages.
//!
//! Every row has a version from one counter; within a lock domain (a project, or `people`: every
//! user scope) pushes commit in version order (see `locks`), so a pull of one domain that has
//! seen version `v` has seen every version below it there. A pull of everything spans domains
//! and share-locks them first.
//!
//! Access is per scope (a user's profile, or a project with everything in it), and each scope a
//! user can read carries the version at which access was granted. A row's place in the user's
//! stream is its *effective version*, `max(version, granted)`: a user added to a project at
//! version `g` receives the project's older rows as if they had changed at `g`. The cursor is the last
//! `(effective version, version)` delivered, so the backfill pages like any other change.
//!
//! Cost: one indexed range scan on `(scope, version)` over the readable scopes, reading only
//! rows after the cursor, plus, in grant order until the page is full, one per scope granted
//! since the cursor. It grows with the changes returned and the user's memberships, not with
//! the size of the database.

use super::{
    connection::ServerConnection,
    locks,
    rows::{meta, EntityRow, Meta},
    schema::{entities, memberships},
};
use diesel::prelude::*;
use std::collections::BTreeMap;
use trackflow_db::error::StoreError;
use trackflow_domain::{
    entities::Scope,
    ports::ServerStoreError,
    protocol::{PullRequest, PullResponse, ScopeHead, MAX_PULL_LIMIT, PEOPLE_SCOPE},
    ScopeId, UserId,
};

/// Where a pull stopped: the last `(effective version, version)` delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    effective: i64,
    version: i64,
}

impl Position {
    const START: Position = Position { effective: 0, version: 0 };
}

/// Cursors name the database they came from, so a cursor from another server's database is
/// recognised and answered with a reset. (A restored backup keeps its epoch: see
/// docs/decisions.md.)
fn encode_cursor(meta: &Meta, at: Position) -> String {
    format!("{}.{}.{}", meta.epoch, at.effective, at.version)
}

/// The cursor's position, or `None` when the client must start over: the cursor is malformed,
/// from another database, ahead of this one, or older than purged tombstones.
fn decode_cursor(meta: &Meta, cursor: &str) -> Option<Position> {
    let mut parts = cursor.split('.');
    let (epoch, effective, version) = (parts.next()?, parts.next()?, parts.next()?);
    let at = Position { effective: effective.parse().ok()?, version: version.parse().ok()? };
    let valid = parts.next().is_none()
        && epoch == meta.epoch
        && at.version >= 0
        && at.version <= at.effective
        && at.effective <= meta.last_version
        && at.effective >= meta.purged_through;
    valid.then_some(at)
}

/// The scopes `user` may read, with the version from which each is readable.
pub(super) fn readable_scopes(
    conn: &mut ServerConnection,
    user: UserId,
) -> Result<BTreeMap<Scope, i64>, StoreError> {
    let corrupt = |e: uuid::Error| StoreError::corrupt("memberships", e);
    let mut scopes = BTreeMap::from([(Scope::User(user), 0)]);
    let mine: Vec<(String, i64)> = memberships::table
        .filter(memberships::user_id.eq(user.to_string()))
        .select((memberships::project_id, memberships::granted_version))
        .load(conn)?;
    if mine.is_empty() {
        return Ok(scopes);
    }
    let mut my_grant = BTreeMap::new();
    for (project, granted) in &mine {
        let id = ScopeId::from_uuid(project.parse().map_err(corrupt)?);
        scopes.insert(Scope::Shared(id), *granted);
        my_grant.insert(project.clone(), *granted);
    }
    // Fellow members' profiles, readable since both belonged to a shared project.
    let fellows: Vec<(String, String, i64)> = memberships::table
        .filter(memberships::project_id.eq_any(my_grant.keys()))
        .filter(memberships::user_id.ne(user.to_string()))
        .select((memberships::user_id, memberships::project_id, memberships::granted_version))
        .load(conn)?;
    for (fellow, project, granted) in fellows {
        let since = granted.max(my_grant[&project]);
        let scope = Scope::User(UserId::from_uuid(fellow.parse().map_err(corrupt)?));
        scopes.entry(scope).and_modify(|g| *g = (*g).min(since)).or_insert(since);
    }
    Ok(scopes)
}

/// The readable scopes a pull of `scope` covers: all of them, the user scopes
/// ([`PEOPLE_SCOPE`]), or one project.
fn requested(
    readable: BTreeMap<Scope, i64>,
    scope: Option<&str>,
) -> Result<BTreeMap<Scope, i64>, ServerStoreError> {
    let Some(name) = scope else { return Ok(readable) };
    if name == PEOPLE_SCOPE {
        return Ok(readable.into_iter().filter(|(s, _)| matches!(s, Scope::User(_))).collect());
    }
    let invalid = |message: String| ServerStoreError::BadInput {
        code: "invalid_scope".into(),
        message,
        mutation_id: None,
    };
    match name.parse::<Scope>() {
        Ok(wanted @ Scope::Shared(_)) => match readable.get(&wanted) {
            Some(granted) => Ok(BTreeMap::from([(wanted, *granted)])),
            None => Err(ServerStoreError::BadInput {
                code: "scope_not_readable".into(),
                message: format!("scope: {name} is not readable by this user (removed, or never shared)"),
                mutation_id: None,
            }),
        },
        _ => Err(invalid(format!("scope: must be '{PEOPLE_SCOPE}' or 'project:<uuid>', got '{name}'"))),
    }
}

/// The scopes `user` may pull, with their heads: [`PEOPLE_SCOPE`], then their projects in the
/// order they were granted. A head is the largest effective version in the scope (a row's
/// version, or the grant when later): one seek per readable scope to the end of its
/// `(scope, version)` index.
pub(super) fn scopes(conn: &mut ServerConnection, user: UserId) -> Result<Vec<ScopeHead>, ServerStoreError> {
    let store_error = super::storage_error;
    let readable = readable_scopes(conn, user).map_err(store_error)?;
    let names: Vec<String> = readable.keys().map(ToString::to_string).collect();
    // One lookup per scope: each is a seek to the end of the (scope, version) index, where a
    // grouped MAX would read every row of the user's scopes.
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for name in names {
        let head: Option<i64> = entities::table
            .filter(entities::scope.eq(&name))
            .select(diesel::dsl::max(entities::version))
            .get_result(conn)
            .map_err(|e| store_error(e.into()))?;
        if let Some(head) = head {
            newest.insert(name, head);
        }
    }
    let head =
        |scope: &Scope, granted: i64| newest.get(&scope.to_string()).copied().unwrap_or(0).max(granted);
    let people = readable.iter().filter(|(s, _)| matches!(s, Scope::User(_))).map(|(s, g)| head(s, *g)).max();
    let mut projects: Vec<(i64, ScopeHead)> = readable
        .iter()
        .filter(|(s, _)| matches!(s, Scope::Shared(_)))
        .map(|(s, g)| (*g, ScopeHead { scope: s.to_string(), head: head(s, *g) }))
        .collect();
    projects.sort_by(|a, b| (a.0, &a.1.scope).cmp(&(b.0, &b.1.scope)));
    let people = ScopeHead { scope: PEOPLE_SCOPE.to_owned(), head: people.unwrap_or(0) };
    Ok(std::iter::once(people).chain(projects.into_iter().map(|(_, h)| h)).collect())
}

/// Answers a pull. Call inside a read transaction, so every query sees one snapshot.
pub(super) fn pull(
    conn: &mut ServerConnection,
    user: UserId,
    request: &PullRequest,
) -> Result<PullResponse, ServerStoreError> {
    if request.limit == 0 || request.limit > MAX_PULL_LIMIT {
        return Err(ServerStoreError::BadInput {
            code: "invalid_limit".into(),
            message: format!("limit: must be between 1 and {MAX_PULL_LIMIT}, got {}", request.limit),
            mutation_id: None,
        });
    }
    let store_error = super::storage_error;
    // The request is judged whole before the cursor: a bad scope is a bad request, whatever
    // the cursor says.
    // A pull of everything share-locks `people` first (it sorts before every project): then
    // memberships cannot change, the readable scopes read next are final, and their projects
    // are share-locked in one ordered pass.
    if request.scope.is_none() {
        locks::share(conn, std::iter::once(Scope::User(user))).map_err(store_error)?;
    }
    let readable = readable_scopes(conn, user).map_err(store_error)?;
    if request.scope.is_none() {
        locks::share(conn, readable.keys().copied().filter(|s| matches!(s, Scope::Shared(_))))
            .map_err(store_error)?;
    }
    let scopes = requested(readable, request.scope.as_deref())?;
    let meta = meta(conn).map_err(store_error)?;
    let after = match request.cursor.as_deref() {
        None => Position::START,
        Some(cursor) => match decode_cursor(&meta, cursor) {
            Some(at) => at,
            None => return Ok(PullResponse::Reset),
        },
    };
    let limit = i64::from(request.limit);

    // Scopes readable since before the cursor: only rows changed after it. One query for all.
    // Their rows sit at their own version, so a row is after the cursor when its version is
    // above the cursor's effective version — or equal to it while the cursor is inside the
    // group placed there: a fellow member's profile placed at the version of the collaborator
    // record that made them fellows comes before that record, which lives in a settled scope.
    let settled_after = if after.version < after.effective { after.effective - 1 } else { after.effective };
    let settled: Vec<String> = scopes
        .iter()
        .filter(|(_, granted)| **granted < after.effective)
        .map(|(s, _)| s.to_string())
        .collect();
    let mut rows: Vec<(Position, EntityRow)> = Vec::new();
    if !settled.is_empty() {
        let changed: Vec<EntityRow> = entities::table
            .filter(entities::scope.eq_any(&settled))
            .filter(entities::version.gt(settled_after))
            .order(entities::version)
            .limit(limit + 1)
            .load(conn)
            .map_err(|e| store_error(e.into()))?;
        rows.extend(changed.into_iter().map(|r| (Position { effective: r.version, version: r.version }, r)));
    }
    // Scopes granted at or after the cursor: their whole content, placed at the grant. In grant
    // order, stopping once the page is full of rows placed before the next grant: a first sync
    // of a user in many projects reads one project's backfill at a time, not all of them on
    // every page.
    let mut granted_later: Vec<(Scope, i64)> =
        scopes.iter().filter(|(_, granted)| **granted >= after.effective).map(|(s, g)| (*s, *g)).collect();
    granted_later.sort_by_key(|(_, granted)| *granted);
    for (scope, granted) in &granted_later {
        if rows.len() > request.limit as usize {
            rows.sort_by_key(|(at, _)| *at);
            rows.truncate(request.limit as usize + 1);
            // The page's last row (and the row that tells `has_more`) lie before anything this
            // scope holds, which starts at its grant.
            if rows.last().is_some_and(|(at, _)| at.effective < *granted) {
                break;
            }
        }
        let from = if *granted == after.effective { after.version } else { 0 };
        let backfill: Vec<EntityRow> = entities::table
            .filter(entities::scope.eq(scope.to_string()))
            .filter(entities::version.gt(from))
            .order(entities::version)
            .limit(limit + 1)
            .load(conn)
            .map_err(|e| store_error(e.into()))?;
        rows.extend(
            backfill
                .into_iter()
                .map(|r| (Position { effective: r.version.max(*granted), version: r.version }, r)),
        );
    }
    rows.sort_by_key(|(at, _)| *at);
    let has_more = rows.len() > request.limit as usize;
    rows.truncate(request.limit as usize);
    let next = rows.last().map_or(after, |(at, _)| *at);
    let changes =
        rows.iter().map(|(_, row)| row.to_wire()).collect::<Result<Vec<_>, _>>().map_err(store_error)?;
    Ok(PullResponse::Changes {
        changes,
        unknown: Vec::new(),
        next_cursor: encode_cursor(&meta, next),
        has_more,
    })
}
