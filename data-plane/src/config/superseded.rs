//! Giving up a compile that a newer snapshot has made pointless.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::CompileError;

/// Shared by the receiver of snapshots, which marks it when a newer one arrives, and the
/// compile in progress, which looks at it between its phases. At 10,000 proxies a compile
/// takes 70–300 ms; finishing one that is already outdated delays the newest by as much.
///
/// A compile is only given up before the deadline the applier chose, so a steady stream
/// of writes cannot keep a data plane from ever applying one.
#[derive(Clone, Debug)]
pub struct Superseded {
    marked: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

// === impl Superseded ===

impl Superseded {
    /// A compile that may be given up until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Self {
            marked: Arc::default(),
            deadline: Some(deadline),
        }
    }

    /// A compile that always runs to its end (start-up from the cache, tests).
    pub fn never() -> Self {
        Self {
            marked: Arc::default(),
            deadline: None,
        }
    }

    /// Says a newer snapshot is waiting.
    pub(crate) fn mark(&self) {
        self.marked.store(true, Ordering::Relaxed);
    }

    /// `Err(Superseded)` when the compile should stop here.
    pub(super) fn check(&self) -> Result<(), CompileError> {
        let marked = self.marked.load(Ordering::Relaxed);
        match self.deadline {
            Some(deadline) if marked && Instant::now() < deadline => Err(CompileError::Superseded),
            _ => Ok(()),
        }
    }
}
