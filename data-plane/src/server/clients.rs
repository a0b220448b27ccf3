//! Open connections per client address, bounded so one address cannot take every file
//! descriptor of the data plane (and with them every other client's service).
//!
//! A connection takes a [`ClientSlot`] when accepted, before the TLS handshake, and gives
//! it back when the last of its tasks ends. Past the limit the new connection is closed at
//! once (counted and logged at debug: a flood must not flood the log too). Cost: one
//! uncontended lock and hash-map update at accept and at close, never per request; none at
//! all when the limit is off. The limit is per data plane process, over every worker and
//! listener. Behind a load balancer that does not send the PROXY protocol every connection
//! has the balancer's address: raise the limit or turn it off there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::metrics::OpenConnection;

/// Most open connections per client address; 0 = no limit (the library's default; the
/// binary sets its flag's value at start).
static LIMIT: AtomicU32 = AtomicU32::new(0);

/// Connections closed at accept because their address was at the limit.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Open connections per address (only while a limit is set; entries at zero are removed,
/// so the map holds at most one entry per open connection).
static OPEN: LazyLock<Mutex<HashMap<IpAddr, u32>>> = LazyLock::new(Mutex::default);

/// Sets the most connections one client address may hold open; 0 turns the limit off.
/// Connections already open are not affected.
pub fn limit_per_client(max: u32) {
    LIMIT.store(max, Ordering::Relaxed);
}

/// Connections refused so far because their address was at the limit (`/metrics`).
pub fn refused_connections() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// One open connection of a client address; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    /// `None` when no limit was set at accept (nothing to give back).
    ip: Option<IpAddr>,
    /// Counts the connection in `portcullis_dp_open_connections` while it lives.
    _open: OpenConnection,
}

/// A slot for a new connection from `ip`, or `None` when the address is at the limit.
pub(crate) fn admit(ip: IpAddr) -> Option<ClientSlot> {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 {
        return Some(ClientSlot {
            ip: None,
            _open: OpenConnection::open(),
        });
    }
    let ip = ip.to_canonical();
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    let count = open.entry(ip).or_insert(0);
    if *count >= limit {
        drop(open);
        REFUSED.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%ip, limit, "connection refused: too many open connections from this address");
        return None;
    }
    *count += 1;
    Some(ClientSlot {
        ip: Some(ip),
        _open: OpenConnection::open(),
    })
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test owns the process-wide limit (tests run in parallel threads).
    #[test]
    fn an_address_at_the_limit_is_refused_until_a_slot_is_given_back() {
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "::ffff:192.0.2.2"
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        limit_per_client(2);
        let first = admit(a).expect("first");
        let second = admit(a).expect("second");
        let refused = refused_connections();
        assert!(admit(a).is_none(), "third connection from the same address");
        assert_eq!(refused_connections(), refused + 1);
        // Another address (IPv4-mapped IPv6 counts as its IPv4 address) is unaffected.
        let other = admit(b).expect("other address");
        let other_v4 = admit(IpAddr::from([192, 0, 2, 2])).expect("same address as v4");
        assert!(admit(IpAddr::from([192, 0, 2, 2])).is_none());
        drop(first);
        let again = admit(a).expect("a slot was given back");
        drop((second, again, other, other_v4));
        assert!(
            OPEN.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        );
        limit_per_client(0);
        let many: Vec<_> = (0..10).map(|_| admit(a).expect("no limit")).collect();
        assert!(
            OPEN.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        );
        drop(many);
    }
}
