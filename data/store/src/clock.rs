//! The system wall clock as a [`Clock`] component.

use shaku::Component;
use std::time::{SystemTime, UNIX_EPOCH};
use trackflow_domain::{ports::Clock, Timestamp};

/// Reads the operating system's wall clock.
#[derive(Debug, Default, Clone, Copy, Component)]
#[shaku(interface = Clock)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(millis)
    }
}
