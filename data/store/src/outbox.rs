//! The transactional outbox table and its port.

use super::{
    field_clock,
    rows::{from_json, parse, to_json},
    schema::pending_operations::{self, dsl},
    upstream, LocalStore,
};
use async_trait::async_trait;
use diesel::{
    connection::DefaultLoadingMode,
    dsl::{count_star, max, min, sql},
    prelude::*,
    sql_types::{Integer, Nullable},
};
use serde_json::Value;
use shaku::Component;
use std::collections::BTreeMap;
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    ports::{OutboxCounts, PendingOperationsRepository},
    sync::{CoalescePlan, Settlement},
    EntityRef, FieldChange, Hlc, OperationId, OperationStatus, Priority, QueuedOperation, RepositoryError,
    SyncOperation, Timestamp,
};

const TABLE: &str = "pending_operations";

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = pending_operations, check_for_backend(diesel::sqlite::Sqlite))]
// NULL for None keeps the INSERT text fixed, so Diesel caches its prepared statement.
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct OperationRow {
    #[diesel(skip_insertion)]
    pub(crate) seq: i32,
    pub(crate) id: String,
    entity_type: String,
    entity_id: String,
    pub(crate) kind: String,
    pub(crate) changed_fields: String,
    pub(crate) field_hlc: String,
    pub(crate) hlc: String,
    base_version: i64,
    pub(crate) priority: i32,
    pub(crate) depends_on: String,
    attempts: i32,
    sent: bool,
    next_attempt_at: Option<i64>,
    status: String,
    last_error: Option<String>,
    created_at: i64,
}

fn priority_rank(priority: Priority) -> i32 {
    match priority {
        Priority::Critical => 0,
        Priority::High => 1,
        Priority::Medium => 2,
        Priority::Low => 3,
    }
}

fn priority_from_rank(rank: i32) -> StoreResult<Priority> {
    [Priority::Critical, Priority::High, Priority::Medium, Priority::Low]
        .get(usize::try_from(rank).unwrap_or(usize::MAX))
        .copied()
        .ok_or_else(|| StoreError::corrupt(TABLE, format!("priority {rank}")))
}

impl OperationRow {
    pub(crate) fn encode(op: &SyncOperation) -> StoreResult<Self> {
        // Values and readings are stored apart; readings equal to the operation's own (all of
        // them, until coalescing merges operations) are left out.
        let values: BTreeMap<&str, &Value> =
            op.changed_fields.iter().map(|(f, c)| (f.as_str(), &c.value)).collect();
        let readings: BTreeMap<String, Hlc> =
            op.changed_fields.iter().map(|(f, c)| (f.clone(), c.hlc)).collect();
        Ok(Self {
            seq: 0,
            id: op.id.to_string(),
            entity_type: op.entity.entity_type.as_str().to_owned(),
            entity_id: op.entity.id.to_string(),
            kind: op.kind.as_str().to_owned(),
            changed_fields: to_json(TABLE, &values)?,
            field_hlc: to_json(TABLE, &field_clock::overrides(&readings, op.hlc))?,
            hlc: op.hlc.to_string(),
            base_version: op.base_version,
            priority: priority_rank(op.priority),
            depends_on: to_json(TABLE, &op.depends_on)?,
            attempts: i32::try_from(op.attempts).unwrap_or(i32::MAX),
            sent: op.sent,
            next_attempt_at: op.next_attempt_at.map(Timestamp::as_millis),
            status: op.status.as_str().to_owned(),
            last_error: op.last_error.clone(),
            created_at: op.created_at.as_millis(),
        })
    }

    pub(crate) fn decode(self) -> StoreResult<SyncOperation> {
        let hlc: Hlc = parse(TABLE, &self.hlc)?;
        let values: BTreeMap<String, Value> = from_json(TABLE, &self.changed_fields)?;
        let readings: BTreeMap<String, Hlc> = from_json(TABLE, &self.field_hlc)?;
        let changed_fields = values
            .into_iter()
            .map(|(field, value)| {
                let hlc = readings.get(&field).copied().unwrap_or(hlc);
                (field, FieldChange { value, hlc })
            })
            .collect();
        Ok(SyncOperation {
            id: parse(TABLE, &self.id)?,
            entity: EntityRef::new(parse(TABLE, &self.entity_type)?, parse(TABLE, &self.entity_id)?),
            kind: parse(TABLE, &self.kind)?,
            changed_fields,
            hlc,
            base_version: self.base_version,
            priority: priority_from_rank(self.priority)?,
            depends_on: from_json(TABLE, &self.depends_on)?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            sent: self.sent,
            next_attempt_at: self.next_attempt_at.map(Timestamp),
            status: parse(TABLE, &self.status)?,
            last_error: self.last_error,
            created_at: Timestamp(self.created_at),
        })
    }
}

/// What [`QueuedOperation`] holds of an outbox row: no field values or readings.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = pending_operations, check_for_backend(diesel::sqlite::Sqlite))]
struct QueuedRow {
    seq: i32,
    id: String,
    entity_type: String,
    entity_id: String,
    kind: String,
    priority: i32,
    depends_on: String,
    attempts: i32,
    sent: bool,
    next_attempt_at: Option<i64>,
    status: String,
}

impl QueuedRow {
    fn decode(self) -> StoreResult<QueuedOperation> {
        Ok(QueuedOperation {
            id: parse(TABLE, &self.id)?,
            entity: EntityRef::new(parse(TABLE, &self.entity_type)?, parse(TABLE, &self.entity_id)?),
            kind: parse(TABLE, &self.kind)?,
            priority: priority_from_rank(self.priority)?,
            depends_on: from_json(TABLE, &self.depends_on)?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            sent: self.sent,
            next_attempt_at: self.next_attempt_at.map(Timestamp),
            status: parse(TABLE, &self.status)?,
        })
    }
}

/// Appends `op` to the outbox. Callers run it inside the transaction that made the change.
pub(crate) fn insert(conn: &mut SqliteConnection, op: &SyncOperation) -> StoreResult<()> {
    diesel::insert_into(pending_operations::table).values(OperationRow::encode(op)?).execute(conn)?;
    Ok(())
}

/// The clock reading of the newest operation, if any. Every local write appends an operation,
/// so while the queue is not empty this is the highest reading issued in the database.
pub(crate) fn newest_hlc(conn: &mut SqliteConnection) -> StoreResult<Option<Hlc>> {
    // Two one-descent lookups rather than `ORDER BY seq DESC LIMIT ?`: SQLite re-prepares a
    // statement with a bound LIMIT on every call.
    let Some(newest): Option<i32> = dsl::pending_operations.select(max(dsl::seq)).get_result(conn)? else {
        return Ok(None);
    };
    let text: String = dsl::pending_operations.find(newest).select(dsl::hlc).get_result(conn)?;
    Ok(Some(parse(TABLE, &text)?))
}

/// The outbox as a [`PendingOperationsRepository`].
#[derive(Component)]
#[shaku(interface = PendingOperationsRepository)]
pub struct SqlitePendingOperationsRepository {
    /// The local database.
    store: LocalStore,
}

impl SqlitePendingOperationsRepository {
    /// The outbox of `store`.
    pub fn new(store: LocalStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl PendingOperationsRepository for SqlitePendingOperationsRepository {
    #[tracing::instrument(skip_all)]
    async fn list(&self, status: Option<OperationStatus>) -> Result<Vec<SyncOperation>, RepositoryError> {
        let store = self.store.clone();
        self.store
            .read(move |conn| {
                let mut query = dsl::pending_operations.order(dsl::seq).into_boxed();
                if let Some(status) = status {
                    query = query.filter(dsl::status.eq(status.as_str()));
                }
                let rows: Vec<OperationRow> = query.select(OperationRow::as_select()).load(conn)?;
                let listed: Vec<(i32, SyncOperation)> =
                    rows.into_iter().map(|row| Ok((row.seq, row.decode()?))).collect::<StoreResult<_>>()?;
                store.outbox_keys().remember(listed.iter().map(|(seq, op)| (op.id, *seq)), status.is_none());
                Ok(listed.into_iter().map(|(_, op)| op).collect())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn queue(&self) -> Result<Vec<QueuedOperation>, RepositoryError> {
        let store = self.store.clone();
        self.store
            .read(move |conn| {
                // Decoded row by row as SQLite steps, so the rows' text is never all held at once.
                let mut queue = Vec::new();
                let mut keys = Vec::new();
                let rows = dsl::pending_operations
                    .order(dsl::seq)
                    .select(QueuedRow::as_select())
                    .load_iter::<QueuedRow, DefaultLoadingMode>(conn)?;
                for row in rows {
                    let row = row?;
                    let seq = row.seq;
                    let op = row.decode()?;
                    keys.push((op.id, seq));
                    queue.push(op);
                }
                store.outbox_keys().remember(keys.into_iter(), true);
                Ok(queue)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(n = ids.len()))]
    async fn load(&self, ids: Vec<OperationId>) -> Result<Vec<SyncOperation>, RepositoryError> {
        let store = self.store.clone();
        self.store.read(move |conn| upstream::load_known(conn, store.outbox_keys(), &ids)).await
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn get(&self, id: OperationId) -> Result<Option<SyncOperation>, RepositoryError> {
        self.store
            .read(move |conn| {
                dsl::pending_operations
                    .filter(dsl::id.eq(id.to_string()))
                    .select(OperationRow::as_select())
                    .get_result(conn)
                    .optional()?
                    .map(OperationRow::decode)
                    .transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn counts(&self) -> Result<OutboxCounts, RepositoryError> {
        self.store
            .read(|conn| {
                // One pass over the outbox, which has no index but its queue order: per status,
                // how many, the oldest, and the newest with an error.
                let by_status: Vec<(String, i64, Option<i64>, Option<i32>)> = dsl::pending_operations
                    .group_by(dsl::status)
                    .select((
                        dsl::status,
                        count_star(),
                        min(dsl::created_at),
                        sql::<Nullable<Integer>>("MAX(CASE WHEN last_error IS NOT NULL THEN seq END)"),
                    ))
                    .load(conn)?;
                let mut counts = OutboxCounts::default();
                let (mut pending_error, mut failed_error) = (None, None);
                for (status, n, oldest, with_error) in by_status {
                    let n = u64::try_from(n).unwrap_or(0);
                    let status = parse::<OperationStatus>(TABLE, &status)?;
                    if let Some(at) = oldest.filter(|_| status != OperationStatus::Failed).map(Timestamp) {
                        counts.oldest_pending_at = Some(counts.oldest_pending_at.map_or(at, |o| o.min(at)));
                    }
                    match status {
                        OperationStatus::Pending => (counts.pending, pending_error) = (n, with_error),
                        OperationStatus::InFlight => counts.in_flight = n,
                        OperationStatus::Failed => (counts.failed, failed_error) = (n, with_error),
                    }
                }
                // The error of a retrying operation is news; a parked one's is older news.
                if let Some(seq) = pending_error.or(failed_error) {
                    counts.last_error =
                        dsl::pending_operations.find(seq).select(dsl::last_error).get_result(conn)?;
                }
                Ok(counts)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(rewrite = plan.rewrite.len(), remove = plan.remove.len()))]
    async fn apply_coalescing(&self, plan: CoalescePlan) -> Result<bool, RepositoryError> {
        self.store.read(move |conn| upstream::apply_coalescing(conn, &plan)).await
    }

    #[tracing::instrument(skip_all, fields(n = ids.len()))]
    async fn mark_sent(&self, ids: Vec<OperationId>) -> Result<(), RepositoryError> {
        let store = self.store.clone();
        self.store.read(move |conn| upstream::mark_sent(conn, store.outbox_keys(), &ids)).await
    }

    #[tracing::instrument(skip_all, fields(n = settlements.len()))]
    async fn settle(&self, settlements: Vec<(OperationId, Settlement)>) -> Result<(), RepositoryError> {
        let store = self.store.clone();
        self.store
            .read(move |conn| {
                store.publishing(conn, |conn, report| {
                    upstream::settle(conn, store.outbox_keys(), &settlements, report)
                })
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn restamp(&self) -> Result<u64, RepositoryError> {
        // Not a local write (`write` would wake the processor that calls this).
        let store = self.store.clone();
        self.store.read(move |conn| store.with_clock(|clock| upstream::restamp(conn, clock))).await
    }

    #[tracing::instrument(skip_all)]
    async fn release_in_flight(&self) -> Result<u64, RepositoryError> {
        self.store.read(upstream::release_in_flight).await
    }

    #[tracing::instrument(skip_all)]
    async fn retry_failed(&self, ids: Option<Vec<OperationId>>) -> Result<u64, RepositoryError> {
        let retried = self.store.read(move |conn| upstream::retry_failed(conn, ids.as_deref())).await?;
        self.store.announce_write();
        Ok(retried)
    }

    #[tracing::instrument(skip_all, fields(n = ids.len()))]
    async fn discard_failed(&self, ids: Vec<OperationId>) -> Result<Vec<OperationId>, RepositoryError> {
        let store = self.store.clone();
        let discarded = self
            .store
            .read(move |conn| {
                store.publishing(conn, |conn, report| upstream::discard_failed(conn, &ids, report))
            })
            .await?;
        // What waited behind the discarded operations may go now.
        self.store.announce_write();
        Ok(discarded)
    }
}
