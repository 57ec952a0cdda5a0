use crate::{
    entities::EntityType,
    error::RepositoryError,
    ids::ScopeId,
    protocol::{EntityState, UnknownTypeState},
    sync::ConflictPolicy,
    time::Timestamp,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shaku::Interface;
use std::{collections::BTreeMap, time::Duration};

/// The minimum interval between periodic pulls of a scope, unless configured otherwise.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Where a scope's pulls stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSync {
    /// The scope (`all`, `project:<uuid>`, ...).
    pub scope: String,
    /// Where the next pull starts; `None` to pull from the start.
    pub cursor: Option<String>,
    /// When a pull of the scope last completed.
    pub last_sync_at: Option<Timestamp>,
    /// The shortest time between periodic pulls; forced pulls ignore it.
    pub min_interval: Duration,
    /// The scope's head when a pull of it last completed (see
    /// [`ScopeHead`](crate::protocol::ScopeHead)).
    pub head: Option<i64>,
}

impl ScopeSync {
    /// Whether a periodic pull is due at `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        let interval = i64::try_from(self.min_interval.as_millis()).unwrap_or(i64::MAX);
        self.last_sync_at.is_none_or(|at| now.as_millis().saturating_sub(at.as_millis()) >= interval)
    }
}

/// The conflict policy of each entity type; types not named use the one their declaration
/// gives ([`EntityType::default_policy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictPolicies(pub BTreeMap<EntityType, ConflictPolicy>);

impl ConflictPolicies {
    /// The policy of `entity_type`.
    pub fn of(&self, entity_type: EntityType) -> ConflictPolicy {
        self.0.get(&entity_type).copied().unwrap_or(entity_type.default_policy())
    }
}

/// How pulled pages are applied: the order entity types go in within a page (what a row lives
/// inside or refers to before the row), and each type's conflict policy. The per-entity sync
/// use cases of `trackflow-usecases` decide both and build the plan; the store follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyPlan {
    order: Vec<EntityType>,
    policies: ConflictPolicies,
}

/// An [`ApplyPlan`] that does not name every entity type exactly once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an apply plan must order every entity type exactly once; {0} is {1}")]
pub struct IncompletePlan(pub EntityType, pub &'static str);

impl ApplyPlan {
    /// A plan applying types in `order` under `policies`. Every entity type must appear in
    /// `order` exactly once.
    pub fn new(order: Vec<EntityType>, policies: ConflictPolicies) -> Result<Self, IncompletePlan> {
        for &entity_type in EntityType::all() {
            match order.iter().filter(|t| **t == entity_type).count() {
                1 => {}
                0 => return Err(IncompletePlan(entity_type, "missing")),
                _ => return Err(IncompletePlan(entity_type, "repeated")),
            }
        }
        Ok(Self { order, policies })
    }

    /// The entity types, in the order a page applies them.
    pub fn order(&self) -> &[EntityType] {
        &self.order
    }

    /// Where `entity_type` goes in [`order`](Self::order).
    pub fn rank(&self, entity_type: EntityType) -> usize {
        self.order.iter().position(|t| *t == entity_type).unwrap_or(usize::MAX)
    }

    /// The conflict policy of `entity_type`.
    pub fn policy(&self, entity_type: EntityType) -> ConflictPolicy {
        self.policies.of(entity_type)
    }
}

/// What applying pulled rows did to one entity type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCounts {
    /// Rows written (created, merged or tombstoned).
    pub applied: u64,
    /// Rows not newer than the local copy: not written.
    pub skipped: u64,
    /// Fields both sides changed to different values.
    pub conflicts: u64,
    /// Rows kept back until what they live inside arrives.
    pub deferred: u64,
    /// Rows brought back to the server's state after it refused a local write of them for good.
    pub reverted: u64,
}

impl ApplyCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: ApplyCounts) {
        self.applied += other.applied;
        self.skipped += other.skipped;
        self.conflicts += other.conflicts;
        self.deferred += other.deferred;
        self.reverted += other.reverted;
    }
}

/// The statistics of one scope and entity type, as `trackflow status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatistics {
    /// The scope.
    pub scope: String,
    /// The entity type.
    pub entity_type: EntityType,
    /// When the last pull of the scope ended.
    pub last_sync_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What it did to rows of this type.
    pub counts: ApplyCounts,
    /// Pulls of the scope that failed since the last one that completed.
    pub errors: u64,
}

/// The local side of downstream sync: per-scope sync metadata and the application of pulled
/// pages. Each page is applied in one local transaction together with its cursor.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait DownstreamRepository: Interface {
    /// The scope's sync metadata (defaults for a scope never pulled).
    async fn scope(&self, scope: &str) -> Result<ScopeSync, RepositoryError>;

    /// Applies `changes` (one pulled page, in server order) as `plan` says, and stores
    /// `next_cursor` as the scope's cursor, all in one transaction. Rows are merged with local
    /// data, never blindly overwritten: see [`crate::sync::resolve`]. What this build's types
    /// do not declare, the `unknown` rows (of types it does not know) and undeclared fields of
    /// the others, is kept aside untouched until an upgrade declares it.
    async fn apply_page(
        &self,
        scope: &str,
        changes: Vec<EntityState>,
        unknown: Vec<UnknownTypeState>,
        next_cursor: String,
        plan: &ApplyPlan,
    ) -> Result<BTreeMap<EntityType, ApplyCounts>, RepositoryError>;

    /// Forgets the scope's cursor (the server answered reset); local data and pending
    /// operations stay.
    async fn reset(&self, scope: &str) -> Result<(), RepositoryError>;

    /// Records a completed pull of `scope` at `at`, the scope's `head` it reached (if known),
    /// and its statistics.
    async fn finish(
        &self,
        scope: &str,
        at: Timestamp,
        head: Option<i64>,
        stats: Vec<SyncStatistics>,
    ) -> Result<(), RepositoryError>;

    /// Records a failed pull of `scope` (its cursor and data are untouched).
    async fn failed(&self, scope: &str) -> Result<(), RepositoryError>;

    /// The statistics of every scope and entity type.
    async fn statistics(&self) -> Result<Vec<SyncStatistics>, RepositoryError>;

    /// The scopes pulled here before (those with sync metadata).
    async fn pulled_scopes(&self) -> Result<Vec<String>, RepositoryError>;

    /// The user can no longer read the shared `scope` (removed from it, or its root is gone):
    /// removes its root and everything in it from the local tables, with its scope's cursor, head and
    /// statistics, in one transaction. Queued operations stay: the server refuses them, and the
    /// user sees them as failed. Returns the rows removed.
    async fn forget_scope(&self, scope: ScopeId) -> Result<u64, RepositoryError>;

    /// Records that the server lists `scopes` for the user now, before they are pulled: a
    /// listed scope that is gone at a later listing is then forgotten (see
    /// [`forget_scope`](Self::forget_scope)) even if no pull of it ever completed here (its
    /// members' profiles may have come with `people` meanwhile).
    async fn listed(&self, scopes: Vec<String>) -> Result<(), RepositoryError>;

    /// Whether someone may have left the people the user may read since this was last
    /// settled (a membership or a shared root was deleted, a shared scope was lost): a mark to
    /// pass to [`forget_unpulled_people`](Self::forget_unpulled_people), or `None`. The server
    /// never sends a record of those people as deleted (others still read it), so only pulling
    /// them from the start tells which are still readable.
    async fn people_left(&self) -> Result<Option<u64>, RepositoryError>;

    /// Starts the user's records over ([`PEOPLE_SCOPE`](crate::protocol::PEOPLE_SCOPE)): no
    /// cursor, and no such row counts as pulled. Rows stay until
    /// [`forget_unpulled_people`](Self::forget_unpulled_people).
    async fn restart_people(&self) -> Result<(), RepositoryError>;

    /// After a complete pull of the user's records from the start: removes those rows it did
    /// not bring (the user may no longer read them) unless they hold writes of this device not
    /// yet sent, and settles `mark`. Returns the rows removed.
    async fn forget_unpulled_people(&self, mark: u64) -> Result<u64, RepositoryError>;
}
