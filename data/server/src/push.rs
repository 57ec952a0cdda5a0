//! Applying a push: every mutation in order, each with its dedupe record, in one transaction.
//!
//! The transaction first takes the locks that order it (see `locks`): on SQLite the database's
//! write lock, by updating the `server_meta` row before anything is read (so the transaction
//! never has to upgrade a stale read snapshot); on PostgreSQL the rows of the lock domains the
//! batch writes, found by a look at the stored rows first. Versions are taken only after that,
//! so within a domain pushes, from any number of server instances, commit in version order.
//! A batch that turns out to write a domain it did not lock (a row created meanwhile) is
//! rolled back and run again holding that domain too.

use super::{
    connection::{on_each_backend, ServerConnection},
    locks::{self, domains_of, Held, Versions},
    rows::{find_entity, role_in, wire_state, EntityRow},
    schema::{applied_mutations, entities, memberships, server_meta},
};
use diesel::{connection::SimpleConnection, prelude::*};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use trackflow_db::error::StoreError;
use trackflow_domain::{
    authorization::{authorize, authorize_author, Access, Relation},
    entities::{AnyEntity, Scope},
    ids::ParseIdError,
    ports::ServerStoreError,
    protocol::{
        DeletedWith, Mutation, MutationOutcome, MutationResult, PushRequest, PushResponse, MAX_PUSH_MUTATIONS,
    },
    sync::{
        field_merge::{merge, Change, MergeKind},
        mutation_plan::{plan_mutation, Plan, Refusal, StoredEntity},
    },
    CollaboratorRole, EntityRef, EntityType, OperationId, OperationKind, ScopeId, UserId,
};
use uuid::Uuid;

/// Why a push transaction was rolled back.
pub(super) enum PushFailure {
    /// A malformed mutation: nothing is stored, the client is told which.
    BadInput { code: &'static str, message: String, mutation_id: Option<OperationId> },
    /// The database failed.
    Store(StoreError),
    /// The batch writes in domains it did not lock: run it again holding these as well.
    Relock(BTreeSet<String>),
}

impl PushFailure {
    /// Whether running the push again, after `attempt` earlier attempts, may succeed: a batch
    /// that must hold more domains, one that raced another push creating the same row in
    /// another domain (the next attempt reads it and answers as for any existing row), or one
    /// PostgreSQL chose to break a deadlock.
    pub fn retry(&self, attempt: u32) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            PushFailure::Relock(_) => attempt < 8,
            PushFailure::Store(StoreError::Database(Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _,
            ))) => attempt < 2,
            PushFailure::Store(e) if super::is_deadlock(e) => attempt < 3,
            _ => false,
        }
    }
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
            PushFailure::Relock(domains) => ServerStoreError::Storage {
                message: format!("the push kept finding new lock domains to take: {domains:?}"),
                transient: true,
            },
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

/// Applies `request` for `user`, holding `extra` lock domains besides those its stored rows
/// name. Call inside a transaction.
///
/// The batch works on an in-memory working set: the entities and dedupe records it touches are
/// read in one query each up front, every mutation is decided against the working set (which
/// holds the effect of the earlier mutations of the batch), and the results are written at the
/// end in a few multi-row statements. A push of 500 mutations costs about ten round trips to
/// the database instead of thousands, which is what PostgreSQL over a network needs.
pub(super) fn apply(
    conn: &mut ServerConnection,
    user: UserId,
    request: &PushRequest,
    extra: &BTreeSet<String>,
) -> Result<PushResponse, PushFailure> {
    let held = match conn {
        // The ordering argument needs READ COMMITTED (a push that waited for a domain must
        // read what its predecessor committed), whatever the database's default isolation is.
        ServerConnection::Pg(pg) => {
            pg.batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")?;
            let mut domains = domains_written(conn, request)?;
            domains.extend(extra.iter().cloned());
            locks::lock(conn, &domains)?;
            Held::Domains(domains)
        }
        // First row statement: the write lock (see the module docs).
        ServerConnection::Sqlite(_) => {
            diesel::update(server_meta::table.find(1))
                .set(server_meta::last_version.eq(server_meta::last_version))
                .execute(conn)?;
            Held::Database
        }
    };
    let mut batch = Batch::load(conn, user, request, held)?;
    let mut results = Vec::with_capacity(request.mutations.len());
    for mutation in &request.mutations {
        let outcome = batch.apply_one(mutation)?;
        results.push(MutationResult { id: mutation.id, outcome });
    }
    batch.write()?;
    Ok(PushResponse { results })
}

/// The domains the batch writes, as far as can be told before anything is locked: the scope a
/// create names, else the stored row's scope (one query, only for updates and deletes). A
/// guess that turns out wrong under the locks (a create of a row that exists elsewhere) costs
/// a second attempt, never a wrong order.
fn domains_written(
    conn: &mut ServerConnection,
    request: &PushRequest,
) -> Result<BTreeSet<String>, PushFailure> {
    let mut domains = BTreeSet::new();
    let mut look_up = Vec::new();
    for mutation in &request.mutations {
        let named = (mutation.kind == OperationKind::Create)
            .then(|| plan_mutation(mutation, None).ok().map(|plan| plan.scope))
            .flatten();
        match named {
            Some(scope) => domains.extend(domains_of(mutation.entity_type, scope)),
            None => look_up.push(mutation),
        }
    }
    if look_up.is_empty() {
        return Ok(domains);
    }
    let ids: Vec<String> = look_up.iter().map(|m| m.entity_id.to_string()).collect();
    let stored: HashMap<String, String> = entities::table
        .filter(entities::entity_id.eq_any(&ids))
        .select((entities::entity_id, entities::scope))
        .load(conn)?
        .into_iter()
        .collect();
    for (mutation, id) in look_up.into_iter().zip(&ids) {
        // A row that is not there yet is looked at again under the locks.
        if let Some(scope) = stored.get(id).and_then(|s| s.parse().ok()) {
            domains.extend(domains_of(mutation.entity_type, scope));
        }
    }
    Ok(domains)
}

/// An entity of the working set.
struct Entry {
    /// Its state now, in this batch (`None`: it does not exist).
    stored: Option<StoredEntity>,
    /// Whether a row for it exists in the database (insert or update when written).
    in_database: bool,
    /// Whether the batch changed it.
    dirty: bool,
}

/// A dedupe record: the first application's content hash, version and result.
struct Applied {
    hash: String,
    version: i64,
    outcome: MutationOutcome,
}

/// The working set of one push.
struct Batch<'c> {
    conn: &'c mut ServerConnection,
    user: UserId,
    held: Held,
    versions: Versions,
    entities: HashMap<Uuid, Entry>,
    /// The pushing user's role per project, as looked up (cleared when memberships change).
    roles: HashMap<ScopeId, Option<CollaboratorRole>>,
    applied: HashMap<OperationId, Applied>,
    /// Mutations this batch applied, in order: their dedupe records (in `applied`) are new.
    new_records: Vec<OperationId>,
}

impl<'c> Batch<'c> {
    /// Reads the batch's entities and earlier dedupe records in one query each.
    fn load(
        conn: &'c mut ServerConnection,
        user: UserId,
        request: &PushRequest,
        held: Held,
    ) -> Result<Self, PushFailure> {
        let versions = Versions::new(conn, request.mutations.len())?;
        let ids: Vec<Uuid> = request.mutations.iter().map(|m| m.entity_id).collect();
        let entities = fetch_entries(conn, &ids)?;
        let mutation_ids: Vec<String> = request.mutations.iter().map(|m| m.id.to_string()).collect();
        let records: Vec<(String, String, i64, String)> = applied_mutations::table
            .filter(applied_mutations::user_id.eq(user.to_string()))
            .filter(applied_mutations::mutation_id.eq_any(&mutation_ids))
            .select((
                applied_mutations::mutation_id,
                applied_mutations::content_hash,
                applied_mutations::version,
                applied_mutations::outcome,
            ))
            .load(conn)?;
        let corrupt = |e: String| StoreError::corrupt("applied_mutations", e);
        let mut applied = HashMap::with_capacity(records.len());
        for (id, hash, version, outcome) in records {
            let id: OperationId = id.parse().map_err(|e: ParseIdError| corrupt(e.to_string()))?;
            let outcome = serde_json::from_str(&outcome).map_err(|e| corrupt(e.to_string()))?;
            applied.insert(id, Applied { hash, version, outcome });
        }
        Ok(Self {
            conn,
            user,
            held,
            versions,
            entities,
            roles: HashMap::new(),
            applied,
            new_records: Vec::new(),
        })
    }

    /// The entity with this id, from the working set or else the database.
    fn entity(&mut self, id: Uuid) -> Result<Option<&StoredEntity>, StoreError> {
        if !self.entities.contains_key(&id) {
            let stored = find_entity(self.conn, id)?;
            let in_database = stored.is_some();
            self.entities.insert(id, Entry { stored, in_database, dirty: false });
        }
        Ok(self.entities.get(&id).and_then(|e| e.stored.as_ref()))
    }

    /// Loads into the working set, in one query, those of `ids` it does not hold yet.
    fn preload(&mut self, ids: impl Iterator<Item = Uuid>) -> Result<(), StoreError> {
        let missing: Vec<Uuid> = ids.filter(|id| !self.entities.contains_key(id)).collect();
        if !missing.is_empty() {
            let fetched = fetch_entries(self.conn, &missing)?;
            self.entities.extend(fetched);
        }
        Ok(())
    }

    fn role(&mut self, scope: ScopeId) -> Result<Option<CollaboratorRole>, StoreError> {
        if let Some(role) = self.roles.get(&scope) {
            return Ok(*role);
        }
        let role = role_in(self.conn, scope, self.user)?;
        self.roles.insert(scope, role);
        Ok(role)
    }

    fn apply_one(&mut self, mutation: &Mutation) -> Result<MutationOutcome, PushFailure> {
        let bad = |code, message| PushFailure::BadInput { code, message, mutation_id: Some(mutation.id) };
        let hash = content_hash(mutation)?;
        if let Some(first) = self.applied.get(&mutation.id) {
            return Ok(if first.hash == hash || named_as_before_renames(mutation, &first.hash)? {
                MutationOutcome::Duplicate { version: first.version, first: Box::new(first.outcome.clone()) }
            } else {
                rejected(
                    "id_reused",
                    format!("mutation {} was already applied with different content", mutation.id),
                )
            });
        }

        let current = self.entity(mutation.entity_id)?.cloned();
        let mut plan = match plan_mutation(mutation, current.as_ref()) {
            Ok(plan) => plan,
            Err(Refusal::BadInput { code, message }) => return Err(bad(code, message)),
            Err(Refusal::Rejected { code, message }) => return Ok(rejected(code, message)),
        };
        // Everything below reads and writes the entity's domain: it must be held.
        let missing: BTreeSet<String> =
            domains_of(mutation.entity_type, plan.scope).filter(|d| !self.held.covers(d)).collect();
        if !missing.is_empty() {
            return Err(PushFailure::Relock(missing));
        }
        // A write into a deleted parent is stored deleted, as the parent's children were.
        let into_deleted = self.deleted_parent(&plan)?;
        if into_deleted.is_none() {
            // References first: a change that names an entity the server has never had is
            // malformed, whoever sends it. (Ids are UUIDs, so this tells a stranger nothing
            // they could guess.)
            if let Err(refused) = self.check_references(&plan)? {
                return match refused {
                    Refused::Bad(code, message) => Err(bad(code, message)),
                    Refused::Rejected(outcome) => Ok(outcome),
                };
            }
        }
        if let Err(denied) = self.check_access(mutation, &plan)? {
            return Ok(denied);
        }
        let deleted_with = match into_deleted {
            Some(parent) => {
                plan.state.deleted = true;
                plan.entity = None;
                plan.kind = MergeKind::DeleteWins;
                plan.lost = mutation.fields.keys().cloned().collect();
                Some(DeletedWith { parent, by: None })
            }
            // A tombstone stays one, and keeps why.
            None if plan.state.deleted => current.as_ref().and_then(|c| c.deleted_with),
            None => None,
        };

        let changes = plan.changes(current.as_ref())
            || current.as_ref().is_some_and(|c| c.deleted_with != deleted_with);
        let version = match (&current, changes) {
            (Some(current), false) => current.version,
            _ => self.versions.next(self.conn, plan.scope)?,
        };
        let stored = StoredEntity {
            entity_type: mutation.entity_type,
            scope: plan.scope,
            version,
            state: plan.state,
            deleted_with,
        };
        let outcome = if plan.lost.is_empty() && plan.kind != MergeKind::DeleteWins {
            MutationOutcome::Applied { version }
        } else {
            MutationOutcome::Conflict {
                server: wire_state(mutation.entity_id, &stored),
                lost_fields: plan.lost,
            }
        };
        if changes {
            if update_membership(self.conn, plan.before.as_ref(), plan.entity.as_ref(), version)? {
                self.roles.clear();
            }
            let entry = self.entities.get_mut(&mutation.entity_id).expect("looked up above");
            entry.stored = Some(stored);
            entry.dirty = true;
            if mutation.kind == OperationKind::Delete && plan.before.is_some() {
                let deleted = EntityRef::new(mutation.entity_type, mutation.entity_id);
                self.delete_descendants(deleted, plan.scope)?;
            }
        }
        self.new_records.push(mutation.id);
        self.applied.insert(mutation.id, Applied { hash, version, outcome: outcome.clone() });
        Ok(outcome)
    }

    /// The parent of the entity `plan` writes, if the write creates or changes a live entity
    /// and its parent is a tombstone.
    fn deleted_parent(&mut self, plan: &Plan) -> Result<Option<EntityRef>, StoreError> {
        let Some(parent) = plan.entity.as_ref().and_then(AnyEntity::parent) else { return Ok(None) };
        let deleted =
            self.entity(parent.id)?.is_some_and(|p| p.entity_type == parent.entity_type && p.state.deleted);
        Ok(deleted.then_some(parent))
    }

    /// Deletes, with `deleted`, every live entity that lives inside it (its children, their
    /// children, ...), each at a new version, so every device receives their tombstones and
    /// their authors are told. Records that grant membership stay: the members must still
    /// receive the deletion.
    fn delete_descendants(&mut self, deleted: EntityRef, scope: Scope) -> Result<(), PushFailure> {
        let with = DeletedWith { parent: deleted, by: Some(self.user) };
        let mut parents: HashSet<EntityRef> = HashSet::from([deleted]);
        while !parents.is_empty() {
            let parent_types: HashSet<EntityType> = parents.iter().map(|p| p.entity_type).collect();
            let child_types: Vec<&str> = EntityType::all()
                .iter()
                .filter(|t| t.parent_type().is_some_and(|p| parent_types.contains(&p)))
                .filter(|t| t.member_field().is_none())
                .map(|t| t.as_str())
                .collect();
            if child_types.is_empty() {
                break;
            }
            // The children stored, and those this batch wrote and has not stored yet.
            let stored: Vec<EntityRow> = entities::table
                .filter(entities::scope.eq(scope.to_string()))
                .filter(entities::entity_type.eq_any(&child_types))
                .filter(entities::deleted.eq(false))
                .load(self.conn)?;
            for row in stored {
                let id: Uuid = row.entity_id.parse().map_err(|e| StoreError::corrupt("entities", e))?;
                if let std::collections::hash_map::Entry::Vacant(slot) = self.entities.entry(id) {
                    slot.insert(Entry { stored: Some(row.decode()?), in_database: true, dirty: false });
                }
            }
            let mut children = HashSet::new();
            for (id, entry) in &mut self.entities {
                let Some(child) = entry.stored.as_mut() else { continue };
                let inside =
                    child.entity_type.parent_in(&child.state.fields).is_some_and(|p| parents.contains(&p));
                if child.state.deleted || !inside || !child_types.contains(&child.entity_type.as_str()) {
                    continue;
                }
                child.version = self.versions.next(self.conn, scope)?;
                child.state = merge(Some(&child.state), Change::Delete).state;
                child.deleted_with = Some(with);
                entry.dirty = true;
                children.insert(EntityRef::new(child.entity_type, *id));
            }
            parents = children;
        }
        Ok(())
    }

    /// Whether the user may make this change. The outer error is the database's; the inner one
    /// is the rejection to return.
    fn check_access(
        &mut self,
        mutation: &Mutation,
        plan: &Plan,
    ) -> Result<Result<(), MutationOutcome>, StoreError> {
        let relation = match plan.scope {
            Scope::User(owner) => Relation::Profile { own: owner == self.user, shares_project: false },
            Scope::Shared(scope) => {
                let creating_project = mutation.entity_type.is_scope_root() && plan.before.is_none();
                match (creating_project, plan.entity.as_ref().and_then(AnyEntity::membership)) {
                    // Nobody is a member of a project that does not exist yet: its creator is
                    // judged as the owner it names, and may only name themselves.
                    (true, Some(grant)) if grant.user_id == self.user => {
                        Relation::Member(Some(CollaboratorRole::Owner))
                    }
                    (true, _) if self.role(scope)?.is_none() => {
                        let message =
                            format!("a {} is created by its owner", mutation.entity_type.display_name());
                        return Ok(Err(rejected("forbidden", message)));
                    }
                    _ => Relation::Member(self.role(scope)?),
                }
            }
        };
        if let Err(denied) = authorize(mutation.entity_type, Access::Write(mutation.kind), relation) {
            return Ok(Err(rejected(denied.code, denied.message)));
        }
        if let (Scope::Shared(scope), Some(before)) = (plan.scope, plan.before.as_ref()) {
            let role = self.role(scope)?;
            if let Err(denied) =
                authorize_author(mutation.entity_type, mutation.kind, before.author(), self.user, role)
            {
                return Ok(Err(rejected(denied.code, denied.message)));
            }
        }
        // What is new: its recorded author must be the sender, and a user is a member of a
        // project through one record only.
        let new = plan.before.is_none() && plan.kind == MergeKind::Created;
        if let (true, Some(entity)) = (new, plan.entity.as_ref()) {
            if entity.author().is_some_and(|author| author != self.user) {
                let message = format!("a {} is created by its author", mutation.entity_type);
                return Ok(Err(rejected("forbidden", message)));
            }
            if let (false, Some(grant)) = (mutation.entity_type.is_scope_root(), entity.membership()) {
                if role_in(self.conn, grant.scope, grant.user_id)?.is_some() {
                    let root = mutation
                        .entity_type
                        .scope_root()
                        .map_or("scope".to_owned(), EntityType::display_name);
                    let message = format!("this user is already a member of the {root}");
                    return Ok(Err(rejected("already_exists", message)));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Every reference the change adds must name a live entity of the right type in the same
    /// scope.
    fn check_references(&mut self, plan: &Plan) -> Result<Result<(), Refused>, StoreError> {
        // A playlist may name hundreds of tracks: one query, not one each.
        self.preload(plan.new_references.iter().map(|r| r.id))?;
        for reference in &plan.new_references {
            match self.entity(reference.id)? {
                Some(target) if target.entity_type == reference.entity_type && target.scope == plan.scope => {
                    if target.state.deleted {
                        let message = format!("{reference} has been deleted");
                        return Ok(Err(Refused::Rejected(rejected("reference_deleted", message))));
                    }
                }
                _ => {
                    return Ok(Err(Refused::Bad("missing_reference", format!("{reference} does not exist"))));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Writes what the batch changed: new rows and dedupe records in multi-row inserts, changed
    /// rows one update each, and the versions each domain issued.
    fn write(self) -> Result<(), PushFailure> {
        let mut inserts = Vec::new();
        for (id, entry) in &self.entities {
            let (true, Some(stored)) = (entry.dirty, &entry.stored) else { continue };
            let row = EntityRow::new(*id, stored)?;
            if entry.in_database {
                diesel::update(entities::table.find(&row.entity_id)).set(&row).execute(self.conn)?;
            } else {
                inserts.push(row);
            }
        }
        // Bounded statement size: SQLite allows 32766 bound values, PostgreSQL 65535.
        for chunk in inserts.chunks(1000) {
            on_each_backend!(self.conn, |c| diesel::insert_into(entities::table).values(chunk).execute(c))?;
        }
        let user = self.user.to_string();
        let mut records = Vec::with_capacity(self.new_records.len());
        for id in &self.new_records {
            let record = &self.applied[id];
            let outcome = serde_json::to_string(&record.outcome)
                .map_err(|e| StoreError::corrupt("applied_mutations", e))?;
            records.push((
                applied_mutations::user_id.eq(&user),
                applied_mutations::mutation_id.eq(id.to_string()),
                applied_mutations::content_hash.eq(&record.hash),
                applied_mutations::version.eq(record.version),
                applied_mutations::outcome.eq(outcome),
            ));
        }
        for chunk in records.chunks(1000) {
            on_each_backend!(self.conn, |c| diesel::insert_into(applied_mutations::table)
                .values(chunk)
                .execute(c))?;
        }
        self.versions.record(self.conn)?;
        Ok(())
    }
}

fn rejected(code: &str, message: String) -> MutationOutcome {
    MutationOutcome::Rejected { code: code.to_owned(), message }
}

/// Hex SHA-256 of the mutation's canonical JSON (its maps are ordered).
fn content_hash(mutation: &Mutation) -> Result<String, StoreError> {
    let bytes = serde_json::to_vec(mutation).map_err(|e| StoreError::corrupt("applied_mutations", e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether `mutation`, with its fields named as a build from before one of its type's renames
/// named them, hashes to `hash`: a write first applied before this server declared the rename,
/// sent again (its answer lost) under the new names, is the same write, not an id reused.
fn named_as_before_renames(mutation: &Mutation, hash: &str) -> Result<bool, StoreError> {
    let mut versions: Vec<u32> = mutation.entity_type.renamed().iter().map(|r| r.since - 1).collect();
    versions.sort_unstable();
    versions.dedup();
    for version in versions {
        let mut earlier = mutation.clone();
        earlier.entity_type.as_known_at(version, &mut earlier.fields);
        if content_hash(&earlier)? == hash {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The entities with these ids, in one query: those found as stored, the others as known not
/// to exist (so a create need not look again).
fn fetch_entries(conn: &mut ServerConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Entry>, StoreError> {
    let keys: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows: Vec<EntityRow> = entities::table.filter(entities::entity_id.eq_any(&keys)).load(conn)?;
    let mut entries = HashMap::with_capacity(ids.len());
    for row in rows {
        let id = row.entity_id.parse().map_err(|e| StoreError::corrupt("entities", e))?;
        entries.insert(id, Entry { stored: Some(row.decode()?), in_database: true, dirty: false });
    }
    for id in ids {
        entries.entry(*id).or_insert(Entry { stored: None, in_database: false, dirty: false });
    }
    Ok(entries)
}

enum Refused {
    Bad(&'static str, String),
    Rejected(MutationOutcome),
}

/// Keeps `memberships` in step with the records that grant access: a project grants its owner,
/// a collaborator record its user. A new grant records the version it appeared at, so the
/// member's next pull fetches the project's whole content.
fn update_membership(
    conn: &mut ServerConnection,
    before: Option<&AnyEntity>,
    after: Option<&AnyEntity>,
    version: i64,
) -> Result<bool, StoreError> {
    // A deleted project keeps its members, so they receive its tombstone; a deleted
    // collaborator record revokes its user's access. The owner's own access never changes
    // through a collaborator record.
    let revoked = before
        .filter(|b| after.is_none() && !b.entity_type().is_scope_root())
        .and_then(AnyEntity::membership);
    if let Some(grant) = revoked {
        if role_in(conn, grant.scope, grant.user_id)? != Some(CollaboratorRole::Owner) {
            diesel::delete(memberships::table.find((grant.scope.to_string(), grant.user_id.to_string())))
                .execute(conn)?;
            return Ok(true);
        }
    }
    let Some(grant) = after.and_then(AnyEntity::membership) else { return Ok(false) };
    let key = (grant.scope.to_string(), grant.user_id.to_string());
    let existing = role_in(conn, grant.scope, grant.user_id)?;
    match existing {
        Some(role) if role == grant.role || role == CollaboratorRole::Owner => return Ok(false),
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
    Ok(true)
}
