//! The registry of synced types. What differs per type is declared once, on the type, by its
//! [`SyncEntity`] implementation (its name, fields and validation, parent, references, scope,
//! membership, author, upstream priority, conflict policy, write rule, table and write check).
//! The engine reads a type it knows only by name through an [`EntityType`]: a handle on that
//! declaration with the type erased. A program lists its types once, parents before children, in
//! a [`Registry`] that it installs at start; the outbox, the wire and the executors find a type
//! by its name there.

use super::{EntityRef, Membership, Scope, ScopeKind, SyncEntity};
use crate::{
    error::{RepositoryError, ValidationError},
    ids::UserId,
    ports::WriteContext,
    sync::{ConflictPolicy, Hlc, OperationKind, Priority},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::{
    any::Any,
    cmp::Ordering,
    collections::BTreeMap,
    fmt,
    hash::{Hash, Hasher},
    sync::OnceLock,
};
use uuid::Uuid;

/// What an entity lives inside: the parent's type and the wire field that names it. An entity
/// is visible only while its parent is, and deleting the parent hides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The parent's type.
    pub entity_type: EntityType,
    /// The field holding the parent's id.
    pub field: &'static str,
}

/// The least role (in the entity's project) that may create, update and delete an entity of a
/// type kept in a project scope. Roles are ordered owner, editor, viewer: a rule of `Editor`
/// admits owners and editors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRule {
    /// Who may create one.
    pub create: super::CollaboratorRole,
    /// Who may change one.
    pub update: super::CollaboratorRole,
    /// Who may delete one.
    pub delete: super::CollaboratorRole,
    /// Whether, once created, only its author ([`SyncEntity::author`]) changes one, and only
    /// its author or the scope's owner deletes one: a comment belongs to whoever wrote it.
    pub author_only: bool,
}

impl WriteRule {
    /// Every member who writes (owners and editors) creates, changes and deletes.
    pub const MEMBERS: Self = Self {
        create: super::CollaboratorRole::Editor,
        update: super::CollaboratorRole::Editor,
        delete: super::CollaboratorRole::Editor,
        author_only: false,
    };
    /// Members who write create one; once created, only its author changes it, and its author
    /// or the scope's owner deletes it.
    pub const AUTHORED: Self = Self { author_only: true, ..Self::MEMBERS };
    /// Only the project's owner writes.
    pub const OWNER: Self = Self {
        create: super::CollaboratorRole::Owner,
        update: super::CollaboratorRole::Owner,
        delete: super::CollaboratorRole::Owner,
        author_only: false,
    };

    /// The least role for `kind` of write.
    pub const fn least(self, kind: OperationKind) -> super::CollaboratorRole {
        match kind {
            OperationKind::Create | OperationKind::Upload => self.create,
            OperationKind::Update => self.update,
            OperationKind::Delete => self.delete,
        }
    }
}

/// A declared index: lists of a type's entities whose `field` equals a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    /// Its name, given to `Repository::list_by`.
    pub name: &'static str,
    /// The field it matches.
    pub field: &'static str,
    /// Whether it also finds the entities whose scope the key (a user) is a member of through
    /// another type's grant (a project by its collaborators, not only by its owner).
    pub members: bool,
}

impl Index {
    /// An index matching `field`.
    pub const fn on(name: &'static str, field: &'static str) -> Self {
        Self { name, field, members: false }
    }

    /// An index of scope roots by user: `field` names the user the root grants itself to (a
    /// project's owner), and the grants of other types ([`SyncEntity::MEMBER_FIELD`]) count too.
    pub const fn members(name: &'static str, field: &'static str) -> Self {
        Self { name, field, members: true }
    }
}

/// A type's declaration with the type erased: what the engine reads of a type it knows only by
/// name. Every [`SyncEntity`] has one ([`SyncEntity::DECLARATION`]), made from its items; it is
/// never written by hand.
#[derive(Debug)]
pub struct Declaration {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [&'static str],
    pub(crate) immutable: &'static [&'static str],
    pub(crate) set_once: &'static [&'static str],
    pub(crate) parent: Option<Parent>,
    pub(crate) refers_to: &'static [EntityType],
    pub(crate) scope: ScopeKind,
    pub(crate) write: WriteRule,
    pub(crate) priority: Priority,
    pub(crate) policy: ConflictPolicy,
    pub(crate) table: &'static str,
    pub(crate) json_fields: &'static [&'static str],
    pub(crate) scope_field: &'static str,
    pub(crate) order: &'static [&'static str],
    pub(crate) indexes: &'static [Index],
    pub(crate) member_field: Option<&'static str>,
    pub(crate) blob_field: Option<&'static str>,
    pub(crate) breaking_since: u32,
    pub(crate) renamed: &'static [Rename],
    pub(crate) from_fields: fn(Uuid, &BTreeMap<String, Value>) -> Result<AnyEntity, ValidationError>,
}

impl Declaration {
    /// The declaration of `E`.
    pub(crate) const fn of<E: SyncEntity>() -> Self {
        Self {
            name: E::NAME,
            fields: E::FIELDS,
            immutable: E::IMMUTABLE,
            set_once: E::SET_ONCE,
            parent: E::PARENT,
            refers_to: E::REFERS_TO,
            scope: E::SCOPE,
            write: E::WRITE,
            priority: E::PRIORITY,
            policy: E::POLICY,
            table: E::TABLE,
            json_fields: E::JSON_FIELDS,
            scope_field: E::SCOPE_FIELD,
            order: E::ORDER,
            indexes: E::INDEXES,
            member_field: E::MEMBER_FIELD,
            blob_field: E::BLOB_FIELD,
            breaking_since: E::BREAKING_SINCE,
            renamed: E::RENAMED,
            from_fields: any_from_fields::<E>,
        }
    }
}

fn any_from_fields<E: SyncEntity>(
    id: Uuid,
    fields: &BTreeMap<String, Value>,
) -> Result<AnyEntity, ValidationError> {
    E::from_fields(id, fields).map(AnyEntity::new)
}

/// A synced type, known by name: a handle on its [`Declaration`]. Cheap to copy; two handles
/// are equal when they name the same type. Types order as their registry lists them (parents
/// first). The string form (`project`, `audio_track`) is the type's declared
/// [`SyncEntity::NAME`]: it is stored in the outbox, sent on the wire and used as the executor
/// registry key; reading one back finds the type in the installed [`Registry`].
#[derive(Clone, Copy)]
pub struct EntityType(&'static Declaration);

impl EntityType {
    /// The type `E`.
    pub const fn of<E: SyncEntity>() -> Self {
        Self(E::DECLARATION)
    }

    /// Every type of the installed registry, parents before children.
    pub fn all() -> &'static [EntityType] {
        Registry::global().types()
    }

    /// The installed registry's type named `name`.
    pub fn named(name: &str) -> Option<EntityType> {
        Registry::global().get(name)
    }

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        self.0.name
    }

    /// What an entity of this type lives inside, if anything.
    pub const fn parent(self) -> Option<Parent> {
        self.0.parent
    }

    /// The types, besides its parent's, that an entity of this type may refer to.
    pub const fn refers_to(self) -> &'static [EntityType] {
        self.0.refers_to
    }

    /// The kind of scope its entities belong to.
    pub const fn scope_kind(self) -> ScopeKind {
        self.0.scope
    }

    /// Who may write an entity of this type in a project scope.
    pub const fn write_rule(self) -> WriteRule {
        self.0.write
    }

    /// How a pulled change meets an unacknowledged local edit, unless configured otherwise.
    pub const fn default_policy(self) -> ConflictPolicy {
        self.0.policy
    }

    /// The upstream priority of an operation on this entity type: deletes go first (they
    /// remove data others may be looking at), the rest as the type declares. Causality still
    /// overrides priority: a child never overtakes its parent's create.
    pub const fn default_priority(self, kind: OperationKind) -> Priority {
        match kind {
            OperationKind::Delete => Priority::Critical,
            _ => self.0.priority,
        }
    }

    /// Its synced fields.
    pub const fn fields(self) -> &'static [&'static str] {
        self.0.fields
    }

    /// Whether `field` is one of its synced fields.
    pub fn declares(self, field: &str) -> bool {
        self.0.fields.contains(&field)
    }

    /// The fields that only a create may set.
    pub const fn immutable_fields(self) -> &'static [&'static str] {
        self.0.immutable
    }

    /// The fields that may be set once, while null.
    pub const fn set_once_fields(self) -> &'static [&'static str] {
        self.0.set_once
    }

    /// Its local table.
    pub const fn table(self) -> &'static str {
        self.0.table
    }

    /// Its fields stored as JSON text.
    pub const fn json_fields(self) -> &'static [&'static str] {
        self.0.json_fields
    }

    /// The field naming the root of its scope.
    pub const fn scope_field(self) -> &'static str {
        self.0.scope_field
    }

    /// Whether its entities are the roots of project scopes (a project): its scope is a project
    /// and its scope field is its own id.
    pub fn is_scope_root(self) -> bool {
        self.0.scope == ScopeKind::Shared && self.0.scope_field == "id"
    }

    /// The fields its lists are ordered by.
    pub const fn order(self) -> &'static [&'static str] {
        self.0.order
    }

    /// Its declared indexes.
    pub const fn indexes(self) -> &'static [Index] {
        self.0.indexes
    }

    /// The field naming the user its entities grant membership to, if any.
    pub const fn member_field(self) -> Option<&'static str> {
        self.0.member_field
    }

    /// The field naming a file it refers to, if any.
    pub const fn blob_field(self) -> Option<&'static str> {
        self.0.blob_field
    }

    /// The schema version of its last breaking change, 0 for none ([`SyncEntity::BREAKING_SINCE`]).
    pub const fn breaking_since(self) -> u32 {
        self.0.breaking_since
    }
}

/// A field renamed at schema version `since` ([`SyncEntity::RENAMED`]): builds older than that
/// name it `from`, this one `to`. The engine translates wherever the old name still appears: in
/// operations queued and rows stored before the upgrade, in pages from a server not yet
/// upgraded, and, on the server, in older clients' pushes and pulls (docs/sync-protocol.md,
/// "Schema evolution").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rename {
    /// The name builds older than `since` use.
    pub from: &'static str,
    /// The name it has now: one of the type's fields.
    pub to: &'static str,
    /// The schema version that renamed it.
    pub since: u32,
}

impl EntityType {
    /// Its fields renamed since earlier schema versions.
    pub const fn renamed(self) -> &'static [Rename] {
        self.0.renamed
    }

    /// Gives the keys of `fields` that earlier schema versions named their current names: what
    /// an older build wrote reads as this one's. Where both names are present the current one
    /// is kept. Returns whether anything changed.
    pub fn to_current<V>(self, fields: &mut BTreeMap<String, V>) -> bool {
        let mut changed = false;
        for rename in self.0.renamed {
            if let Some(value) = fields.remove(rename.from) {
                fields.entry(rename.to.to_owned()).or_insert(value);
                changed = true;
            }
        }
        changed
    }

    /// [`to_current`](Self::to_current) for a row's fields and their clock readings together:
    /// where a row holds a field under both names (an older server instance wrote the old one
    /// beside the new), the later reading's value and reading are kept. Returns whether
    /// anything changed.
    pub fn row_to_current<V>(
        self,
        fields: &mut BTreeMap<String, V>,
        readings: &mut BTreeMap<String, Hlc>,
    ) -> bool {
        let mut changed = false;
        for rename in self.0.renamed {
            let (value, reading) = (fields.remove(rename.from), readings.remove(rename.from));
            if value.is_none() && reading.is_none() {
                continue;
            }
            changed = true;
            let current = readings.get(rename.to).copied();
            let later = fields.get(rename.to).is_none()
                || reading.is_some_and(|old| current.is_none_or(|new| old > new));
            if later {
                if let Some(value) = value {
                    fields.insert(rename.to.to_owned(), value);
                }
                if let Some(reading) = reading {
                    readings.insert(rename.to.to_owned(), reading);
                }
            }
        }
        changed
    }

    /// [`to_current`](Self::to_current) for a list of field names (a conflict's lost fields).
    pub fn names_to_current(self, names: &mut [String]) {
        for name in names {
            if let Some(rename) = self.0.renamed.iter().find(|r| r.from == name.as_str()) {
                *name = rename.to.to_owned();
            }
        }
    }

    /// [`as_known_at`](Self::as_known_at) for a list of field names.
    pub fn names_as_known_at(self, version: u32, names: &mut [String]) {
        for name in names {
            let renamed = self.0.renamed.iter().find(|r| r.since > version && r.to == name.as_str());
            if let Some(rename) = renamed {
                *name = rename.from.to_owned();
            }
        }
    }

    /// Gives the keys of `fields` the names a build at schema `version` knows them by: the
    /// reverse of [`to_current`](Self::to_current), for the renames after `version`.
    pub fn as_known_at<V>(self, version: u32, fields: &mut BTreeMap<String, V>) {
        for rename in self.0.renamed.iter().rev().filter(|r| r.since > version) {
            if let Some(value) = fields.remove(rename.to) {
                fields.insert(rename.from.to_owned(), value);
            }
        }
    }
}

impl PartialEq for EntityType {
    /// Types are equal by name. The same declaration (the usual case) is equal without reading
    /// the names; a declaration may also have copies, so the names decide otherwise.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0) || self.0.name == other.0.name
    }
}

impl Eq for EntityType {}

impl Hash for EntityType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl PartialOrd for EntityType {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EntityType {
    /// The registry's order (parents first); types it does not list come after, by name.
    fn cmp(&self, other: &Self) -> Ordering {
        if self == other {
            return Ordering::Equal;
        }
        let registry = Registry::global();
        (registry.rank(*self), self.0.name).cmp(&(registry.rank(*other), other.0.name))
    }
}

impl fmt::Debug for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityType({})", self.0.name)
    }
}

impl Serialize for EntityType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name)
    }
}

impl<'de> Deserialize<'de> for EntityType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        EntityType::named(&name)
            .ok_or_else(|| serde::de::Error::custom(format_args!("unknown entity type '{name}'")))
    }
}

/// The types of a program, parents before children, and the migrations of their local tables,
/// installed once at start ([`Registry::install`]) so that names read back from the outbox and
/// the wire find their type, and every local database opened has the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    types: Vec<EntityType>,
    schema: Vec<AppMigration>,
    /// The program's schema version (0 until declared), announced on every request.
    version: u32,
    /// The oldest schema version a server of this program syncs with (0: any).
    breaking_since: u32,
}

/// One migration of a program's own local schema (the table of a synced type, say), applied
/// when a local database opens, after the engine's own, each once. Versions sort like the
/// engine's (`2026-12-06-000000_boards`); a version is never edited after it shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppMigration {
    /// Its version, unique and ordered.
    pub version: &'static str,
    /// The SQL (SQLite) that applies it.
    pub up: &'static str,
}

/// A registry that cannot be built or installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A type came before the parent or a type it refers to.
    #[error("register {needed} before {entity_type}, which depends on it")]
    Order {
        /// The type registered too early.
        entity_type: &'static str,
        /// What it needs first.
        needed: &'static str,
    },
    /// Two types share a name.
    #[error("two types are named '{0}'")]
    Duplicate(&'static str),
    /// Two migrations share a version.
    #[error("two migrations have the version '{0}'")]
    DuplicateMigration(&'static str),
    /// A rename that does not end at a declared field, starts at one, or has no version.
    #[error("{entity_type} renames '{from}' to '{to}' at version {since}: '{to}' must be a field, '{from}' not, and the version at least 1")]
    Rename {
        /// The type.
        entity_type: &'static str,
        /// The old name.
        from: &'static str,
        /// The new name.
        to: &'static str,
        /// The version.
        since: u32,
    },
    /// A breaking change declared at a version after the registry's own.
    #[error("a breaking change at schema version {breaking} is ahead of the declared version {version}")]
    BreakingAhead {
        /// The version of the breaking change.
        breaking: u32,
        /// The registry's version.
        version: u32,
    },
    /// Another registry is installed already.
    #[error("another registry is installed already ({installed})")]
    AlreadyInstalled {
        /// The installed registry's types.
        installed: String,
    },
}

static GLOBAL: OnceLock<Registry> = OnceLock::new();

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// This registry with `E` added after the types it holds. `E`'s parent and the types it
    /// refers to must be in it already.
    pub fn with<E: SyncEntity>(self) -> Result<Self, RegistryError> {
        self.and(EntityType::of::<E>())
    }

    /// This registry with `entity_type` added last.
    pub fn and(mut self, entity_type: EntityType) -> Result<Self, RegistryError> {
        if self.types.contains(&entity_type) {
            return Err(RegistryError::Duplicate(entity_type.as_str()));
        }
        let needed = entity_type
            .parent()
            .map(|p| p.entity_type)
            .into_iter()
            .chain(entity_type.refers_to().iter().copied());
        for needed in needed {
            if !self.types.contains(&needed) {
                return Err(RegistryError::Order {
                    entity_type: entity_type.as_str(),
                    needed: needed.as_str(),
                });
            }
        }
        for &Rename { from, to, since } in entity_type.renamed() {
            if !entity_type.declares(to) || entity_type.declares(from) || since == 0 {
                return Err(RegistryError::Rename { entity_type: entity_type.as_str(), from, to, since });
            }
        }
        self.types.push(entity_type);
        Ok(self)
    }

    /// This registry with the migrations of its types' local tables added.
    pub fn with_schema(mut self, schema: &[AppMigration]) -> Result<Self, RegistryError> {
        for migration in schema {
            if self.schema.iter().any(|m| m.version == migration.version) {
                return Err(RegistryError::DuplicateMigration(migration.version));
            }
            self.schema.push(*migration);
        }
        self.schema.sort_by_key(|m| m.version);
        Ok(self)
    }

    /// The migrations of its types' local tables, in version order.
    pub fn schema(&self) -> &[AppMigration] {
        &self.schema
    }

    /// This registry declaring its schema `version`: a number the program raises with each
    /// release that changes its types. Clients announce it on every request (see
    /// docs/sync-protocol.md, "Schema evolution").
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// This registry declaring a breaking change at `version` (a field made required, a
    /// meaning changed) besides those its types declare ([`SyncEntity::BREAKING_SINCE`]): a
    /// server running it answers clients that announce an older version `426
    /// upgrade_required`, naming the version, and they keep their queued work until they are
    /// upgraded. Additive changes (a new optional field, a new type) are not breaking.
    pub fn breaking_since(mut self, version: u32) -> Result<Self, RegistryError> {
        if version > self.version {
            return Err(RegistryError::BreakingAhead { breaking: version, version: self.version });
        }
        self.breaking_since = version;
        Ok(self)
    }

    /// The declared schema version (0 if none was declared).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The oldest client schema version a server of this registry syncs with (0: any): its
    /// latest breaking change, declared on it or on one of its types.
    pub fn breaking_since_version(&self) -> u32 {
        self.types.iter().map(|t| t.breaking_since()).fold(self.breaking_since, u32::max)
    }

    /// Makes this the registry of the process. Installing the same registry again is no error;
    /// installing another is.
    pub fn install(self) -> Result<&'static Registry, RegistryError> {
        let installed = GLOBAL.get_or_init(|| self.clone());
        if *installed == self {
            Ok(installed)
        } else {
            Err(RegistryError::AlreadyInstalled { installed: installed.to_string() })
        }
    }

    /// The registry of the process: the installed one, or an empty one until a registry is
    /// installed (reading it does not install anything).
    pub fn global() -> &'static Registry {
        static EMPTY: Registry =
            Registry { types: Vec::new(), schema: Vec::new(), version: 0, breaking_since: 0 };
        GLOBAL.get().unwrap_or(&EMPTY)
    }

    /// Its types, parents before children.
    pub fn types(&self) -> &[EntityType] {
        &self.types
    }

    /// Its type named `name`.
    pub fn get(&self, name: &str) -> Option<EntityType> {
        self.types.iter().copied().find(|t| t.as_str() == name)
    }

    /// Where `entity_type` comes in it (`usize::MAX` if it is not there).
    pub fn rank(&self, entity_type: EntityType) -> usize {
        self.types.iter().position(|t| *t == entity_type).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

/// One entity of any type: what the sync server works with, since a push carries entities of
/// every type in one batch. Built from wire fields through the type's validation.
pub struct AnyEntity(Box<dyn DynEntity>);

/// What [`AnyEntity`] offers of the entity inside, with its type erased.
trait DynEntity: fmt::Debug + Send + Sync {
    fn entity_type(&self) -> EntityType;
    fn entity_id(&self) -> Uuid;
    fn fields(&self) -> BTreeMap<String, Value>;
    fn references(&self) -> Vec<EntityRef>;
    fn scope(&self) -> Scope;
    fn author(&self) -> Option<UserId>;
    fn membership(&self) -> Option<Membership>;
    fn parent(&self) -> Option<EntityRef>;
    fn check_write(
        &self,
        before: Option<&AnyEntity>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError>;
    fn clone_box(&self) -> Box<dyn DynEntity>;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<E: SyncEntity> DynEntity for E {
    fn entity_type(&self) -> EntityType {
        E::ENTITY_TYPE
    }
    fn entity_id(&self) -> Uuid {
        SyncEntity::entity_id(self)
    }
    fn fields(&self) -> BTreeMap<String, Value> {
        SyncEntity::fields(self)
    }
    fn references(&self) -> Vec<EntityRef> {
        SyncEntity::references(self)
    }
    fn scope(&self) -> Scope {
        SyncEntity::scope(self)
    }
    fn author(&self) -> Option<UserId> {
        SyncEntity::author(self)
    }
    fn membership(&self) -> Option<Membership> {
        SyncEntity::membership(self)
    }
    fn parent(&self) -> Option<EntityRef> {
        SyncEntity::parent(self)
    }
    fn check_write(
        &self,
        before: Option<&AnyEntity>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        SyncEntity::check_write(self, before.and_then(AnyEntity::downcast_ref::<E>), store)
    }
    fn clone_box(&self) -> Box<dyn DynEntity> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl AnyEntity {
    /// `entity`, its type erased.
    pub fn new<E: SyncEntity>(entity: E) -> Self {
        Self(Box::new(entity))
    }

    /// Rebuilds an entity of `entity_type` from wire fields, through its validation.
    pub fn from_fields(
        entity_type: EntityType,
        id: Uuid,
        fields: &BTreeMap<String, Value>,
    ) -> Result<Self, ValidationError> {
        (entity_type.0.from_fields)(id, fields)
    }

    /// The entity as `E`, if it is one.
    pub fn downcast_ref<E: SyncEntity>(&self) -> Option<&E> {
        self.0.as_any().downcast_ref()
    }

    /// The entity as `E`, or itself back if it is another type.
    pub fn downcast<E: SyncEntity>(self) -> Result<E, AnyEntity> {
        if self.0.as_any().is::<E>() {
            Ok(*self.0.into_any().downcast::<E>().expect("checked just above"))
        } else {
            Err(self)
        }
    }

    /// A reference to the entity.
    pub fn entity_ref(&self) -> EntityRef {
        EntityRef::new(self.entity_type(), self.entity_id())
    }

    /// The entity it lives inside, if any.
    pub fn parent(&self) -> Option<EntityRef> {
        self.0.parent()
    }

    /// Its type's write check ([`SyncEntity::check_write`]); `before` is the entity before an
    /// update, of the same type.
    pub fn check_write(
        &self,
        before: Option<&AnyEntity>,
        store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        self.0.check_write(before, store)
    }

    /// The entity's type.
    pub fn entity_type(&self) -> EntityType {
        self.0.entity_type()
    }

    /// The entity's id.
    pub fn entity_id(&self) -> Uuid {
        self.0.entity_id()
    }

    /// The entities this one refers to.
    pub fn references(&self) -> Vec<EntityRef> {
        self.0.references()
    }

    /// The entity's fields in wire form.
    pub fn fields(&self) -> BTreeMap<String, Value> {
        self.0.fields()
    }

    /// The scope the entity belongs to.
    pub fn scope(&self) -> Scope {
        self.0.scope()
    }

    /// The user a create must be made by, for entities that record their author.
    pub fn author(&self) -> Option<UserId> {
        self.0.author()
    }

    /// The project access this entity grants, if any.
    pub fn membership(&self) -> Option<Membership> {
        self.0.membership()
    }
}

impl Clone for AnyEntity {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl PartialEq for AnyEntity {
    fn eq(&self, other: &Self) -> bool {
        self.entity_type() == other.entity_type()
            && self.0.entity_id() == other.0.entity_id()
            && self.fields() == other.fields()
    }
}

impl fmt::Debug for AnyEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
