//! The time the token code reads (minting, expiry, refresh, revocation cut-offs): the system
//! clock, or one a test moves by hand so expiry is tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Unix seconds, from the system or from a [`ManualClock`].
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// `crate::model::now()`.
    #[default]
    System,
    /// A clock that moves only when told to.
    Manual(ManualClock),
}

impl Clock {
    /// The current time in Unix seconds.
    pub fn now(&self) -> i64 {
        match self {
            Self::System => crate::model::now(),
            Self::Manual(m) => m.now(),
        }
    }
}

/// A clock for tests: starts where it is told and moves only by [`ManualClock::advance`].
/// Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `start` (Unix seconds).
    pub fn new(start: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }

    /// The time it shows.
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves it forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Self {
        Self::Manual(m)
    }
}
