//! Who may see a change, for realtime pokes; which audio a reader may fetch; and which audio a
//! user may name in a track (only what they uploaded themselves: knowing a hash is not enough).
//!
//! A project scope is read by its members (the owner is a member too). A user scope, a profile,
//! is read by the user and by everyone who shares a project with them, as in `pull`.

use super::{
    connection::ServerConnection,
    pull::readable_scopes,
    rows::find_entity,
    schema::{blob_grants, entities, memberships},
};
use diesel::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{entities::Scope, BlobHash, EntityRef, ScopeId, UserId};
use uuid::Uuid;

/// The scopes the entities `ids` belong to.
pub(super) fn scopes_of(conn: &mut ServerConnection, ids: &[Uuid]) -> StoreResult<BTreeSet<Scope>> {
    let mut scopes = BTreeSet::new();
    for chunk in ids.chunks(500) {
        let names: Vec<String> = entities::table
            .filter(entities::entity_id.eq_any(chunk.iter().map(Uuid::to_string)))
            .select(entities::scope)
            .distinct()
            .load(conn)?;
        for name in names {
            scopes.insert(name.parse().map_err(|e| StoreError::corrupt("entities", e))?);
        }
    }
    Ok(scopes)
}

/// The readers of each of `scopes`.
pub(super) fn audience(
    conn: &mut ServerConnection,
    scopes: &BTreeSet<Scope>,
) -> StoreResult<BTreeMap<Scope, BTreeSet<UserId>>> {
    let corrupt = |e: uuid::Error| StoreError::corrupt("memberships", e);
    let mut readers: BTreeMap<Scope, BTreeSet<UserId>> = BTreeMap::new();
    let projects: Vec<String> = scopes
        .iter()
        .filter_map(|s| match s {
            Scope::Shared(id) => Some(id.to_string()),
            Scope::User(_) => None,
        })
        .collect();
    for chunk in projects.chunks(500) {
        let members: Vec<(String, String)> = memberships::table
            .filter(memberships::project_id.eq_any(chunk))
            .select((memberships::project_id, memberships::user_id))
            .load(conn)?;
        for (project, user) in members {
            let scope = Scope::Shared(ScopeId::from_uuid(project.parse().map_err(corrupt)?));
            readers.entry(scope).or_default().insert(UserId::from_uuid(user.parse().map_err(corrupt)?));
        }
    }
    for scope in scopes {
        let Scope::User(user) = scope else { continue };
        let mut people = BTreeSet::from([*user]);
        let shared: Vec<String> = memberships::table
            .filter(memberships::user_id.eq(user.to_string()))
            .select(memberships::project_id)
            .load(conn)?;
        let fellows: Vec<String> = memberships::table
            .filter(memberships::project_id.eq_any(shared))
            .select(memberships::user_id)
            .distinct()
            .load(conn)?;
        for fellow in fellows {
            people.insert(UserId::from_uuid(fellow.parse().map_err(corrupt)?));
        }
        readers.insert(*scope, people);
    }
    Ok(readers)
}

/// The file `entity` names, if `user` may read the entity and it is alive, of that type, and
/// names one.
pub(super) fn entity_file(
    conn: &mut ServerConnection,
    user: UserId,
    entity: EntityRef,
) -> StoreResult<Option<BlobHash>> {
    let Some(stored) = find_entity(conn, entity.id)? else { return Ok(None) };
    let alive = !stored.state.deleted && stored.entity_type == entity.entity_type;
    let Some(field) = stored.entity_type.blob_field().filter(|_| alive) else {
        return Ok(None);
    };
    if !readable_scopes(conn, user)?.contains_key(&stored.scope) {
        return Ok(None);
    }
    let hash = stored.state.fields.get(field).and_then(|v| v.as_str());
    Ok(hash.and_then(|h| BlobHash::parse(h).ok()))
}

/// Records that `user` uploaded (and the server verified) the blob `hash`. Idempotent.
pub(super) fn grant_blob(
    conn: &mut ServerConnection,
    user: UserId,
    hash: &BlobHash,
    now: i64,
) -> StoreResult<()> {
    if may_use_blob(conn, user, hash)? {
        return Ok(());
    }
    let inserted = diesel::insert_into(blob_grants::table)
        .values((
            blob_grants::sha256.eq(hash.as_str()),
            blob_grants::user_id.eq(user.to_string()),
            blob_grants::granted_at.eq(now),
        ))
        .execute(conn);
    match inserted {
        // A concurrent upload of the same file by the same user granted it first.
        Ok(_)
        | Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `user` proved to hold the blob `hash`.
pub(super) fn may_use_blob(conn: &mut ServerConnection, user: UserId, hash: &BlobHash) -> StoreResult<bool> {
    let found: i64 = blob_grants::table
        .filter(blob_grants::user_id.eq(user.to_string()))
        .filter(blob_grants::sha256.eq(hash.as_str()))
        .count()
        .get_result(conn)?;
    Ok(found > 0)
}
