//! The one place the current snapshot lives.
//!
//! Requests load it with one atomic operation and keep that `Arc` for their whole life,
//! so a swap never changes config under a running request and never blocks it. TLS
//! handshakes load it the same way to pick a certificate (the HTTPS listener's SNI
//! resolver in [`crate::server`]), so routes and certificates always come from the same
//! snapshot.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::config::Snapshot;

/// Holds the snapshot being served; empty until the first one is applied.
#[derive(Debug, Default)]
pub struct ConfigStore {
    current: ArcSwapOption<Snapshot>,
}

// === impl ConfigStore ===

impl ConfigStore {
    /// The snapshot to serve this request with, if any.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Atomically replaces the served snapshot and hands back the one it replaced, so the
    /// caller chooses where it is dropped: freeing a large snapshot takes tens of
    /// milliseconds, too long for an async worker.
    #[must_use = "dropping a large snapshot blocks; see Applier"]
    pub fn publish(&self, snapshot: Arc<Snapshot>) -> Option<Arc<Snapshot>> {
        self.current.swap(Some(snapshot))
    }

    /// Version being served, `None` before the first apply.
    pub fn version(&self) -> Option<u64> {
        self.current.load().as_ref().map(|s| s.version())
    }
}
