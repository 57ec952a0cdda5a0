//! The registry of synced types: one list, from which every place that dispatches on a type is
//! generated. What differs per type is declared once, on the type, by its [`SyncEntity`]
//! implementation (its name, fields and validation, parent, references, scope, membership,
//! author, upstream priority, conflict policy and write rule); the registry only lists the
//! types, parents before children.
//!
//! `registry!` generates [`EntityType`] (the names, `ALL`, and each type's declaration read
//! through its name), [`AnyEntity`] (an entity of any type, built from wire fields) and
//! [`EntityType::visit`], which runs code generic over [`SyncEntity`] for a type known only by
//! name. Nothing else in the engine matches on a type: a type left out of the registry, or a
//! declaration left incomplete, does not compile.

use super::{EntityRef, Membership, Scope, ScopeKind, SyncEntity};
use crate::{
    error::ValidationError,
    ids::UserId,
    sync::{ConflictPolicy, OperationKind, Priority},
};
use serde_json::Value;
use std::collections::BTreeMap;
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
}

impl WriteRule {
    /// Every member who writes (owners and editors) creates, changes and deletes.
    pub const MEMBERS: Self = Self {
        create: super::CollaboratorRole::Editor,
        update: super::CollaboratorRole::Editor,
        delete: super::CollaboratorRole::Editor,
    };
    /// Only the project's owner writes.
    pub const OWNER: Self = Self {
        create: super::CollaboratorRole::Owner,
        update: super::CollaboratorRole::Owner,
        delete: super::CollaboratorRole::Owner,
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

/// Code generic over [`SyncEntity`], run by [`EntityType::visit`] for a type known by name.
pub trait EntityVisitor {
    /// What the visit returns.
    type Output;
    /// Runs for the visited type `E`.
    fn visit<E: SyncEntity>(self) -> Self::Output;
}

macro_rules! registry {
    ($($variant:ident),+ $(,)?) => {
        /// The kinds of synced entity, in the registry's order (parents before children). The
        /// string form (`project`, `audio_track`, ...) is each type's declared
        /// [`SyncEntity::NAME`]: it is stored in the outbox, sent on the wire and used as the
        /// executor registry key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EntityType {
            $(
                #[doc = concat!("[`", stringify!($variant), "`](super::", stringify!($variant), ")")]
                $variant,
            )+
        }

        impl EntityType {
            /// Every entity type, parents before children.
            pub const ALL: [EntityType; [$(stringify!($variant)),+].len()] = [$(EntityType::$variant),+];

            /// The stable name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::NAME,)+
                }
            }

            /// Runs `visitor` for this type.
            pub fn visit<V: EntityVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(EntityType::$variant => visitor.visit::<super::$variant>(),)+
                }
            }

            /// What an entity of this type lives inside, if anything.
            pub const fn parent(self) -> Option<Parent> {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::PARENT,)+
                }
            }

            /// The types, besides its parent's, that an entity of this type may refer to.
            pub const fn refers_to(self) -> &'static [EntityType] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::REFERS_TO,)+
                }
            }

            /// The kind of scope its entities belong to.
            pub const fn scope_kind(self) -> ScopeKind {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::SCOPE,)+
                }
            }

            /// Who may write an entity of this type in a project scope.
            pub const fn write_rule(self) -> WriteRule {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::WRITE,)+
                }
            }

            /// How a pulled change meets an unacknowledged local edit, unless configured
            /// otherwise.
            pub const fn default_policy(self) -> ConflictPolicy {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::POLICY,)+
                }
            }

            /// The upstream priority of an operation on this entity type: deletes go first
            /// (they remove data others may be looking at), the rest as the type declares.
            /// Causality still overrides priority: a child never overtakes its parent's create.
            pub const fn default_priority(self, kind: OperationKind) -> Priority {
                match (self, kind) {
                    (_, OperationKind::Delete) => Priority::Critical,
                    $((EntityType::$variant, _) => <super::$variant as SyncEntity>::PRIORITY,)+
                }
            }

            /// Its synced fields.
            pub const fn fields(self) -> &'static [&'static str] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::FIELDS,)+
                }
            }

            /// Its local table.
            pub const fn table(self) -> &'static str {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::TABLE,)+
                }
            }

            /// Its fields stored as JSON text.
            pub const fn json_fields(self) -> &'static [&'static str] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::JSON_FIELDS,)+
                }
            }

            /// The field naming the root of its scope.
            pub const fn scope_field(self) -> &'static str {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::SCOPE_FIELD,)+
                }
            }

            /// The fields its lists are ordered by.
            pub const fn order(self) -> &'static [&'static str] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::ORDER,)+
                }
            }

            /// Its declared indexes.
            pub const fn indexes(self) -> &'static [Index] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::INDEXES,)+
                }
            }

            /// The field naming the user its entities grant membership to, if any.
            pub const fn member_field(self) -> Option<&'static str> {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::MEMBER_FIELD,)+
                }
            }

            /// The field naming a file it refers to, if any.
            pub const fn blob_field(self) -> Option<&'static str> {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::BLOB_FIELD,)+
                }
            }

            /// The fields that only a create may set.
            pub const fn immutable_fields(self) -> &'static [&'static str] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::IMMUTABLE,)+
                }
            }

            /// The fields that may be set once, while null.
            pub const fn set_once_fields(self) -> &'static [&'static str] {
                match self {
                    $(EntityType::$variant => <super::$variant as SyncEntity>::SET_ONCE,)+
                }
            }
        }

        /// One entity of any type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyEntity {
            $(
                #[doc = concat!("A [`", stringify!($variant), "`].")]
                $variant(super::$variant),
            )+
        }

        impl AnyEntity {
            /// Rebuilds an entity of `entity_type` from wire fields, through its validation.
            pub fn from_fields(
                entity_type: EntityType,
                id: Uuid,
                fields: &BTreeMap<String, Value>,
            ) -> Result<Self, ValidationError> {
                match entity_type {
                    $(EntityType::$variant => {
                        <super::$variant as SyncEntity>::from_fields(id, fields).map(AnyEntity::$variant)
                    })+
                }
            }

            /// The entity's type.
            pub fn entity_type(&self) -> EntityType {
                match self {
                    $(AnyEntity::$variant(_) => EntityType::$variant,)+
                }
            }

            /// The entities this one refers to.
            pub fn references(&self) -> Vec<EntityRef> {
                match self {
                    $(AnyEntity::$variant(e) => e.references(),)+
                }
            }

            /// The entity's fields in wire form.
            pub fn fields(&self) -> BTreeMap<String, Value> {
                match self {
                    $(AnyEntity::$variant(e) => e.fields(),)+
                }
            }

            /// The scope the entity belongs to.
            pub fn scope(&self) -> Scope {
                match self {
                    $(AnyEntity::$variant(e) => e.scope(),)+
                }
            }

            /// The user a create must be made by, for entities that record their author.
            pub fn author(&self) -> Option<UserId> {
                match self {
                    $(AnyEntity::$variant(e) => e.author(),)+
                }
            }

            /// The project access this entity grants, if any.
            pub fn membership(&self) -> Option<Membership> {
                match self {
                    $(AnyEntity::$variant(e) => e.membership(),)+
                }
            }
        }
    };
}

/// The registry: every synced type, parents before children. Runs `$callback!` with the list
/// (after `$args;` when given), so that code which must name each type (the client module's
/// components, say) is generated from this one list too:
/// `trackflow_domain::registered_types!(my_macro; extra, tokens)` expands to
/// `my_macro!(extra, tokens; UserProfile, Project, ...)`.
#[macro_export]
macro_rules! registered_types {
    ($callback:ident $(; $($args:tt)*)?) => {
        $callback! { $($($args)*;)? UserProfile, Project, ProjectCollaborator, AudioTrack, AudioComment, Playlist }
    };
}

crate::registered_types!(registry);
