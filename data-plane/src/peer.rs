//! Who the client is: address ranges ([`Cidr`], [`Cidrs`]), the process-wide trusted
//! forwarders (`--trusted-forwarders`), the rightmost-untrusted walk over
//! `X-Forwarded-For` ([`client_from_xff`]) and what a PROXY protocol header said
//! ([`ProxyHeader`]).
//!
//! Trust model: a connection's *client address* is the TCP peer, or the source in the
//! PROXY header when the peer is a load balancer allowed to send one (the server's
//! `proxy_protocol` module decides that, before TLS). When that address is a trusted
//! forwarder, a request's `X-Forwarded-For` is read from the right: trusted entries are
//! skipped and the first untrusted one is the client (nginx `real_ip_recursive on`,
//! Envoy `xff_num_trusted_hops`); if every entry is trusted, the leftmost is. An entry that
//! is not an IP address stops the walk and the connection's address is used: a forwarder
//! that writes garbage is not believed at all. Without a trusted forwarder the client's
//! forwarding headers are never read (they are replaced, as always).
//!
//! Cost: a connection compares its address with the trusted ranges once; a request reads
//! `X-Forwarded-For` only when its connection comes from a trusted forwarder, without
//! allocating, and allocates one header value when it finds a client there.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::OnceLock;

use http::HeaderMap;
use http::header::HeaderName;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Most `X-Forwarded-For` entries walked; a longer chain (a handful is real) stops at the
/// limit and the connection's address is used.
const MAX_XFF_ENTRIES: usize = 32;

/// An address range, e.g. `10.0.0.0/8`, `2001:db8::/32` or a single address. IPv4 ranges
/// also match IPv4-mapped IPv6 addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address, IPv6 (IPv4 as mapped).
    network: u128,
    /// Prefix length over the 128-bit form.
    prefix: u8,
}

/// A list of ranges, as given on the command line (`CIDR[,CIDR…]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(Vec<Cidr>);

/// Ranges whose forwarding headers are believed (`--trusted-forwarders`); empty until set.
static TRUSTED_FORWARDERS: OnceLock<Cidrs> = OnceLock::new();

/// Sets the trusted forwarders for the whole process (once, at start; later calls are
/// ignored). Connections accepted afterwards use them.
pub fn set_trusted_forwarders(cidrs: Cidrs) {
    let _ = TRUSTED_FORWARDERS.set(cidrs);
}

/// The trusted forwarders (empty when none were set).
pub(crate) fn trusted_forwarders() -> &'static Cidrs {
    static NONE: Cidrs = Cidrs(Vec::new());
    TRUSTED_FORWARDERS.get().unwrap_or(&NONE)
}

/// The client in a trusted forwarder's `X-Forwarded-For`: the rightmost entry not in
/// `trusted`, or the leftmost if all are. `None` when there is no such header, when an
/// entry is not an IP address (`1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, optionally with
/// `:port`), or past [`MAX_XFF_ENTRIES`]: the caller then uses the connection's address.
pub(crate) fn client_from_xff(headers: &HeaderMap, trusted: &Cidrs) -> Option<IpAddr> {
    let mut last = None;
    let mut seen = 0;
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let value = value.to_str().ok()?;
        for entry in value.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            seen += 1;
            if seen > MAX_XFF_ENTRIES {
                return None;
            }
            let ip = parse_entry(entry)?;
            if !trusted.contains(ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
    }
    last
}

/// One `X-Forwarded-For` entry as an address: plain, bracketed IPv6, or with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (ip, port) = entry.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// What a PROXY protocol header told about a connection besides its addresses: the TLVs
/// later phases and logs may use (v2 only; v1 has none). Kept only when present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Protocol version of the header (1 or 2).
    pub version: u8,
    /// `LOCAL` (v2) or `UNKNOWN` (v1): the balancer's own connection (health check); the
    /// TCP peer stays the client.
    pub local: bool,
    /// `PP2_TYPE_ALPN`: the protocol the client negotiated with the balancer.
    pub alpn: Option<Box<[u8]>>,
    /// `PP2_TYPE_AUTHORITY`: the host name the client asked for (SNI).
    pub authority: Option<Box<str>>,
    /// `PP2_TYPE_UNIQUE_ID`: the balancer's connection id (at most 128 bytes).
    pub unique_id: Option<Box<[u8]>>,
    /// `PP2_TYPE_SSL`: the client reached the balancer over TLS.
    pub ssl: Option<SslInfo>,
}

/// The `PP2_TYPE_SSL` TLV.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SslInfo {
    /// `PP2_CLIENT_*` bits: 0x01 SSL, 0x02 client certificate on this connection, 0x04
    /// client certificate on the session.
    pub client: u8,
    /// 0 when the client certificate (if any) was verified.
    pub verify: u32,
    /// `PP2_SUBTYPE_SSL_VERSION`, e.g. `TLSv1.3`.
    pub version: Option<Box<str>>,
}

// === impl Cidr ===

impl Cidr {
    /// Whether `ip` is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = as_u128(ip);
        self.prefix == 0 || (bits ^ self.network) >> (128 - u32::from(self.prefix)) == 0
    }
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from_be_bytes(v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from_be_bytes(v4.to_ipv6_mapped().octets()),
            None => u128::from_be_bytes(v6.octets()),
        },
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| {
            format!("{s:?} is not an address range (e.g. 10.0.0.0/8, 2001:db8::/32)")
        })?;
        let (max, offset) = match ip {
            IpAddr::V4(_) => (32u8, 96u8),
            IpAddr::V6(_) => (128u8, 0u8),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let prefix = prefix + offset;
        let bits = as_u128(ip);
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        };
        Ok(Self {
            network: bits & mask,
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = Ipv6Addr::from(self.network);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.prefix >= 96 => write!(f, "{v4}/{}", self.prefix - 96),
            _ => write!(f, "{v6}/{}", self.prefix),
        }
    }
}

// === impl Cidrs ===

impl Cidrs {
    /// Whether any range contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// Whether there is no range.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Cidrs {
    type Err = String;

    /// `CIDR[,CIDR…]`; the empty string is the empty list.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn cidrs(s: &str) -> Cidrs {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                X_FORWARDED_FOR,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn ranges_match_their_addresses_only() {
        let list = cidrs("10.0.0.0/8, 192.0.2.7,2001:db8::/32");
        assert!(list.contains(ip("10.255.0.1")));
        assert!(list.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(list.contains(ip("192.0.2.7")));
        assert!(!list.contains(ip("192.0.2.8")));
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("2001:db8:1::1")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert!(!list.contains(ip("::a00:1")), "IPv4-compatible is not IPv4");
        assert!(cidrs("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidrs("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidrs("::/0").contains(ip("8.8.8.8")));
        assert!(cidrs("").is_empty());
        assert_eq!(cidrs("10.1.2.3/8").0[0].to_string(), "10.0.0.0/8");
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0",
            "x",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidrs>().is_err(), "{bad}");
        }
    }

    #[test]
    fn xff_gives_the_rightmost_untrusted_address() {
        let trusted = cidrs("10.0.0.0/8,127.0.0.1");
        let walk = |v: &[&str]| client_from_xff(&xff(v), &trusted);
        assert_eq!(walk(&["203.0.113.9, 10.0.0.2"]), Some(ip("203.0.113.9")));
        // A forged leftmost entry is skipped over: the client's own address is rightmost
        // untrusted.
        assert_eq!(
            walk(&["6.6.6.6, 203.0.113.9, 10.0.0.2, 10.0.0.3"]),
            Some(ip("203.0.113.9"))
        );
        // Several header lines form one list, in order.
        assert_eq!(
            walk(&["6.6.6.6", "198.51.100.1", "10.0.0.2"]),
            Some(ip("198.51.100.1"))
        );
        // All trusted: the leftmost.
        assert_eq!(walk(&["10.0.0.9, 127.0.0.1"]), Some(ip("10.0.0.9")));
        assert_eq!(walk(&[]), None);
        assert_eq!(walk(&[" , "]), None);
        // Ports and brackets, IPv4-mapped normalised.
        assert_eq!(
            walk(&["[2001:db8::1]:443, 10.0.0.2"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(walk(&["198.51.100.1:8080"]), Some(ip("198.51.100.1")));
        assert_eq!(walk(&["::ffff:198.51.100.1"]), Some(ip("198.51.100.1")));
        // Garbage from the right stops the walk: the connection's address is used.
        assert_eq!(walk(&["198.51.100.1, unknown"]), None);
        assert_eq!(walk(&["198.51.100.1, 10.0.0.2:x"]), None);
        assert_eq!(walk(&["[2001:db8::1]x"]), None);
        // Garbage left of the client is never reached.
        assert_eq!(walk(&["garbage, 198.51.100.1"]), Some(ip("198.51.100.1")));
        // Too long a chain of trusted hops.
        let long = vec!["10.0.0.1"; MAX_XFF_ENTRIES + 1].join(",");
        assert_eq!(walk(&[&long]), None);
    }
}
