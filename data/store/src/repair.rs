//! A damaged local database: checking it, and rebuilding it around what cannot be had again.
//!
//! The local database is a cache of the server plus what only this device holds: the changes
//! not yet sent (the outbox), its replica identity and clock floor, the session, the audio
//! files waiting for upload and conflicts kept for the user. [`rebuild`] replaces a damaged
//! file with a new one holding those, read row by row around the damage, and keeps the damaged
//! one beside it; the cache comes back from the server with the next pull (every scope starts
//! from the beginning).

use super::{
    connection::{establish, migrate, migrate_app},
    outbox::OperationRow,
    records::{find, insert, save},
    rows::Record,
    schema::pending_operations,
};
use diesel::{prelude::*, sql_query, sql_types::Text};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::{
    entities::{AnyEntity, Registry},
    OperationKind, SyncMeta, SyncOperation,
};

/// The tables holding what only this device has, copied row by row (by `rowid`).
const KEPT_BY_ROW: [&str; 4] = ["session", "pending_operations", "blobs", "sync_conflicts"];

/// The settings worth keeping: the replica's identity, the clock floors, the server clock's
/// offset. (Not the scope cursors: the cache is pulled again from the start.)
const KEPT_SETTINGS: [&str; 4] = ["replica_id", "hlc_high_water", "hlc_received", "server_clock_offset_ms"];

/// How long a statement of the check or the rebuild waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the check found, as SQLite's `PRAGMA integrity_check` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The problems, at most ten; empty when the database is sound.
    pub problems: Vec<String>,
}

impl Check {
    /// Whether the database is sound.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`rebuild`] kept and lost.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Where the damaged file now is.
    pub damaged_copy: PathBuf,
    /// Outbox operations kept (not yet acknowledged by the server, or parked as failed).
    pub operations_kept: u64,
    /// Rows made again from the kept operations: those the server has never acknowledged.
    pub rows_replayed: u64,
    /// Rows of the kept tables that could not be read, by table. Each outbox row among them is
    /// a change that will not reach the server.
    pub unreadable: Vec<(String, u64)>,
}

/// Checks the database at `path` without opening it as a store (its schema may be what is
/// damaged). A file that cannot be read at all is reported as a problem, not an error.
pub fn check(path: &Path) -> StoreResult<Check> {
    let mut conn = establish(path, BUSY_TIMEOUT)?;
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        integrity_check: String,
    }
    match sql_query("PRAGMA integrity_check(10)").load::<Line>(&mut conn) {
        Ok(lines) => {
            // One row may hold several lines, under a heading naming the schema.
            let problems: Vec<String> = lines
                .iter()
                .flat_map(|l| l.integrity_check.lines())
                .filter(|line| *line != "ok" && !line.starts_with("***"))
                .map(str::to_owned)
                .collect();
            Ok(Check { problems })
        }
        Err(error) => Ok(Check { problems: vec![error.to_string()] }),
    }
}

/// Rebuilds the database at `path`: a new file, migrated, holding every row that can still be
/// read from the damaged one of what only this device holds (the outbox, the session, the audio
/// cache's records, kept conflicts; the replica id, clock floor and server clock offset), with
/// the rows that exist only in the outbox made again from it. The damaged file is then moved
/// aside (with its write-ahead log) and replaced. The new file is written beside the old and
/// renamed into place last, so a rebuild cut short leaves the damaged file where it was, to
/// rebuild again. Open it as a store afterwards and pull: the rest comes from the server.
pub fn rebuild(path: &Path, now_ms: i64) -> StoreResult<Rebuilt> {
    let sibling = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    let fresh = sibling(".rebuilding");
    for stale in [".rebuilding", ".rebuilding-wal", ".rebuilding-shm"] {
        remove_if_present(&sibling(stale))?;
    }
    let mut rebuilt = Rebuilt { damaged_copy: sibling(&format!(".damaged-{now_ms}")), ..Rebuilt::default() };
    {
        let mut conn = establish(&fresh, BUSY_TIMEOUT)?;
        migrate(&mut conn, &fresh)?;
        migrate_app(&mut conn, Registry::global().schema())?;
        let source = path.to_str().ok_or_else(|| StoreError::Open {
            path: path.to_owned(),
            message: "the path is not valid UTF-8".into(),
        })?;
        sql_query("ATTACH DATABASE ? AS damaged").bind::<Text, _>(source).execute(&mut conn)?;
        // Statement by statement, outside a transaction: a statement that meets the damage
        // fails alone, and the rows copied before it stay.
        for key in KEPT_SETTINGS {
            let copy = sql_query(
                "INSERT INTO main.local_settings (key, value) \
                 SELECT key, value FROM damaged.local_settings WHERE key = ?",
            )
            .bind::<Text, _>(key)
            .execute(&mut conn);
            if copy.is_err() {
                rebuilt.unreadable.push((format!("local_settings.{key}"), 1));
            }
        }
        for table in KEPT_BY_ROW {
            let (copied, unreadable) = copy_rows(&mut conn, table)?;
            if table == "pending_operations" {
                rebuilt.operations_kept = copied;
            }
            if unreadable > 0 {
                rebuilt.unreadable.push((table.to_owned(), unreadable));
            }
        }
        sql_query("DETACH DATABASE damaged").execute(&mut conn)?;
        // Operations an older build queued name fields as it did: under this build's names
        // first, or they would not replay.
        super::renamed::move_renamed_fields(&mut conn)?;
        rebuilt.rows_replayed = replay(&mut conn)?;
        // Everything into the main file, so the rename below moves all of it.
        sql_query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let from = sibling(suffix);
        if from.exists() {
            rename(&from, &PathBuf::from(format!("{}{suffix}", rebuilt.damaged_copy.display())))?;
        }
    }
    rename(&fresh, path)?;
    for leftover in [".rebuilding-wal", ".rebuilding-shm"] {
        remove_if_present(&sibling(leftover))?;
    }
    Ok(rebuilt)
}

fn rename(from: &Path, to: &Path) -> StoreResult<()> {
    std::fs::rename(from, to).map_err(|e| StoreError::File {
        action: "moving",
        path: from.to_owned(),
        message: e.to_string(),
    })
}

fn remove_if_present(path: &Path) -> StoreResult<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::File { action: "removing", path: path.to_owned(), message: e.to_string() })
        }
        _ => Ok(()),
    }
}

/// Makes again the rows that exist only in the kept outbox: each queued create writes its row
/// as the local write did (dirty, its create pending), and the queued updates and deletes of
/// those rows follow in queue order. So a device that cannot reach the server still shows what
/// it has not sent. Rows the server holds come back with the next pull, which keeps the
/// queued changes of their fields. An operation whose row cannot be made is left to the server
/// (logged); it is still queued.
fn replay(conn: &mut SqliteConnection) -> StoreResult<u64> {
    let rows: Vec<OperationRow> = pending_operations::table
        .order(pending_operations::seq)
        .select(OperationRow::as_select())
        .load(conn)?;
    let mut made = 0;
    for row in rows {
        let op = row.decode()?;
        if let Err(error) = conn.immediate_transaction(|conn| replay_one(conn, &op, &mut made)) {
            tracing::warn!(%error, operation = %op.id, entity = %op.entity, "a queued change could not be shown again");
        }
    }
    Ok(made)
}

fn replay_one(conn: &mut SqliteConnection, op: &SyncOperation, made: &mut u64) -> StoreResult<()> {
    let values = |op: &SyncOperation| -> BTreeMap<String, Value> {
        op.changed_fields.iter().map(|(field, change)| (field.clone(), change.value.clone())).collect()
    };
    let readings = op.changed_fields.iter().map(|(field, change)| (field.clone(), change.hlc));
    match op.kind {
        OperationKind::Create => {
            let entity = AnyEntity::from_fields(op.entity.entity_type, op.entity.id, &values(op))?;
            let mut meta = SyncMeta::created_locally(op.changed_fields.keys(), op.hlc, op.id);
            meta.field_hlc = readings.collect();
            insert(conn, &Record { entity, meta }, op)?;
            *made += 1;
        }
        OperationKind::Update => {
            if let Some(mut record) = find(conn, op.entity.entity_type, op.entity.id)? {
                let mut fields = record.entity.fields();
                fields.extend(values(op));
                record.entity = AnyEntity::from_fields(op.entity.entity_type, op.entity.id, &fields)?;
                record.meta.field_hlc.extend(readings);
                record.meta.queued += 1;
                save(conn, &record)?;
            }
        }
        OperationKind::Delete => {
            if let Some(mut record) = find(conn, op.entity.entity_type, op.entity.id)? {
                record.meta.deleted = true;
                record.meta.queued += 1;
                save(conn, &record)?;
            }
        }
        OperationKind::Upload => {}
    }
    Ok(())
}

/// How many rows one statement copies while none of them is damaged.
const CHUNK: i64 = 500;

/// Copies `table` from the attached damaged file, in chunks of `rowid`s and, in a chunk that
/// fails, row by row. Returns the rows copied and the `rowid`s that could not be read.
fn copy_rows(conn: &mut SqliteConnection, table: &str) -> StoreResult<(u64, u64)> {
    #[derive(QueryableByName)]
    struct Highest {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        highest: Option<i64>,
    }
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let columns: Vec<String> = sql_query(format!("SELECT name FROM pragma_table_info('{table}', 'main')"))
        .load::<Column>(conn)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let columns = columns.join(", ");
    // The highest rowid, from the table or else from its AUTOINCREMENT counter.
    let highest = sql_query(format!("SELECT max(rowid) AS highest FROM damaged.{table}"))
        .get_result::<Highest>(conn)
        .or_else(|_| {
            sql_query("SELECT max(seq) AS highest FROM damaged.sqlite_sequence WHERE name = ?")
                .bind::<Text, _>(table)
                .get_result::<Highest>(conn)
        });
    let Ok(Highest { highest: Some(highest) }) = highest else {
        // Empty, or not even its last row can be found: nothing to copy that can be reached.
        return Ok((0, u64::from(highest.is_err())));
    };
    let copy = format!(
        "INSERT INTO main.{table} ({columns}) SELECT {columns} FROM damaged.{table} WHERE rowid BETWEEN ? AND ?"
    );
    let (mut copied, mut unreadable) = (0u64, 0u64);
    let mut from = 0;
    while from <= highest {
        let to = (from + CHUNK - 1).min(highest);
        match sql_query(&copy)
            .bind::<diesel::sql_types::BigInt, _>(from)
            .bind::<diesel::sql_types::BigInt, _>(to)
            .execute(conn)
        {
            Ok(n) => copied += n as u64,
            Err(_) => {
                for row in from..=to {
                    match sql_query(&copy)
                        .bind::<diesel::sql_types::BigInt, _>(row)
                        .bind::<diesel::sql_types::BigInt, _>(row)
                        .execute(conn)
                    {
                        Ok(n) => copied += n as u64,
                        Err(_) => unreadable += 1,
                    }
                }
            }
        }
        from = to + 1;
    }
    Ok((copied, unreadable))
}
