use crate::time::Timestamp;
use shaku::Interface;

/// Physical wall-clock time. A port so tests can control time and skew.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Clock: Interface {
    /// The current time.
    fn now(&self) -> Timestamp;
}
