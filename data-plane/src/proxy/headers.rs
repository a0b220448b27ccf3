//! Header rewriting between client and upstream.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
//! forwarded: `Connection`, every header it names, and the well-known hop-by-hop fields.
//! `Proxy-Authorization` is not stripped: this is a reverse proxy, and RFC 9110 does not
//! list it as hop-by-hop. For a relayed upgrade, `Connection: upgrade` and `Upgrade` are
//! kept.
//!
//! Client-supplied forwarding headers are not trusted: `Forwarded` is removed and the
//! `X-Forwarded-*` / `X-Real-IP` values are replaced, never appended to.

use http::header::{CONNECTION, FORWARDED, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue};

use super::host::RequestHost;
use super::{ConnInfo, Listener};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Removes hop-by-hop headers. With `keep_upgrade`, leaves `Upgrade` and sets
/// `Connection: upgrade` so an upgrade can be relayed.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Allocates only when the client listed extra headers in `Connection`.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if keep_upgrade && token.eq_ignore_ascii_case("upgrade") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        if keep_upgrade && (name == CONNECTION || name == UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Replaces forwarding headers with what this proxy observed.
pub(crate) fn set_forwarding(headers: &mut HeaderMap, conn: &ConnInfo, host: &RequestHost) {
    headers.remove(FORWARDED);
    headers.insert(X_FORWARDED_FOR, conn.peer_ip.clone());
    headers.insert(X_REAL_IP, conn.peer_ip.clone());
    let proto = match conn.listener {
        Listener::Http { .. } => "http",
        Listener::Https => "https",
    };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_HOST, host.raw().clone());
}

/// Whether a comma-separated header contains `token` (case-insensitive).
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
