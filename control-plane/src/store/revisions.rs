//! The newest store revision this process knows, as a watch: writers report the revision
//! their batch reached, the snapshot publisher wakes when it grows.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared handle; clones report to and watch the same revision.
#[derive(Clone)]
pub struct Revisions(Arc<watch::Sender<u64>>);

impl Revisions {
    /// Starts at `rev` (the store's revision when the process started).
    pub fn new(rev: u64) -> Self {
        Self(Arc::new(watch::Sender::new(rev)))
    }

    /// Fires whenever a newer revision is observed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Records that the store reached `rev`; wakes subscribers only if it is newer.
    pub fn observe(&self, rev: u64) {
        self.0.send_if_modified(|cur| {
            let newer = rev > *cur;
            if newer {
                *cur = rev;
            }
            newer
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_revision_wakes_subscribers() {
        let revisions = Revisions::new(5);
        let mut rx = revisions.clone().subscribe();
        revisions.observe(4);
        revisions.observe(5);
        assert!(!rx.has_changed().unwrap());
        revisions.observe(6);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 6);
    }
}
