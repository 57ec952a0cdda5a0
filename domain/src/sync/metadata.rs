//! Sync metadata carried by every synced row.

use super::Hlc;
use crate::ids::OperationId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Sync metadata of one row.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncMeta {
    /// Server-assigned version of the last acknowledged state; 0 until the server has seen the
    /// row.
    pub version: i64,
    /// The clock reading of the last write of each field, for field-level merge.
    pub field_hlc: BTreeMap<String, Hlc>,
    /// Tombstone: the row was deleted; it stays until the delete is acknowledged and pulled by
    /// every replica.
    pub deleted: bool,
    /// How many outbox operations on this row wait for the server: the row holds local changes
    /// the server has not acknowledged while it is above 0 ([`SyncMeta::is_dirty`]). A count, not
    /// a flag, so that settling some of them needs no search of the outbox for the rest.
    pub queued: u32,
    /// The outbox operation that creates this row, until the server acknowledges it. Writes
    /// of children (a track in this project, ...) depend on it.
    pub pending_create: Option<OperationId>,
    /// The server version of the last state a pull merged into the row: a pulled row at or below
    /// it is skipped. Kept apart from `version`, which an acknowledgement raises too, although an
    /// acknowledged row lacks what other replicas wrote before the acknowledged write.
    pub pulled_version: i64,
}

impl SyncMeta {
    /// Metadata for a row created locally at `hlc` by outbox operation `create`: every field
    /// stamped, that one operation queued, unversioned.
    pub fn created_locally<'a>(
        fields: impl IntoIterator<Item = &'a String>,
        hlc: Hlc,
        create: OperationId,
    ) -> Self {
        Self {
            version: 0,
            field_hlc: fields.into_iter().map(|f| (f.clone(), hlc)).collect(),
            deleted: false,
            queued: 1,
            pending_create: Some(create),
            pulled_version: 0,
        }
    }

    /// Records a local write of `fields` at `hlc`, queued as one outbox operation.
    pub fn touch<'a>(&mut self, fields: impl IntoIterator<Item = &'a String>, hlc: Hlc) {
        for field in fields {
            self.field_hlc.insert(field.clone(), hlc);
        }
        self.queued += 1;
    }

    /// Whether the row holds local changes the server has not acknowledged.
    pub fn is_dirty(&self) -> bool {
        self.queued > 0
    }
}
