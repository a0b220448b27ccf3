//! Header rewriting between client and upstream.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
//! forwarded: `Connection`, every header it names, and the well-known hop-by-hop fields.
//! `Proxy-Authorization` is not stripped: this is a reverse proxy, and RFC 9110 does not
//! list it as hop-by-hop. For a relayed upgrade, `Connection: upgrade` and `Upgrade` are
//! kept.
//!
//! Client-supplied forwarding and identity headers are not trusted: the policy strips the
//! client's identity and `X-Forwarded-*` claims on every proxy (`auth::strip_client_claims`),
//! and here `Forwarded` is removed and `X-Forwarded-For/-Proto/-Host` / `X-Real-IP` are set from the
//! connection, never appended to.
//!
//! Loops: every forwarded request carries a `Via` entry naming this process by a random
//! pseudonym; a request that arrives with our own entry, or with more than [`MAX_VIA_HOPS`]
//! entries, has looped and is refused ([`check_loop`]) before it opens another upstream
//! connection (a proxy whose target is the data plane itself would otherwise recurse until
//! descriptors run out).

use std::sync::LazyLock;

use http::header::{
    CONNECTION, FORWARDED, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{HeaderMap, HeaderValue, Version};

use super::error::ProxyError;
use super::host::RequestHost;
use super::{Client, ConnInfo, Listener};

/// More `Via` entries than this and the request is taken for a loop (a chain of real
/// proxies is a handful long).
pub(crate) const MAX_VIA_HOPS: usize = 16;

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

/// Removes hop-by-hop headers: the fixed set and any the `Connection` header lists. With
/// `keep_upgrade`, leaves `Upgrade` and sets `Connection: upgrade` so an upgrade can be
/// relayed.
///
/// One scan over the names present decides what there is to do, so the common message
/// (nothing hop-by-hop but `Connection: keep-alive`) costs comparisons and at most one
/// hashed removal rather than one per known name, and allocates nothing.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut has_connection = false;
    let mut has_fixed = false;
    for name in headers.keys() {
        match name.as_str() {
            "connection" => has_connection = true,
            name if is_fixed_hop_by_hop(name) => has_fixed = true,
            _ => {}
        }
    }
    if has_connection {
        // Names listed besides the fixed set and `close` (rare): allocates only then.
        let mut listed: Vec<HeaderName> = Vec::new();
        for token in headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            let known = token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || HOP_BY_HOP
                    .iter()
                    .any(|h| token.eq_ignore_ascii_case(h.as_str()));
            if !known && let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                listed.push(name);
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    if has_fixed {
        for name in HOP_BY_HOP {
            if name != CONNECTION && !(keep_upgrade && name == UPGRADE) {
                headers.remove(name);
            }
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if has_connection {
        headers.remove(CONNECTION);
    }
}

/// Whether `name` (lowercase, as in a [`HeaderMap`]) is in [`HOP_BY_HOP`] other than
/// `Connection`. A string match, because testing against the `const` array builds and
/// drops it for every name, and against a `static` one compares generically: either
/// costs more than the rest of the scan.
fn is_fixed_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// Replaces forwarding headers with what this proxy observed.
/// `client` is the connection's client, or the one a trusted forwarder named
/// ([`ConnInfo::client_of`]).
pub(crate) fn set_forwarding(
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    client: &Client<'_>,
    host: &RequestHost,
) {
    headers.remove(FORWARDED);
    headers.insert(X_FORWARDED_FOR, client.header.as_ref().clone());
    headers.insert(X_REAL_IP, client.header.as_ref().clone());
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

/// This process's `Via` entries, one per protocol version it receives, built once.
struct ViaEntries {
    /// The random pseudonym naming this process in `Via`.
    pseudonym: String,
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

static VIA_ENTRIES: LazyLock<ViaEntries> = LazyLock::new(|| {
    let pseudonym = format!("portcullis-{:016x}", rand::random::<u64>());
    let entry = |version: &str| {
        HeaderValue::try_from(format!("{version} {pseudonym}"))
            .unwrap_or(HeaderValue::from_static("1.1 portcullis"))
    };
    ViaEntries {
        http10: entry("1.0"),
        http11: entry("1.1"),
        http2: entry("2"),
        pseudonym,
    }
});

/// Refuses a request that has already passed through this process or through more than
/// [`MAX_VIA_HOPS`] proxies. Costs one lookup when the request has no `Via` (the usual case).
pub(crate) fn check_loop(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut values = headers.get_all(VIA).iter().peekable();
    if values.peek().is_none() {
        return Ok(());
    }
    let ours = VIA_ENTRIES.pseudonym.as_str();
    let mut hops = 0;
    for value in values {
        // Not UTF-8: count it as one hop that is not ours.
        let Ok(text) = value.to_str() else {
            hops += 1;
            continue;
        };
        for entry in text.split(',') {
            hops += 1;
            // `received-protocol received-by [comment]`
            let by = entry.split_whitespace().nth(1);
            if by == Some(ours) || hops > MAX_VIA_HOPS {
                return Err(ProxyError::LoopDetected);
            }
        }
    }
    Ok(())
}

/// Appends this process's `Via` entry for a request received as `version` (RFC 9110
/// §7.6.3).
pub(crate) fn append_via(headers: &mut HeaderMap, version: Version) {
    let entries = &*VIA_ENTRIES;
    let entry = match version {
        Version::HTTP_10 | Version::HTTP_09 => &entries.http10,
        Version::HTTP_2 | Version::HTTP_3 => &entries.http2,
        _ => &entries.http11,
    };
    headers.append(VIA, entry.clone());
}

/// This process's `Via` value for a request received over HTTP/1.1, for writers that
/// do not build a `HeaderMap` (the fast path).
pub(crate) fn via_http11() -> &'static HeaderValue {
    &VIA_ENTRIES.http11
}
