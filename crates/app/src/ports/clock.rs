//! Time as a port, so tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};

use stampede_domain::time::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

/// A shared [`ManualClock`]: hand it to the app as a `Clock`, keep it to move time.
pub type ManualClockHandle = std::sync::Arc<ManualClock>;

impl ManualClock {
    /// A shared clock at `at`: the app holds it as its `Clock`, the test keeps
    /// it to move time.
    pub fn new(at: Timestamp) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self(AtomicI64::new(at.as_millis())))
    }

    pub fn advance_millis(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}
