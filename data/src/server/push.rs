//! Applying a push: every mutation in order, each with its dedupe record, in one transaction.
//!
//! The transaction starts by updating the `server_meta` row. On SQLite that takes the write lock
//! before anything is read (so the transaction never has to upgrade a stale read snapshot); on
//! PostgreSQL it takes the row lock, so concurrent pushes, from any number of server
//! instances, assign versions one after another and commit in version order. That is what lets
//! a pull trust that no version below the newest it has seen can still appear.

use super::{
    connection::ServerConnection,
    rows::{find_entity, role_in, wire_state, EntityRow},
    schema::{applied_mutations, entities, memberships, server_meta},
};
use crate::error::StoreError;
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use trackflow_domain::{
    authorization::{authorize, Access, Relation},
    entities::{AnyEntity, EntityType, Scope},
    ports::ServerStoreError,
    protocol::{Mutation, MutationOutcome, MutationResult, PushRequest, PushResponse, MAX_PUSH_MUTATIONS},
    sync::{
        field_merge::MergeKind,
        mutation_plan::{plan_mutation, Plan, Refusal, StoredEntity},
    },
    CollaboratorRole, OperationId, UserId,
};

/// Why a push transaction was rolled back.
pub(super) enum PushFailure {
    /// A malformed mutation: nothing is stored, the client is told which.
    BadInput { code: &'static str, message: String, mutation_id: Option<OperationId> },
    /// The database failed.
    Store(StoreError),
}

impl From<diesel::result::Error> for PushFailure {
    fn from(e: diesel::result::Error) -> Self {
        PushFailure::Store(e.into())
    }
}

impl From<StoreError> for PushFailure {
    fn from(e: StoreError) -> Self {
        PushFailure::Store(e)
    }
}

impl From<PushFailure> for ServerStoreError {
    fn from(failure: PushFailure) -> Self {
        match failure {
            PushFailure::BadInput { code, message, mutation_id } => {
                ServerStoreError::BadInput { code: code.to_owned(), message, mutation_id }
            }
            PushFailure::Store(e) => super::storage_error(e),
        }
    }
}

/// Checks what can be checked without the database, so a malformed push is refused before it
/// takes the write lock.
pub(super) fn check_request(request: &PushRequest) -> Result<(), PushFailure> {
    if request.mutations.len() > MAX_PUSH_MUTATIONS {
        return Err(PushFailure::BadInput {
            code: "too_many_mutations",
            message: format!(
                "a push carries at most {MAX_PUSH_MUTATIONS} mutations; this one has {}",
                request.mutations.len()
            ),
            mutation_id: None,
        });
    }
    for m in &request.mutations {
        // Ties between equal wall times are broken by the writing replica, so a client may only
        // sign writes with its own id.
        if let Some((name, _)) = m.fields.iter().find(|(_, c)| c.hlc.node != request.client_id) {
            return Err(PushFailure::BadInput {
                code: "clock_node_mismatch",
                message: format!(
                    "fields.{name}: the clock reading was not made by client {}",
                    request.client_id
                ),
                mutation_id: Some(m.id),
            });
        }
    }
    Ok(())
}

/// Applies `request` for `user`. Call inside a transaction.
pub(super) fn apply(
    conn: &mut ServerConnection,
    user: UserId,
    request: &PushRequest,
) -> Result<PushResponse, PushFailure> {
    // First statement: the write lock (see the module docs).
    diesel::update(server_meta::table.find(1))
        .set(server_meta::last_version.eq(server_meta::last_version))
        .execute(conn)?;
    let mut last_version: i64 =
        server_meta::table.find(1).select(server_meta::last_version).get_result(conn)?;
    let mut results = Vec::with_capacity(request.mutations.len());
    for mutation in &request.mutations {
        let outcome = apply_one(conn, user, mutation, &mut last_version)?;
        results.push(MutationResult { id: mutation.id, outcome });
    }
    diesel::update(server_meta::table.find(1))
        .set(server_meta::last_version.eq(last_version))
        .execute(conn)?;
    Ok(PushResponse { results })
}

fn apply_one(
    conn: &mut ServerConnection,
    user: UserId,
    mutation: &Mutation,
    last_version: &mut i64,
) -> Result<MutationOutcome, PushFailure> {
    let bad = |code, message| PushFailure::BadInput { code, message, mutation_id: Some(mutation.id) };
    let hash = content_hash(mutation)?;
    let user_key = user.to_string();
    let seen: Option<(String, i64)> = applied_mutations::table
        .find((&user_key, mutation.id.to_string()))
        .select((applied_mutations::content_hash, applied_mutations::version))
        .get_result(conn)
        .optional()?;
    if let Some((first_hash, version)) = seen {
        return Ok(if first_hash == hash {
            MutationOutcome::Duplicate { version }
        } else {
            rejected(
                "id_reused",
                format!("mutation {} was already applied with different content", mutation.id),
            )
        });
    }

    let current = find_entity(conn, mutation.entity_id)?;
    let plan = match plan_mutation(mutation, current.as_ref()) {
        Ok(plan) => plan,
        Err(Refusal::BadInput { code, message }) => return Err(bad(code, message)),
        Err(Refusal::Rejected { code, message }) => return Ok(rejected(code, message)),
    };
    // References first: a change that names an entity the server has never had is malformed,
    // whoever sends it. (Ids are UUIDs, so this tells a stranger nothing they could guess.)
    if let Err(refused) = check_references(conn, &plan)? {
        return match refused {
            Refused::Bad(code, message) => Err(bad(code, message)),
            Refused::Rejected(outcome) => Ok(outcome),
        };
    }
    if let Err(denied) = check_access(conn, user, mutation, &plan)? {
        return Ok(denied);
    }

    let changes = plan.changes(current.as_ref());
    let version = match (&current, changes) {
        (Some(current), false) => current.version,
        _ => {
            *last_version += 1;
            *last_version
        }
    };
    let stored =
        StoredEntity { entity_type: mutation.entity_type, scope: plan.scope, version, state: plan.state };
    if changes {
        let row = EntityRow::new(mutation.entity_id, &stored)?;
        if current.is_some() {
            diesel::update(entities::table.find(&row.entity_id)).set(&row).execute(conn)?;
        } else {
            diesel::insert_into(entities::table).values(&row).execute(conn)?;
        }
        update_membership(conn, plan.before.as_ref(), plan.entity.as_ref(), version)?;
    }

    let outcome = if plan.lost.is_empty() && plan.kind != MergeKind::DeleteWins {
        MutationOutcome::Applied { version }
    } else {
        MutationOutcome::Conflict { server: wire_state(mutation.entity_id, &stored), lost_fields: plan.lost }
    };
    let outcome_json =
        serde_json::to_string(&outcome).map_err(|e| StoreError::corrupt("applied_mutations", e))?;
    diesel::insert_into(applied_mutations::table)
        .values((
            applied_mutations::user_id.eq(&user_key),
            applied_mutations::mutation_id.eq(mutation.id.to_string()),
            applied_mutations::content_hash.eq(&hash),
            applied_mutations::version.eq(version),
            applied_mutations::outcome.eq(outcome_json),
        ))
        .execute(conn)?;
    Ok(outcome)
}

fn rejected(code: &str, message: String) -> MutationOutcome {
    MutationOutcome::Rejected { code: code.to_owned(), message }
}

/// Hex SHA-256 of the mutation's canonical JSON (its maps are ordered).
fn content_hash(mutation: &Mutation) -> Result<String, StoreError> {
    let bytes = serde_json::to_vec(mutation).map_err(|e| StoreError::corrupt("applied_mutations", e))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `user` may make this change. The outer error is the database's; the inner one is the
/// rejection to return.
fn check_access(
    conn: &mut ServerConnection,
    user: UserId,
    mutation: &Mutation,
    plan: &Plan,
) -> Result<Result<(), MutationOutcome>, StoreError> {
    let relation = match plan.scope {
        Scope::User(owner) => Relation::Profile { own: owner == user, shares_project: false },
        Scope::Project(project) => {
            let creating_project = mutation.entity_type == EntityType::Project && plan.before.is_none();
            match (creating_project, plan.entity.as_ref().and_then(AnyEntity::membership)) {
                // Nobody is a member of a project that does not exist yet: its creator is judged
                // as the owner it names, and may only name themselves.
                (true, Some(grant)) if grant.user_id == user => {
                    Relation::Project(Some(CollaboratorRole::Owner))
                }
                (true, _) if role_in(conn, project, user)?.is_none() => {
                    return Ok(Err(rejected("forbidden", "a project is created by its owner".into())));
                }
                _ => Relation::Project(role_in(conn, project, user)?),
            }
        }
    };
    Ok(authorize(mutation.entity_type, Access::Write(mutation.kind), relation)
        .map_err(|denied| rejected(denied.code, denied.message)))
}

enum Refused {
    Bad(&'static str, String),
    Rejected(MutationOutcome),
}

/// Every reference the change adds must name a live entity of the right type in the same scope.
fn check_references(conn: &mut ServerConnection, plan: &Plan) -> Result<Result<(), Refused>, StoreError> {
    for reference in &plan.new_references {
        let found = find_entity(conn, reference.id)?;
        match found {
            Some(target) if target.entity_type == reference.entity_type && target.scope == plan.scope => {
                if target.state.deleted {
                    return Ok(Err(Refused::Rejected(rejected(
                        "reference_deleted",
                        format!("{reference} has been deleted"),
                    ))));
                }
            }
            _ => return Ok(Err(Refused::Bad("missing_reference", format!("{reference} does not exist")))),
        }
    }
    Ok(Ok(()))
}

/// Keeps `memberships` in step with the records that grant access: a project grants its owner,
/// a collaborator record its user. A new grant records the version it appeared at, so the
/// member's next pull fetches the project's whole content.
fn update_membership(
    conn: &mut ServerConnection,
    before: Option<&AnyEntity>,
    after: Option<&AnyEntity>,
    version: i64,
) -> Result<(), StoreError> {
    // A deleted project keeps its members, so they receive its tombstone; a deleted
    // collaborator record revokes its user's access. The owner's own access never changes
    // through a collaborator record.
    let revoked = before
        .filter(|b| after.is_none() && b.entity_type() == EntityType::ProjectCollaborator)
        .and_then(AnyEntity::membership);
    if let Some(grant) = revoked {
        if role_in(conn, grant.project_id, grant.user_id)? != Some(CollaboratorRole::Owner) {
            diesel::delete(
                memberships::table.find((grant.project_id.to_string(), grant.user_id.to_string())),
            )
            .execute(conn)?;
        }
    }
    let Some(grant) = after.and_then(AnyEntity::membership) else { return Ok(()) };
    let key = (grant.project_id.to_string(), grant.user_id.to_string());
    let existing = role_in(conn, grant.project_id, grant.user_id)?;
    match existing {
        Some(role) if role == grant.role || role == CollaboratorRole::Owner => {}
        Some(_) => {
            diesel::update(memberships::table.find((&key.0, &key.1)))
                .set(memberships::role.eq(grant.role.as_str()))
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(memberships::table)
                .values((
                    memberships::project_id.eq(&key.0),
                    memberships::user_id.eq(&key.1),
                    memberships::role.eq(grant.role.as_str()),
                    memberships::granted_version.eq(version),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}
