//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! A reading is `(wall_ms, counter, node)`. Readings from one clock strictly increase even when
//! the physical clock stalls or steps backwards; observing a remote reading moves the clock past
//! it, so causally later writes always carry larger timestamps. Ties between replicas are broken
//! by node id, which makes the order total and field-level last-writer-wins deterministic.
//!
//! The clock is pure: callers pass the physical time in, so tests can drive skew precisely.

use crate::{error::ClockError, ids::NodeId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr, sync::Mutex};
use uuid::Uuid;

/// One hybrid logical clock reading. Ordered by wall time, then counter, then node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Physical component, Unix milliseconds.
    pub wall_ms: u64,
    /// Logical component, for events within one millisecond or while the wall clock lags.
    pub counter: u32,
    /// The replica that produced the reading.
    pub node: NodeId,
}

impl Hlc {
    /// The smallest possible reading.
    pub const ZERO: Hlc = Hlc { wall_ms: 0, counter: 0, node: NodeId::from_uuid(Uuid::nil()) };
}

/// Fixed-width text form: 15 digits of wall milliseconds, 10 digits of counter, the node's
/// UUID as 32 hex digits (`001795795788630-0000000000-01a21dc5234a74d2b426639a7febbbb9`). Its
/// string order is the clock order, which keeps stored and logged readings comparable by eye
/// and by `ORDER BY`.
impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text(&mut [0; TEXT_LEN]) {
            Some(text) => f.write_str(text),
            None => write!(f, "{:015}-{:010}-{}", self.wall_ms, self.counter, self.node.as_uuid().simple()),
        }
    }
}

/// Length of the text form while the wall time has at most 15 digits (until the year 33658).
const TEXT_LEN: usize = 15 + 1 + 10 + 1 + 32;

impl Hlc {
    /// The text form written into `out` without the formatting machinery (readings are
    /// written by the million during a sync); `None` if the wall time needs more digits.
    fn text<'a>(&self, out: &'a mut [u8; TEXT_LEN]) -> Option<&'a str> {
        fn digits(mut n: u64, out: &mut [u8]) {
            for slot in out.iter_mut().rev() {
                *slot = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        if self.wall_ms >= 10u64.pow(15) {
            return None;
        }
        digits(self.wall_ms, &mut out[..15]);
        out[15] = b'-';
        digits(u64::from(self.counter), &mut out[16..26]);
        out[26] = b'-';
        self.node.as_uuid().simple().encode_lower(&mut out[27..]);
        std::str::from_utf8(out).ok()
    }
}

/// The error for text that is not an [`Hlc`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hybrid logical clock reading '{0}'")]
pub struct ParseHlcError(pub String);

impl FromStr for Hlc {
    type Err = ParseHlcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseHlcError(s.to_owned());
        let mut parts = s.splitn(3, '-');
        let wall_ms = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let counter = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let node = parts.next().and_then(|p| Uuid::parse_str(p).ok()).ok_or_else(err)?;
        Ok(Hlc { wall_ms, counter, node: NodeId::from_uuid(node) })
    }
}

impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text(&mut [0; TEXT_LEN]) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Parsed from the input where it lies, without a copy: a pulled page holds thousands.
        struct Reading;
        impl serde::de::Visitor<'_> for Reading {
            type Value = Hlc;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hybrid logical clock reading")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Hlc, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Reading)
    }
}

/// A replica's clock. Thread-safe; every reading is larger than every earlier reading and every
/// observed remote reading.
#[derive(Debug)]
pub struct HybridLogicalClock {
    node: NodeId,
    max_drift_ms: u64,
    last: Mutex<(u64, u32)>,
}

impl HybridLogicalClock {
    /// Default tolerance for remote clocks running ahead of ours: one minute.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

    /// A clock for replica `node`.
    pub fn new(node: NodeId) -> Self {
        Self::with_max_drift(node, Self::DEFAULT_MAX_DRIFT_MS)
    }

    /// A clock for replica `node` that refuses remote readings more than `max_drift_ms` ahead.
    pub fn with_max_drift(node: NodeId, max_drift_ms: u64) -> Self {
        Self { node, max_drift_ms, last: Mutex::new((0, 0)) }
    }

    /// The replica id stamped on readings.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// A new reading for a local event at physical time `physical_ms`.
    pub fn now(&self, physical_ms: u64) -> Hlc {
        let mut last = self.lock();
        let (wall, counter) = if physical_ms > last.0 { (physical_ms, 0) } else { bump(last.0, last.1) };
        *last = (wall, counter);
        Hlc { wall_ms: wall, counter, node: self.node }
    }

    /// Moves the clock past `remote` (received at physical time `physical_ms`) and returns a
    /// reading larger than both. A remote wall time too far in the future is refused and leaves
    /// the clock unchanged, so one broken peer cannot drag every replica into the future.
    pub fn observe(&self, remote: Hlc, physical_ms: u64) -> Result<Hlc, ClockError> {
        let ahead_ms = remote.wall_ms.saturating_sub(physical_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::Drift { ahead_ms, max_drift_ms: self.max_drift_ms });
        }
        let mut last = self.lock();
        let wall = physical_ms.max(last.0).max(remote.wall_ms);
        let (wall, counter) = match (wall == last.0, wall == remote.wall_ms) {
            (true, true) => bump(wall, last.1.max(remote.counter)),
            (true, false) => bump(wall, last.1),
            (false, true) => bump(wall, remote.counter),
            (false, false) => (wall, 0),
        };
        *last = (wall, counter);
        Ok(Hlc { wall_ms: wall, counter, node: self.node })
    }

    /// Moves the clock forward to at least `floor` without drift checks. Used when a replica
    /// restarts, with the largest reading it had stored, so readings stay monotonic even if the
    /// physical clock stepped back while it was down.
    pub fn advance_to(&self, floor: Hlc) {
        let mut last = self.lock();
        if (floor.wall_ms, floor.counter) > *last {
            *last = (floor.wall_ms, floor.counter);
        }
    }

    /// Sets the clock back to `to`, the one exception to monotonic readings: for re-stamping
    /// queued writes whose readings a wrong physical clock put too far ahead. The caller gives
    /// every such reading a new, later-than-`to` one at once, so no reading it keeps is
    /// issued twice.
    pub fn rewind(&self, to: Hlc) {
        *self.lock() = (to.wall_ms, to.counter);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u32)> {
        // The guarded state is two integers written in one assignment; a panic elsewhere
        // cannot leave it half-updated, so a poisoned lock is still consistent.
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The next logical tick after `(wall, counter)`; on counter overflow the wall part advances.
fn bump(wall: u64, counter: u32) -> (u64, u32) {
    match counter.checked_add(1) {
        Some(next) => (wall, next),
        None => (wall + 1, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_is_fixed_width_and_reads_back() {
        let node = NodeId::from_uuid(Uuid::from_u128(0x01a2_1dc5_234a_74d2_b426_639a_7feb_bbb9));
        let cases = [
            (
                Hlc { wall_ms: 1_795_795_788_630, counter: 0, node },
                "001795795788630-0000000000-01a21dc5234a74d2b426639a7febbbb9",
            ),
            (
                Hlc { wall_ms: 999_999_999_999_999, counter: u32::MAX, node },
                "999999999999999-4294967295-01a21dc5234a74d2b426639a7febbbb9",
            ),
            // Past 15 digits the wall time widens the text (the formatting fallback).
            (
                Hlc { wall_ms: 10u64.pow(15), counter: 7, node },
                "1000000000000000-0000000007-01a21dc5234a74d2b426639a7febbbb9",
            ),
            (Hlc::ZERO, "000000000000000-0000000000-00000000000000000000000000000000"),
        ];
        for (hlc, text) in cases {
            assert_eq!(hlc.to_string(), text);
            assert_eq!(serde_json::to_string(&hlc).unwrap(), format!("\"{text}\""));
            assert_eq!(text.parse::<Hlc>(), Ok(hlc));
            assert_eq!(serde_json::from_str::<Hlc>(&format!("\"{text}\"")).unwrap(), hlc);
        }
    }

    fn clock() -> HybridLogicalClock {
        HybridLogicalClock::new(NodeId::new())
    }

    #[test]
    fn readings_increase_while_physical_time_advances_stalls_or_steps_back() {
        let c = clock();
        let physical = [1_000, 1_000, 1_001, 999, 500, 500, 1_002, 0, 1_002];
        let readings: Vec<Hlc> = physical.iter().map(|&p| c.now(p)).collect();
        for pair in readings.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        assert_eq!(readings[4].wall_ms, 1_001, "a clock stepping back does not pull HLC back");
        assert_eq!(readings[6], Hlc { wall_ms: 1_002, counter: 0, node: c.node() });
    }

    #[test]
    fn observing_a_remote_reading_moves_past_it() {
        let (a, b) = (clock(), clock());
        // b's physical clock runs 30 s ahead of a's.
        let from_b = b.now(31_000);
        let after = a.observe(from_b, 1_000).expect("within drift");
        assert!(after > from_b);
        assert!(a.now(1_001) > from_b, "later local events stay after the observed one");
        // a's clock observed b's past reading: nothing goes backwards.
        let old = b.now(31_000);
        let later = a.observe(Hlc { wall_ms: 10, ..old }, 1_002).expect("past readings are fine");
        assert!(later > after);
    }

    #[test]
    fn equal_remote_and_local_wall_times_take_the_larger_counter() {
        let (a, b) = (clock(), clock());
        for _ in 0..5 {
            b.now(7_000);
        }
        let remote = b.now(7_000);
        a.now(7_000);
        let merged = a.observe(remote, 7_000).expect("no drift");
        assert_eq!((merged.wall_ms, merged.counter), (7_000, remote.counter + 1));
    }

    #[test]
    fn remote_readings_too_far_ahead_are_refused_and_change_nothing() {
        let c = HybridLogicalClock::with_max_drift(NodeId::new(), 1_000);
        let before = c.now(5_000);
        let far = Hlc { wall_ms: 7_000, counter: 0, node: NodeId::new() };
        assert_eq!(c.observe(far, 5_000), Err(ClockError::Drift { ahead_ms: 2_000, max_drift_ms: 1_000 }));
        assert_eq!(c.now(5_000), Hlc { counter: before.counter + 1, ..before });
    }

    #[test]
    fn advancing_to_a_stored_floor_keeps_readings_monotonic_across_restarts() {
        let before_restart = clock().now(9_000);
        let restarted = clock();
        restarted.advance_to(before_restart);
        // The physical clock went back 8 s while the replica was down.
        let next = restarted.now(1_000);
        assert!((next.wall_ms, next.counter) > (before_restart.wall_ms, before_restart.counter));
        restarted.advance_to(Hlc::ZERO);
        assert!(restarted.now(1_000) > next, "an older floor changes nothing");
    }

    #[test]
    fn counter_overflow_advances_the_wall_part() {
        let c = clock();
        *c.lock() = (9, u32::MAX);
        assert_eq!(c.now(3), Hlc { wall_ms: 10, counter: 0, node: c.node() });
    }

    #[test]
    fn ties_on_time_are_broken_by_node_and_text_order_is_clock_order() {
        let (x, y) = (NodeId::new(), NodeId::new());
        let a = Hlc { wall_ms: 5, counter: 1, node: x };
        let b = Hlc { wall_ms: 5, counter: 1, node: y };
        assert_eq!(a < b, x < y);
        let samples =
            [a, b, Hlc { wall_ms: 40, counter: 0, node: x }, Hlc { wall_ms: 5, counter: 12, node: x }];
        for p in samples {
            for q in samples {
                assert_eq!(p.cmp(&q), p.to_string().cmp(&q.to_string()), "{p} vs {q}");
            }
            assert_eq!(p.to_string().parse::<Hlc>(), Ok(p));
        }
        assert!("12-x-y".parse::<Hlc>().is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A local event at a physical time, or a message from another replica whose clock
        /// reads `skew` ms off ours.
        #[derive(Debug, Clone)]
        enum Event {
            Local { physical_ms: u64 },
            Receive { physical_ms: u64, skew: i64, counter: u32 },
        }

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                (0u64..10_000).prop_map(|physical_ms| Event::Local { physical_ms }),
                (0u64..10_000, -120_000i64..120_000, 0u32..5).prop_map(|(physical_ms, skew, counter)| {
                    Event::Receive { physical_ms, skew, counter }
                }),
            ]
        }

        proptest! {
            /// Whatever the physical clock does (jump back, stall) and whatever remote readings
            /// arrive (skewed either way, some refused), every reading is larger than all before
            /// it, and larger than every accepted remote reading.
            #[test]
            fn readings_strictly_increase_under_any_skew(events in prop::collection::vec(event(), 1..200)) {
                let clock = HybridLogicalClock::with_max_drift(NodeId::new(), 60_000);
                let remote_node = NodeId::new();
                let mut last: Option<Hlc> = None;
                for e in events {
                    let reading = match e {
                        Event::Local { physical_ms } => Some(clock.now(physical_ms)),
                        Event::Receive { physical_ms, skew, counter } => {
                            let remote = Hlc {
                                wall_ms: physical_ms.saturating_add_signed(skew),
                                counter,
                                node: remote_node,
                            };
                            match clock.observe(remote, physical_ms) {
                                Ok(reading) => {
                                    prop_assert!(reading > remote);
                                    Some(reading)
                                }
                                Err(ClockError::Drift { .. }) => {
                                    prop_assert!(remote.wall_ms > physical_ms + 60_000);
                                    None
                                }
                            }
                        }
                    };
                    if let Some(reading) = reading {
                        if let Some(previous) = last {
                            prop_assert!(reading > previous, "{} after {}", reading, previous);
                        }
                        last = Some(reading);
                    }
                }
            }

            /// The text form sorts like the clock and parses back to the same reading.
            #[test]
            fn text_order_is_clock_order(
                a in (0u64..10_000_000_000_000, any::<u32>()),
                b in (0u64..10_000_000_000_000, any::<u32>()),
            ) {
                let node = NodeId::new();
                let (x, y) = (Hlc { wall_ms: a.0, counter: a.1, node }, Hlc { wall_ms: b.0, counter: b.1, node });
                prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
                prop_assert_eq!(x.to_string().parse::<Hlc>(), Ok(x));
            }
        }
    }
}
