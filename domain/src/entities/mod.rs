//! Synced entities: what every synced type declares ([`SyncEntity`]), the registry of a
//! program's types, scopes and memberships, and the roles the engine's authorization reads. A
//! program's types (the music model's, `examples/tasks`') live in its own crate.

mod any;
mod registry;
mod role;

pub use any::{Membership, ParseScopeError, Scope, ScopeKind, SHARED_PREFIX};
pub use registry::{
    AnyEntity, AppMigration, Declaration, EntityType, Index, Parent, Registry, RegistryError, Rename,
    WriteRule,
};
pub use role::CollaboratorRole;

use crate::{
    error::{RepositoryError, ValidationError},
    ids::{EntityId, UserId},
    ports::WriteContext,
    sync::{ConflictPolicy, Priority},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{collections::BTreeMap, fmt, str::FromStr};
use uuid::Uuid;

impl EntityType {
    /// The type of the entity an entity of this type lives inside, if any.
    pub const fn parent_type(self) -> Option<EntityType> {
        match self.parent() {
            Some(parent) => Some(parent.entity_type),
            None => None,
        }
    }

    /// The parent that wire `fields` of an entity of this type name, read without building the
    /// entity: `None` if the type has no parent or the fields do not name a valid one (building
    /// the entity then reports why).
    pub fn parent_in(self, fields: &BTreeMap<String, Value>) -> Option<EntityRef> {
        let parent = self.parent()?;
        let id = fields.get(parent.field)?.as_str()?.parse().ok()?;
        Some(EntityRef::new(parent.entity_type, id))
    }

    /// The type at the root of this type's shared scope (a project, for a comment): its
    /// topmost ancestor, if that is a scope root.
    pub fn scope_root(self) -> Option<EntityType> {
        let mut top = self;
        while let Some(parent) = top.parent_type() {
            top = parent;
        }
        top.is_scope_root().then_some(top)
    }

    /// The name people read: `audio track` for `audio_track`.
    pub fn display_name(self) -> String {
        self.as_str().replace('_', " ")
    }

    /// The types whose rows must be in place before this type's: its parent's and those it
    /// refers to.
    pub fn depends_on(self) -> Vec<EntityType> {
        let mut types: Vec<EntityType> =
            self.parent_type().into_iter().chain(self.refers_to().iter().copied()).collect();
        types.dedup();
        types
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error for an unknown entity type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity type '{0}'")]
pub struct UnknownEntityType(pub String);

impl FromStr for EntityType {
    type Err = UnknownEntityType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::named(s).ok_or_else(|| UnknownEntityType(s.to_owned()))
    }
}

/// A reference to one entity of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// The entity's type.
    pub entity_type: EntityType,
    /// The entity's id.
    pub id: Uuid,
}

impl EntityRef {
    /// A reference to entity `id` of type `entity_type`.
    pub const fn new(entity_type: EntityType, id: Uuid) -> Self {
        Self { entity_type, id }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.entity_type.display_name(), self.id)
    }
}

/// A synced type's declaration: everything the sync engine needs to know about it, so that
/// repositories, the outbox, merge, authorization and the apply order are written once for all
/// types. A type is declared here, in its own file, and listed once in the registry
/// (`entities/registry.rs`).
pub trait SyncEntity: Serialize + Clone + fmt::Debug + Send + Sync + 'static {
    /// This entity's type (provided: do not override).
    const ENTITY_TYPE: EntityType = EntityType::of::<Self>();

    /// This declaration with the type erased, as [`EntityType`] reads it (provided: do not
    /// override).
    const DECLARATION: &'static Declaration = &Declaration::of::<Self>();

    /// The stable name (`project`, `audio_track`): stored in the outbox, sent on the wire.
    const NAME: &'static str;

    /// Its typed id.
    type Id: EntityId;

    /// A change to it: which fields to set, each checked by [`SyncEntity::patched`].
    type Patch: fmt::Debug + Send + Sync + 'static;

    /// What it lives inside (hidden and deleted with it), if anything.
    const PARENT: Option<Parent> = None;

    /// The types, besides its parent's, whose entities it may refer to (which must exist
    /// first): a playlist's tracks.
    const REFERS_TO: &'static [EntityType] = &[];

    /// The kind of scope it belongs to: a user's own records, or a project.
    const SCOPE: ScopeKind;

    /// Who may write it, when it lives in a project.
    const WRITE: WriteRule = WriteRule::MEMBERS;

    /// The upstream priority of its creates and updates (deletes are always critical).
    const PRIORITY: Priority;

    /// How a pulled change meets an unacknowledged local edit, unless the app configures
    /// another policy.
    const POLICY: ConflictPolicy = ConflictPolicy::LastWriterWins;

    /// The local table that holds it (its columns: `id`, each field, then the sync metadata
    /// columns; see docs/adding-an-entity.md).
    const TABLE: &'static str;

    /// The fields that hold JSON other than strings and numbers (arrays, objects, booleans),
    /// stored as JSON text.
    const JSON_FIELDS: &'static [&'static str] = &[];

    /// The field naming the root of its scope (`project_id` inside a project), or `id` for a
    /// type that is a scope of its own (a project, a user's profile). Forgetting a scope
    /// removes every row whose scope field names it.
    const SCOPE_FIELD: &'static str = "id";

    /// The fields lists are ordered by (the id breaks ties).
    const ORDER: &'static [&'static str] = &["created_at"];

    /// Its indexes: a name and the field an index lookup matches (`Repository::list_by`).
    const INDEXES: &'static [Index] = &[];

    /// The field naming the user its entities grant membership of their scope to (a project's
    /// owner, a collaborator), if they grant any; [`SyncEntity::membership`] says the role.
    const MEMBER_FIELD: Option<&'static str> = None;

    /// The field holding the content hash of a file it refers to (a track's audio), which
    /// must be in the local file cache and is uploaded before the entity's write is sent.
    const BLOB_FIELD: Option<&'static str> = None;

    /// The program's schema version ([`Registry::with_version`](registry::Registry::with_version))
    /// at which this type last changed in a way older builds cannot sync with (a field made
    /// required, a meaning changed); 0 for none. A server answers clients announcing an older
    /// version `426 upgrade_required` ([`Registry::breaking_since_version`](registry::Registry::breaking_since_version)).
    /// Adding an optional field or a type is not breaking.
    const BREAKING_SINCE: u32 = 0;

    /// Fields renamed since earlier schema versions. The app renames the local column in a
    /// migration of its own ([`AppMigration`]); the engine does the rest: queued operations
    /// and stored rows are moved to the new name when the store opens after the upgrade, and a
    /// server translates for clients still on older versions, which keep syncing. Adding a rename is not breaking; dropping one is
    /// ([`BREAKING_SINCE`](Self::BREAKING_SINCE) at its version).
    const RENAMED: &'static [Rename] = &[];

    /// The names of its synced fields (everything [`SyncEntity::fields`] returns).
    const FIELDS: &'static [&'static str];

    /// The fields only a create may set; an update that changes one is refused.
    const IMMUTABLE: &'static [&'static str];

    /// Fields that may be set once: a write may change them only while they are null.
    const SET_ONCE: &'static [&'static str] = &[];

    /// This entity with `patch` applied, through the same validation as its constructors.
    fn patched(&self, patch: &Self::Patch) -> Result<Self, ValidationError>;

    /// Rebuilds an entity from wire fields (a pushed create, a merged or pulled row), through
    /// the same validation as its constructors. Unknown, missing and ill-typed fields are
    /// errors that name the field.
    fn from_fields(id: Uuid, fields: &BTreeMap<String, Value>) -> Result<Self, ValidationError>;

    /// The entity's id.
    fn entity_id(&self) -> Uuid;

    /// Entities that must exist (and whose creates must reach the server first) for this one
    /// to be valid: a track's project, a comment's track, a playlist's project and tracks, ...
    fn references(&self) -> Vec<EntityRef>;

    /// The entity this one lives inside, if any: a track's project, a comment's track. An
    /// entity is visible only while its parent is; deleting a project hides what it contains.
    fn parent(&self) -> Option<EntityRef>;

    /// The scope it belongs to (for pulls, pokes and authorization).
    fn scope(&self) -> Scope;

    /// The project access it grants, if any: a project grants its owner, a collaborator record
    /// its user.
    fn membership(&self) -> Option<Membership> {
        None
    }

    /// The user a create must be made by, for entities that record their author.
    fn author(&self) -> Option<UserId> {
        None
    }

    /// Checks a local write against what the store holds, inside the write's transaction (a
    /// comment's position against its stored track). `before` is the entity before an
    /// update. References and the parent are checked for every type already.
    fn check_write(
        &self,
        _before: Option<&Self>,
        _store: &mut dyn WriteContext,
    ) -> Result<(), RepositoryError> {
        Ok(())
    }

    /// A reference to this entity.
    fn entity_ref(&self) -> EntityRef {
        EntityRef::new(Self::ENTITY_TYPE, self.entity_id())
    }

    /// The synced fields by wire name, without `id`. Field-level merge and "record only the
    /// fields that changed" both work on this map.
    fn fields(&self) -> BTreeMap<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.into_iter().filter(|(k, _)| k != "id").collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// Reads typed values out of a wire field map, naming the field in every error: the way a
/// type's `from_fields` reads its fields.
pub struct FieldReader<'a> {
    fields: &'a BTreeMap<String, Value>,
}

impl<'a> FieldReader<'a> {
    /// A reader over `fields`, which must name only fields in `known`.
    pub fn new(fields: &'a BTreeMap<String, Value>, known: &[&str]) -> Result<Self, ValidationError> {
        match fields.keys().find(|name| !known.contains(&name.as_str())) {
            Some(unknown) => Err(ValidationError::new("fields", format!("unknown field '{unknown}'"))),
            None => Ok(Self { fields }),
        }
    }

    /// A field that must be present and not null.
    pub fn required<T: serde::de::DeserializeOwned>(&self, name: &'static str) -> Result<T, ValidationError> {
        self.optional(name)?.ok_or_else(|| ValidationError::new(name, "is required"))
    }

    /// A field that may be absent or null.
    pub fn optional<T: serde::de::DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, ValidationError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|e| ValidationError::new(name, format!("has the wrong type: {e}"))),
        }
    }
}

/// The fields of `after` whose values differ from `before`, with their new values.
pub fn changed_fields<E: SyncEntity>(before: &E, after: &E) -> BTreeMap<String, Value> {
    changed_values(&before.fields(), &after.fields())
}

/// The entries of wire fields `after` whose values differ from `before`.
pub fn changed_values(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(*value))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}
