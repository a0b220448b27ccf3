//! Capped exponential backoff with jitter, so a fleet of data planes does not reconnect
//! in lockstep after a control-plane restart.

use std::time::Duration;

use rand::Rng;

/// Doubling delays from `initial` up to `max`; each delay is drawn uniformly from
/// `[d/2, d]` ("equal jitter").
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// Starts at `initial`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay; doubles the base for the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        jitter(base)
    }

    /// A delay at the cap, and stay there.
    pub(crate) fn at_cap(&mut self) -> Duration {
        self.current = self.max;
        jitter(self.max)
    }

    /// Back to `initial` after a healthy session.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

fn jitter(base: Duration) -> Duration {
    let half = base / 2;
    let extra = rand::rng().random_range(0..=half.as_millis().try_into().unwrap_or(u64::MAX));
    half + Duration::from_millis(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(10));
        }
        let capped = b.next_delay();
        assert!(capped >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        assert!(b.at_cap() >= Duration::from_secs(5));
    }
}
