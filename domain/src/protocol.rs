//! Wire types of the sync protocol (HTTP + JSON under `/v1`). They are separate from the
//! entities on purpose: the wire format can evolve with versioning while the domain model stays
//! free to change, and this one module owns what goes over the network.

use crate::{
    entities::{EntityRef, EntityType},
    ids::{NodeId, OperationId, UserId},
    sync::{FieldChange, Hlc, OperationKind, SyncOperation},
    time::Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// One change of one entity sent by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    /// Client-generated id; the idempotency key.
    pub id: OperationId,
    /// The entity's type.
    pub entity_type: EntityType,
    /// The entity's id.
    pub entity_id: Uuid,
    /// Create, update or delete.
    pub kind: OperationKind,
    /// The server version the client based the change on.
    pub base_version: i64,
    /// Changed fields with their clock readings.
    pub fields: BTreeMap<String, FieldChange>,
}

impl From<&SyncOperation> for Mutation {
    fn from(op: &SyncOperation) -> Self {
        Self {
            id: op.id,
            entity_type: op.entity.entity_type,
            entity_id: op.entity.id,
            kind: op.kind,
            base_version: op.base_version,
            fields: op.changed_fields.clone(),
        }
    }
}

/// A batch of mutations, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The sending replica (ties in last-writer-wins are broken by it).
    pub client_id: NodeId,
    /// The mutations, in the order the client made them.
    pub mutations: Vec<Mutation>,
}

/// A row as the server holds it. `T` is how its type is held: an [`EntityType`] of this build's
/// registry, or its name alone ([`UnknownTypeState`]) for a row of a type this build does not
/// know (a newer server's), which a client keeps aside until an upgrade teaches it the type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityState<T = EntityType> {
    /// The entity's type.
    pub entity_type: T,
    /// The entity's id.
    pub entity_id: Uuid,
    /// Server version.
    pub version: i64,
    /// Tombstone.
    pub deleted: bool,
    /// All fields.
    pub fields: BTreeMap<String, Value>,
    /// When each field was last written. On the wire each reading appears once, with the
    /// fields it stamps (see [`readings_by_field`]).
    #[serde(with = "readings_by_field")]
    pub field_hlc: BTreeMap<String, Hlc>,
    /// Set on a tombstone made by the delete of the entity it lived inside, not a delete of its
    /// own (see [`DeletedWith`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_with: Option<DeletedWith>,
}

/// A pulled row of a type this build's registry does not know, its type by name.
pub type UnknownTypeState = EntityState<String>;

impl<T> EntityState<T> {
    /// The same row, its type held as `entity_type`.
    pub fn with_type<U>(self, entity_type: U) -> EntityState<U> {
        EntityState {
            entity_type,
            entity_id: self.entity_id,
            version: self.version,
            deleted: self.deleted,
            fields: self.fields,
            field_hlc: self.field_hlc,
            deleted_with: self.deleted_with,
        }
    }
}

impl UnknownTypeState {
    /// The row with its type resolved in this build's registry, or itself if the type is still
    /// unknown.
    // The error is the row handed back, the same size as the answer.
    #[allow(clippy::result_large_err)]
    pub fn resolve(self) -> Result<EntityState, UnknownTypeState> {
        match EntityType::named(&self.entity_type) {
            Some(entity_type) => Ok(self.with_type(entity_type)),
            None => Err(self),
        }
    }
}

/// Why a row is a tombstone without a delete of its own: the entity it lived inside (its
/// parent, or a parent's parent) was deleted. A child is deleted with its parent, and a write
/// into a deleted parent is stored deleted; the write's author is told by a conflict of kind
/// "parent deleted" that keeps what they wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedWith {
    /// The deleted entity it lived inside.
    pub parent: EntityRef,
    /// Who deleted it, when the server knows (the push that deleted it); `None` for a write
    /// that arrived into a parent deleted earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UserId>,
}

/// The wire form of [`EntityState::field_hlc`]: each clock reading once, with the fields it
/// stamps, `{"<reading>": ["description", "name"]}`. The fields of a row written at once share
/// one reading, so a pulled row carries it once instead of once per field; a page of new rows
/// is about half the size and its readings are parsed once a row. The form that maps each
/// field to its reading, `{"name": "<reading>"}`, is read too: each entry is taken by what its
/// value is, a list of fields or a reading.
pub mod readings_by_field {
    use super::Hlc;
    use serde::{
        de::{self, MapAccess, SeqAccess, Visitor},
        Deserialize, Deserializer, Serializer,
    };
    use std::{collections::BTreeMap, fmt};

    /// Writes the grouped form, readings in clock order and each one's fields in name order.
    pub fn serialize<S: Serializer>(
        readings: &BTreeMap<String, Hlc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        // A row has few distinct readings (usually one): a list searched in place beats a map.
        let mut groups: Vec<(Hlc, Vec<&str>)> = Vec::new();
        for (field, hlc) in readings {
            match groups.iter_mut().find(|(reading, _)| reading == hlc) {
                Some((_, fields)) => fields.push(field),
                None => groups.push((*hlc, vec![field])),
            }
        }
        groups.sort_unstable_by_key(|(reading, _)| *reading);
        serializer.collect_map(groups)
    }

    /// Reads either form; a field given two readings is refused.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Hlc>, D::Error> {
        deserializer.deserialize_map(Readings)
    }

    struct Readings;

    impl<'de> Visitor<'de> for Readings {
        type Value = BTreeMap<String, Hlc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("clock readings, each with the fields it stamps")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut readings = BTreeMap::new();
            let mut stamp = |field: String, hlc: Hlc| match readings.insert(field, hlc) {
                Some(_) => Err(de::Error::custom("a field is given two clock readings")),
                None => Ok(()),
            };
            while let Some(key) = map.next_key::<String>()? {
                match map.next_value::<Entry>()? {
                    Entry::Fields(fields) => {
                        let hlc: Hlc = key.parse().map_err(de::Error::custom)?;
                        for field in fields {
                            stamp(field, hlc)?;
                        }
                    }
                    Entry::Reading(hlc) => stamp(key, hlc)?,
                }
            }
            Ok(readings)
        }
    }

    /// One entry's value: the fields a reading stamps, or one field's reading.
    enum Entry {
        Fields(Vec<String>),
        Reading(Hlc),
    }

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct EntryVisitor;

            impl<'de> Visitor<'de> for EntryVisitor {
                type Value = Entry;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a list of field names or a clock reading")
                }

                fn visit_str<E: de::Error>(self, text: &str) -> Result<Entry, E> {
                    text.parse().map(Entry::Reading).map_err(E::custom)
                }

                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
                    let mut fields = Vec::new();
                    while let Some(field) = seq.next_element()? {
                        fields.push(field);
                    }
                    Ok(Entry::Fields(fields))
                }
            }

            deserializer.deserialize_any(EntryVisitor)
        }
    }
}

/// The result of one mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum MutationOutcome {
    /// Applied; the row now has `version`.
    Applied {
        /// The row's new version.
        version: i64,
    },
    /// Seen before (same id, same content): nothing was applied again. Replays the first
    /// result.
    Duplicate {
        /// The version the first application produced.
        version: i64,
        /// The first result, as answered then (`applied` or `conflict`).
        first: Box<MutationOutcome>,
    },
    /// Merged against concurrent changes: `lost_fields` were overwritten by newer writes.
    Conflict {
        /// The server row after the merge.
        server: EntityState,
        /// Fields of this mutation that lost to a later write.
        lost_fields: Vec<String>,
    },
    /// Refused for good; retrying will not help.
    Rejected {
        /// A stable reason code: `forbidden`, `not_found`, `immutable_field`, `already_exists`,
        /// `reference_deleted` or `id_reused`.
        code: String,
        /// Human-readable detail.
        message: String,
    },
}

/// The result for one mutation of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationResult {
    /// The mutation's id.
    pub id: OperationId,
    /// What happened.
    #[serde(flatten)]
    pub outcome: MutationOutcome,
}

/// The answer to a push: one result per mutation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// Per-mutation results.
    pub results: Vec<MutationResult>,
}

/// `GET /v1/accounts?email=`: whose account an email address is, to invite them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    /// The address, as the account signed up with it (case does not matter).
    pub email: String,
}

/// The account an email address belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSummary {
    /// The account's user id: what a collaborator record names.
    pub user_id: UserId,
    /// The address, as stored (lower case).
    pub email: String,
}

/// Asks for changes after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Where the last pull ended; `None` for everything.
    pub cursor: Option<String>,
    /// Page size, 1 to [`MAX_PULL_LIMIT`].
    #[serde(default = "default_pull_limit")]
    pub limit: u32,
    /// What to pull: `None` for everything the user may see, [`PEOPLE_SCOPE`] for user
    /// profiles (the user's own and fellow members'), or `project:<uuid>` for one project and
    /// everything in it. A cursor belongs to the scope it was pulled with.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The pull scope of the user profiles a user may see.
pub const PEOPLE_SCOPE: &str = "people";

/// The scopes a user may pull now: [`PEOPLE_SCOPE`], then each readable project as
/// `project:<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopesResponse {
    /// The scopes, with their heads.
    pub scopes: Vec<ScopeHead>,
}

/// A pull scope and where its changes stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeHead {
    /// The scope's name, to pass as [`PullRequest::scope`].
    pub scope: String,
    /// Changes as the user sees them: any change in the scope, or a new grant of it, changes
    /// this number. A client that pulled the scope to its end at this head has nothing to pull.
    pub head: i64,
}

/// The page size of a pull that names none.
pub const DEFAULT_PULL_LIMIT: u32 = 500;
/// The largest page a pull may ask for.
pub const MAX_PULL_LIMIT: u32 = 1000;
/// The most mutations one push may carry.
pub const MAX_PUSH_MUTATIONS: usize = 500;

/// The code of a push refused as a whole because a clock reading in it is too far ahead of the
/// server's clock (422, naming the first such mutation). Nothing of the push was stored.
pub const CLOCK_SKEW: &str = "clock_skew";

/// The code of a push refused as a whole because it names an entity type, or a field of one,
/// that the server's schema does not declare: the client runs a newer schema than the server
/// (422). Nothing of the push was stored; the client keeps the operations queued and sends them
/// again once the server is upgraded (docs/sync-protocol.md, "Schema evolution").
pub const NOT_IN_SCHEMA: &str = "not_in_schema";

/// The request header by which a client announces its program's schema version
/// ([`Registry::version`](crate::entities::Registry::version)); a request without it counts as
/// version 0.
pub const SCHEMA_VERSION_HEADER: &str = "trackflow-schema-version";

/// The code of a request refused with `426 Upgrade Required` because the client's schema
/// version is older than the oldest the server syncs with (after a breaking change); the
/// answer's `min_version` names that version. The client keeps its queued work.
pub const UPGRADE_REQUIRED: &str = "upgrade_required";

/// The response header carrying the server's clock when it answered, in Unix milliseconds.
/// Every answer has it, errors included; clients correct their clock readings by it
/// ([`ServerClock`](crate::ports::ServerClock)).
pub const SERVER_TIME_HEADER: &str = "trackflow-time";

fn default_pull_limit() -> u32 {
    DEFAULT_PULL_LIMIT
}

/// The answer to a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", try_from = "PullResponseWire")]
pub enum PullResponse {
    /// A page of changes.
    Changes {
        /// Changed rows, tombstones included, in version order.
        changes: Vec<EntityState>,
        /// The changed rows of types this build does not know, in version order: a client
        /// keeps them aside (see docs/sync-protocol.md, "Schema evolution"). On the wire they
        /// are among `changes`; reading a page sorts them out, and a server never has any.
        #[serde(skip_serializing)]
        unknown: Vec<UnknownTypeState>,
        /// The cursor to pull from next.
        next_cursor: String,
        /// Whether more changes are waiting.
        has_more: bool,
    },
    /// The cursor is unknown or expired: re-sync this scope from scratch.
    Reset,
}

/// How a [`PullResponse`] is read: in one pass over the page. Serde reads an internally tagged
/// enum by first copying the whole object into a buffer of its own, which for a page of a
/// thousand rows costs as much again as reading them; the JSON is the same.
#[derive(Deserialize)]
struct PullResponseWire {
    status: PullStatus,
    changes: Option<Vec<UnknownTypeState>>,
    next_cursor: Option<String>,
    has_more: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PullStatus {
    Changes,
    Reset,
}

impl TryFrom<PullResponseWire> for PullResponse {
    type Error = String;

    fn try_from(wire: PullResponseWire) -> Result<Self, Self::Error> {
        match wire.status {
            PullStatus::Reset => Ok(PullResponse::Reset),
            PullStatus::Changes => {
                let rows = wire.changes.ok_or("missing field `changes`")?;
                let mut changes = Vec::with_capacity(rows.len());
                let mut unknown = Vec::new();
                for row in rows {
                    match row.resolve() {
                        Ok(known) => changes.push(known),
                        Err(row) => unknown.push(row),
                    }
                }
                Ok(PullResponse::Changes {
                    changes,
                    unknown,
                    next_cursor: wire.next_cursor.ok_or("missing field `next_cursor`")?,
                    has_more: wire.has_more.ok_or("missing field `has_more`")?,
                })
            }
        }
    }
}

/// Creates an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// The login name.
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// The user id the client already uses offline (its local profile's id), if any; the
    /// server assigns one otherwise.
    #[serde(default)]
    pub user_id: Option<UserId>,
}

/// Logs in to an existing account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogInRequest {
    /// The login name.
    pub email: String,
    /// The password.
    pub password: String,
}

/// A bearer token for the sync endpoints.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    /// The account's user id.
    pub user_id: UserId,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the token stops working.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for AuthResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthResponse")
            .field("user_id", &self.user_id)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine-readable code (`invalid_json`, `unauthorized`, `invalid_field`, ...).
    pub code: String,
    /// What is wrong, naming the field.
    pub message: String,
    /// For a refused push: the mutation that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation_id: Option<OperationId>,
    /// For [`UPGRADE_REQUIRED`]: the oldest schema version the server syncs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<u32>,
}

/// The health endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok` when the server and its store answer.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// A change notice on the event stream (`GET /v1/events`, event `poke`): changes up to
/// `version` exist in `scopes`. It names where to look, never the data: the client pulls.
/// Between server instances it travels with every changed scope; each instance passes on to a
/// user only the scopes that user may read. `scopes: None` means "any scope": pull everything
/// (after the stream missed pokes, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poke {
    /// The newest version the change produced.
    pub version: i64,
    /// The changed scopes (`project:<uuid>`, `user:<uuid>`), or `None` for all.
    pub scopes: Option<Vec<String>>,
}

/// The answer to a blob upload (`PUT /v1/blobs/{sha256}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    /// The blob's name.
    pub sha256: String,
    /// Its length.
    pub size_bytes: u64,
    /// Whether this request stored it (`false`: the server had it already).
    pub created: bool,
}
