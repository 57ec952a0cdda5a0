//! Compact storage of per-field clock readings.
//!
//! Most fields of a row share one reading (everything written by its create), and every field
//! of an outbox operation shares the operation's. Storing each reading per field would make the
//! metadata several times larger than the data, and on SQLite every byte written is WAL traffic
//! on the local write path. So readings equal to a base are left out: a row stores its most
//! common reading under `"*"`; an operation's base is its own `hlc` column.

use super::rows::{from_json, to_json};
use std::collections::{BTreeMap, HashMap};
use trackflow_db::error::StoreResult;
use trackflow_domain::Hlc;

const BASE_KEY: &str = "*";

/// The reading most fields carry (ties: the latest).
fn most_common(readings: &BTreeMap<String, Hlc>) -> Option<Hlc> {
    let mut counts: HashMap<Hlc, usize> = HashMap::new();
    for hlc in readings.values() {
        *counts.entry(*hlc).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(hlc, n)| (*n, *hlc)).map(|(hlc, _)| hlc)
}

/// The readings that differ from `base`.
pub(crate) fn overrides(readings: &BTreeMap<String, Hlc>, base: Hlc) -> BTreeMap<&str, Hlc> {
    readings.iter().filter(|(_, hlc)| **hlc != base).map(|(f, hlc)| (f.as_str(), *hlc)).collect()
}

/// A row's readings: the most common one under `"*"`, the others by field.
pub(crate) fn encode_row(table: &'static str, readings: &BTreeMap<String, Hlc>) -> StoreResult<String> {
    let Some(base) = most_common(readings) else {
        return Ok("{}".to_owned());
    };
    let mut stored = overrides(readings, base);
    stored.insert(BASE_KEY, base);
    to_json(table, &stored)
}

/// Expands what [`encode_row`] stored back to a reading for each of `fields`.
pub(crate) fn decode_row(
    table: &'static str,
    text: &str,
    fields: &[&str],
) -> StoreResult<BTreeMap<String, Hlc>> {
    let mut stored: BTreeMap<String, Hlc> = from_json(table, text)?;
    if let Some(base) = stored.remove(BASE_KEY) {
        for field in fields {
            stored.entry((*field).to_owned()).or_insert(base);
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::NodeId;

    fn hlc(wall_ms: u64) -> Hlc {
        Hlc { wall_ms, counter: 0, node: NodeId::from_uuid(uuid::Uuid::nil()) }
    }

    fn map(entries: &[(&str, u64)]) -> BTreeMap<String, Hlc> {
        entries.iter().map(|(f, w)| ((*f).to_owned(), hlc(*w))).collect()
    }

    #[test]
    fn rows_round_trip_and_store_each_distinct_reading_once() {
        let table = [
            ("empty", map(&[])),
            ("one reading", map(&[("a", 1), ("b", 1), ("c", 1)])),
            ("one field edited later", map(&[("a", 1), ("b", 5), ("c", 1)])),
            ("all different", map(&[("a", 1), ("b", 2), ("c", 3)])),
        ];
        for (case, readings) in table {
            let text = encode_row("t", &readings).expect("encode");
            let distinct: std::collections::HashSet<_> = readings.values().collect();
            assert_eq!(text.matches("-0000000000-").count(), distinct.len(), "{case}: {text}");
            let names: Vec<&str> = readings.keys().map(String::as_str).collect();
            let decoded = decode_row("t", &text, &names).expect("decode");
            assert_eq!(decoded, readings, "{case}");
        }
    }

    #[test]
    fn overrides_leave_out_the_base() {
        let readings = map(&[("a", 1), ("b", 2)]);
        assert_eq!(overrides(&readings, hlc(1)).into_iter().collect::<Vec<_>>(), [("b", hlc(2))]);
    }
}
