//! Retry timing: exponential backoff with full jitter, and the attempt limit.
//!
//! Attempt `n` (1-based) failing transiently waits a uniformly random time in
//! `[0, min(cap, base · 2^(n-1))]` ("full jitter": clients that failed together do not retry
//! together), or the server's `Retry-After` if that is longer. After `max_attempts` failures the
//! operation is parked as failed. Failures that certainly never reached the server (it was
//! unreachable, or refused the credentials) are not counted: the processor pauses instead.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's upper bound.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
    /// Failures after which an operation is parked as failed (the original design's 3).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(300), max_attempts: 3 }
    }
}

/// What happens after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Send again after this long.
    After(Duration),
    /// Park the operation as failed.
    GiveUp,
}

impl Backoff {
    /// The upper bound of the wait after the `attempt`-th failure (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// What to do after the `attempt`-th transient failure. `unit` is a uniform random number
    /// in `[0, 1)` (the jitter), passed in so tests can pin it.
    pub fn after_failure(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Retry {
        if attempt >= self.max_attempts {
            return Retry::GiveUp;
        }
        let jittered = self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0));
        Retry::After(retry_after.map_or(jittered, |server| server.max(jittered)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), max_attempts: 10 };
        let ceilings: Vec<u128> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1), "no overflow");
    }

    /// One row per case: attempt, Retry-After, jitter, expected decision.
    #[test]
    fn schedule() {
        let b = Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(60), max_attempts: 3 };
        let s = Duration::from_secs;
        let cases = [
            ("first failure, no jitter", 1, None, 0.0, Retry::After(s(0))),
            (
                "first failure, full jitter",
                1,
                None,
                0.999_999,
                Retry::After(Duration::from_nanos(999_999_000)),
            ),
            ("second failure, half", 2, None, 0.5, Retry::After(s(1))),
            ("server asks for longer", 1, Some(s(30)), 0.5, Retry::After(s(30))),
            ("jitter longer than Retry-After", 2, Some(Duration::from_millis(10)), 0.5, Retry::After(s(1))),
            ("limit reached", 3, None, 0.5, Retry::GiveUp),
            ("limit reached, even if the server says when", 3, Some(s(1)), 0.5, Retry::GiveUp),
        ];
        for (case, attempt, retry_after, unit, expected) in cases {
            assert_eq!(b.after_failure(attempt, retry_after, unit), expected, "{case}");
        }
    }
}
