//! What happens when a row pulled from the server meets the local row, which may hold edits the
//! server has not acknowledged yet: the conflict policies of downstream sync.
//!
//! A field without an unacknowledged local edit always follows the merge rule
//! ([`write_wins`]): the later clock reading wins, so pulling a row twice, or out of order, gives
//! the same result. A field *with* one is where the policies differ:
//!
//! | policy              | the field becomes          | reported as a conflict |
//! |---------------------|----------------------------|------------------------|
//! | `LastWriterWins`    | the later clock reading's  | if the local edit lost |
//! | `ServerWins`        | the server's               | yes                    |
//! | `ClientWins`        | the local edit             | yes                    |
//! | `Manual`            | the local edit, for now    | yes, with both sides   |
//!
//! (A field whose two sides hold the same value is no conflict under any policy.)
//!
//! Deletes win over concurrent updates under every policy, as they do on the server: a local
//! row deleted while its delete is unacknowledged stays deleted, and a row the server deleted is
//! deleted here, its unacknowledged edits reported. No policy can undo a delete; recreating the
//! entity is a new create.
//!
//! `LastWriterWins` is the default and the server's own rule, so a client and the server reach
//! the same values without coordination.

use super::{
    field_merge::{write_wins, FieldState},
    Hlc,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How an entity type resolves a pulled change against unacknowledged local edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Field-level last-writer-wins by hybrid logical clock, ties by replica: the server's rule.
    #[default]
    LastWriterWins,
    /// The server's value replaces the local edit.
    ServerWins,
    /// The local edit stays (and is pushed; the server decides by its own rule).
    ClientWins,
    /// The local edit stays until a person chooses; the conflict is stored with both sides.
    Manual,
}

/// The local side of a resolution.
#[derive(Debug, Clone, Copy)]
pub struct LocalRow<'a> {
    /// The row as stored locally.
    pub state: &'a FieldState,
    /// Fields with an edit the server has not acknowledged.
    pub unacknowledged: &'a BTreeSet<String>,
    /// Whether the row's delete is still unacknowledged.
    pub delete_unacknowledged: bool,
}

/// One field both sides changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldConflict {
    /// The field.
    pub field: String,
    /// The local (unacknowledged) value.
    pub local: Value,
    /// The server's value.
    pub remote: Value,
    /// Whether the row took the server's value.
    pub took_remote: bool,
}

/// What applying a pulled row does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The row afterwards.
    pub state: FieldState,
    /// Fields both sides changed to different values, and what became of them.
    pub conflicts: Vec<FieldConflict>,
}

/// Applies the pulled `remote` row to `local` (`None`: the row is not here) under `policy`.
pub fn resolve(local: Option<LocalRow<'_>>, remote: &FieldState, policy: ConflictPolicy) -> Resolution {
    let Some(local) = local else {
        return Resolution { state: remote.clone(), conflicts: vec![] };
    };
    let mut state = local.state.clone();
    let mut conflicts = Vec::new();
    for (field, value) in &remote.fields {
        let remote_hlc = remote.field_hlc.get(field).copied();
        let local_hlc = local.state.field_hlc.get(field).copied();
        let local_value = local.state.fields.get(field);
        let later = match (local_hlc, remote_hlc) {
            (current, Some(incoming)) => write_wins(current, incoming),
            (None, None) => true,
            (Some(_), None) => false,
        };
        let take_remote = if !local.unacknowledged.contains(field) || local_value == Some(value) {
            later
        } else {
            let take = match policy {
                ConflictPolicy::LastWriterWins => later,
                ConflictPolicy::ServerWins => true,
                ConflictPolicy::ClientWins | ConflictPolicy::Manual => false,
            };
            conflicts.push(FieldConflict {
                field: field.clone(),
                local: local_value.cloned().unwrap_or(Value::Null),
                remote: value.clone(),
                took_remote: take,
            });
            take
        };
        if take_remote {
            state.fields.insert(field.clone(), value.clone());
            set_reading(&mut state.field_hlc, field, remote_hlc);
        }
    }
    // Deletes win, whichever side made them.
    state.deleted = remote.deleted || local.delete_unacknowledged || local.state.deleted;
    if remote.deleted && !local.delete_unacknowledged {
        for field in local.unacknowledged {
            if !conflicts.iter().any(|c| &c.field == field) {
                let value = local.state.fields.get(field).cloned().unwrap_or(Value::Null);
                conflicts.push(FieldConflict {
                    field: field.clone(),
                    local: value,
                    remote: Value::Null,
                    took_remote: true,
                });
            }
        }
    }
    Resolution { state, conflicts }
}

fn set_reading(readings: &mut BTreeMap<String, Hlc>, field: &str, reading: Option<Hlc>) {
    match reading {
        Some(hlc) => {
            readings.insert(field.to_owned(), hlc);
        }
        None => {
            readings.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use serde_json::json;
    use uuid::Uuid;

    fn hlc(wall_ms: u64, node: u128) -> Hlc {
        Hlc { wall_ms, counter: 0, node: NodeId::from_uuid(Uuid::from_u128(node)) }
    }

    /// A one-field row: `name` = `value` written at `at`.
    fn row(value: &str, at: Hlc, deleted: bool) -> FieldState {
        FieldState {
            fields: BTreeMap::from([("name".to_owned(), json!(value))]),
            field_hlc: BTreeMap::from([("name".to_owned(), at)]),
            deleted,
        }
    }

    /// One row per case: the local row (value, reading, edit unacknowledged?, delete
    /// unacknowledged?), the pulled row (value, reading, deleted?), the policy, and the outcome
    /// (value, deleted, conflict reported and whether the remote side was taken).
    #[test]
    fn pulled_rows_meet_local_edits() {
        use ConflictPolicy::*;
        let (early, late, tie_low, tie_high) = (hlc(10, 1), hlc(20, 1), hlc(15, 1), hlc(15, 2));
        type Side = (&'static str, Hlc, bool, bool);
        type Remote = (&'static str, Hlc, bool);
        type Expect = (&'static str, bool, Option<bool>);
        let cases: Vec<(&str, Side, Remote, ConflictPolicy, Expect)> = vec![
            (
                "no local edit: the later write wins",
                ("mine", early, false, false),
                ("theirs", late, false),
                LastWriterWins,
                ("theirs", false, None),
            ),
            (
                "no local edit, older pull: kept",
                ("mine", late, false, false),
                ("theirs", early, false),
                LastWriterWins,
                ("mine", false, None),
            ),
            (
                "no local edit: every policy follows the clock",
                ("mine", early, false, false),
                ("theirs", late, false),
                ClientWins,
                ("theirs", false, None),
            ),
            (
                "edit vs later remote, LWW: remote wins, reported",
                ("mine", early, true, false),
                ("theirs", late, false),
                LastWriterWins,
                ("theirs", false, Some(true)),
            ),
            (
                "edit vs earlier remote, LWW: edit stays, reported",
                ("mine", late, true, false),
                ("theirs", early, false),
                LastWriterWins,
                ("mine", false, Some(false)),
            ),
            (
                "tie on wall time: the replica id decides",
                ("mine", tie_low, true, false),
                ("theirs", tie_high, false),
                LastWriterWins,
                ("theirs", false, Some(true)),
            ),
            (
                "tie the other way",
                ("mine", tie_high, true, false),
                ("theirs", tie_low, false),
                LastWriterWins,
                ("mine", false, Some(false)),
            ),
            (
                "server wins even if older",
                ("mine", late, true, false),
                ("theirs", early, false),
                ServerWins,
                ("theirs", false, Some(true)),
            ),
            (
                "client wins even if older",
                ("mine", early, true, false),
                ("theirs", late, false),
                ClientWins,
                ("mine", false, Some(false)),
            ),
            (
                "manual keeps the edit for the user",
                ("mine", early, true, false),
                ("theirs", late, false),
                Manual,
                ("mine", false, Some(false)),
            ),
            (
                "same value on both sides: no conflict",
                ("same", early, true, false),
                ("same", late, false),
                Manual,
                ("same", false, None),
            ),
            (
                "remote delete wins over a local edit",
                ("mine", late, true, false),
                ("mine", early, true),
                ClientWins,
                ("mine", true, None),
            ),
            (
                "local delete stays deleted",
                ("mine", early, false, true),
                ("theirs", late, false),
                LastWriterWins,
                ("theirs", true, None),
            ),
        ];
        for (
            case,
            (value, at, edited, delete_pending),
            (remote_value, remote_at, remote_deleted),
            policy,
            expected,
        ) in cases
        {
            let local_state = row(value, at, delete_pending);
            let unacknowledged: BTreeSet<String> =
                if edited { BTreeSet::from(["name".to_owned()]) } else { BTreeSet::new() };
            let local = LocalRow {
                state: &local_state,
                unacknowledged: &unacknowledged,
                delete_unacknowledged: delete_pending,
            };
            let resolution = resolve(Some(local), &row(remote_value, remote_at, remote_deleted), policy);
            let (want_value, want_deleted, want_conflict) = expected;
            assert_eq!(resolution.state.fields["name"], json!(want_value), "{case}");
            assert_eq!(resolution.state.deleted, want_deleted, "{case}");
            let conflict = resolution.conflicts.iter().find(|c| c.field == "name").map(|c| c.took_remote);
            // A remote delete reports the edit it buried as a conflict taken by the remote side.
            let want_conflict = if remote_deleted && edited { Some(true) } else { want_conflict };
            assert_eq!(conflict, want_conflict, "{case}");
        }
    }

    #[test]
    fn a_row_not_here_is_taken_as_pulled() {
        let pulled = row("theirs", hlc(5, 1), false);
        let resolution = resolve(None, &pulled, ConflictPolicy::Manual);
        assert_eq!((resolution.state, resolution.conflicts), (pulled, vec![]));
    }

    #[test]
    fn the_taken_value_brings_its_reading_so_pulling_again_changes_nothing() {
        let local = row("mine", hlc(10, 1), false);
        let pulled = row("theirs", hlc(20, 2), false);
        let none = BTreeSet::new();
        let side = LocalRow { state: &local, unacknowledged: &none, delete_unacknowledged: false };
        let once = resolve(Some(side), &pulled, ConflictPolicy::LastWriterWins).state;
        let side = LocalRow { state: &once, unacknowledged: &none, delete_unacknowledged: false };
        let twice = resolve(Some(side), &pulled, ConflictPolicy::LastWriterWins).state;
        assert_eq!(once, twice);
        assert_eq!(once.field_hlc["name"], hlc(20, 2));
    }
}
