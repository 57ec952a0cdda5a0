use crate::time::Timestamp;
use shaku::Interface;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// Physical wall-clock time. A port so tests can control time and skew.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Clock: Interface {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The server's clock as this device estimates it: the device's clock corrected by the offset
/// that the server's answers reveal.
///
/// Every answer of the sync server carries its clock
/// ([`SERVER_TIME_HEADER`](crate::protocol::SERVER_TIME_HEADER)). An answer that took
/// `round_trip` to arrive was stamped somewhere in that interval, so the server's clock now is
/// its reading plus about half the round trip, give or take the other half. The estimate
/// keeps the most precise sample (the shortest round trip), and replaces it with a less precise
/// one only when the two disagree by more than their uncertainties: the device's clock was
/// set, not merely measured again.
///
/// Clock readings of local writes are taken from this clock, so a device whose clock is minutes
/// off still orders its writes where the server and the other devices put them.
pub struct ServerClock {
    device: Arc<dyn Clock>,
    estimate: Mutex<Estimate>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    /// Milliseconds to add to the device's clock; 0 until a sample arrives.
    offset_ms: i64,
    /// How far the true offset may lie from `offset_ms`; `None`: no sample yet.
    uncertainty_ms: Option<i64>,
    /// The offset last handed to [`ServerClock::unsaved`].
    saved_ms: Option<i64>,
}

/// How far the offset must move before it is worth saving again.
const SAVE_STEP_MS: i64 = 1_000;

impl ServerClock {
    /// The device's clock `device`, corrected by a previously saved offset if there is one.
    pub fn new(device: Arc<dyn Clock>, saved_offset_ms: Option<i64>) -> Self {
        let estimate = Estimate {
            offset_ms: saved_offset_ms.unwrap_or(0),
            // A saved offset is kept until any sample is taken: the device's clock may have
            // been set since.
            uncertainty_ms: saved_offset_ms.map(|_| i64::MAX),
            saved_ms: saved_offset_ms,
        };
        Self { device, estimate: Mutex::new(estimate) }
    }

    /// The device's own clock, uncorrected.
    pub fn device(&self) -> &Arc<dyn Clock> {
        &self.device
    }

    /// Takes in an answer stamped `server` by the server that arrived `round_trip` after its
    /// request left.
    pub fn observe(&self, server: Timestamp, round_trip: Duration) {
        let half = i64::try_from(round_trip.as_millis() / 2).unwrap_or(i64::MAX);
        let sample = server.as_millis().saturating_add(half).saturating_sub(self.device.now().as_millis());
        let mut estimate = self.lock();
        let adopt = match estimate.uncertainty_ms {
            None => true,
            Some(current) => {
                half <= current || (sample - estimate.offset_ms).abs() > current.saturating_add(half)
            }
        };
        if adopt {
            estimate.offset_ms = sample;
            estimate.uncertainty_ms = Some(half);
        }
    }

    /// The estimated offset of the server's clock from the device's, in milliseconds; `None`
    /// until an answer or a saved offset told it.
    pub fn offset_ms(&self) -> Option<i64> {
        let estimate = self.lock();
        estimate.uncertainty_ms.map(|_| estimate.offset_ms)
    }

    /// The offset, if it moved by a second or more since it was last returned here or loaded:
    /// what the caller should save now, so the next process starts from it.
    pub fn unsaved(&self) -> Option<i64> {
        let mut estimate = self.lock();
        estimate.uncertainty_ms?;
        let moved = estimate.saved_ms.is_none_or(|saved| (estimate.offset_ms - saved).abs() >= SAVE_STEP_MS);
        if !moved {
            return None;
        }
        estimate.saved_ms = Some(estimate.offset_ms);
        Some(estimate.offset_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Estimate> {
        self.estimate.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        let offset = self.lock().offset_ms;
        self.device.now().plus_millis(offset)
    }
}

impl std::fmt::Debug for ServerClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClock").field("estimate", &*self.lock()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A device clock set by hand.
    struct Manual(AtomicI64);

    impl Clock for Manual {
        fn now(&self) -> Timestamp {
            Timestamp(self.0.load(Ordering::SeqCst))
        }
    }

    fn device(at: i64) -> Arc<Manual> {
        Arc::new(Manual(AtomicI64::new(at)))
    }

    #[test]
    fn an_answer_corrects_the_device_clock_by_half_its_round_trip() {
        let device = device(1_000_000);
        let clock = ServerClock::new(device.clone(), None);
        assert_eq!(clock.offset_ms(), None);
        assert_eq!(clock.now(), Timestamp(1_000_000), "uncorrected until the server is heard");
        // The device runs 5 minutes fast: an answer stamped 699,900 that took 200 ms to come
        // back puts the server's clock at 700,000 now.
        clock.observe(Timestamp(700_000 - 100), Duration::from_millis(200));
        assert_eq!(clock.offset_ms(), Some(-300_000));
        assert_eq!(clock.now(), Timestamp(700_000));
    }

    #[test]
    fn a_less_precise_sample_replaces_the_estimate_only_when_it_disagrees() {
        let device = device(0);
        let clock = ServerClock::new(device.clone(), None);
        clock.observe(Timestamp(5_000), Duration::from_millis(20));
        assert_eq!(clock.offset_ms(), Some(5_010));
        // Slower, and within both uncertainties: measurement noise, kept out.
        clock.observe(Timestamp(4_900), Duration::from_millis(400));
        assert_eq!(clock.offset_ms(), Some(5_010));
        // The device's clock was set back a minute: the estimate follows.
        clock.observe(Timestamp(65_000), Duration::from_millis(400));
        assert_eq!(clock.offset_ms(), Some(65_200));
    }

    #[test]
    fn the_offset_is_handed_out_for_saving_when_it_moved_a_second() {
        let device = device(0);
        let clock = ServerClock::new(device.clone(), Some(2_000));
        assert_eq!(clock.offset_ms(), Some(2_000), "a saved offset is used before any answer");
        assert_eq!(clock.unsaved(), None);
        clock.observe(Timestamp(2_500), Duration::ZERO);
        assert_eq!(clock.unsaved(), None, "half a second is not worth a write");
        clock.observe(Timestamp(9_000), Duration::ZERO);
        assert_eq!(clock.unsaved(), Some(9_000));
        assert_eq!(clock.unsaved(), None, "handed out once");
    }
}
