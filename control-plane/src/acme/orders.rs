//! The hand-over from the service layer to the issuer: certificate names to order.
//!
//! The service layer decides *that* a certificate must be ordered (created, `cert renew`,
//! promoted to production) and pushes its name; the issuer task receives names and orders
//! each in the background, exactly as if it had been called directly. Ordering never
//! reported to the API caller: its outcome lands in the certificate's record (`status`,
//! `error`), and the checks that can refuse a request (ownership, source, an order in
//! flight) still run in the service layer before the name is queued.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Name of the lock held while certificate `name` is being ordered; shared through the
/// store so that control planes sharing it never order the same certificate twice at once.
pub fn order_lock(name: &str) -> String {
    format!("acme:{name}")
}

/// Names of certificates to order. Cheap to clone; every clone feeds the one receiver.
///
/// Unbounded: a name is a few bytes and arrives once per API request or renewal decision;
/// a duplicate is harmless (the issuer's store lock makes the second order a no-op).
/// Without an issuer task (tools, unit tests) names stay queued and nothing is ordered.
#[derive(Clone)]
pub struct OrderQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: Arc<Mutex<Option<OrderReceiver>>>,
}

/// The issuer's end of an [`OrderQueue`].
pub type OrderReceiver = mpsc::UnboundedReceiver<String>;

impl OrderQueue {
    /// A queue whose receiver waits to be taken by the issuer.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }

    /// Asks the issuer to order certificate `name`.
    pub fn push(&self, name: String) {
        // The receiver lives as long as the queue holds it or the issuer runs; once the
        // issuer is gone the process is ending and there is nobody left to order.
        let _ = self.tx.send(name);
    }

    /// The receiving end, once: the first caller (the issuer task) gets it.
    pub fn take_receiver(&self) -> Option<OrderReceiver> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Default for OrderQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_feeds_the_one_receiver_taken_once() {
        let queue = OrderQueue::new();
        let other = queue.clone();
        queue.push("a".into());
        other.push("b".into());
        let mut rx = queue.take_receiver().expect("first take");
        assert!(other.take_receiver().is_none(), "only one receiver");
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a"));
        assert_eq!(rx.try_recv().ok().as_deref(), Some("b"));
        assert!(rx.try_recv().is_err());
    }
}
