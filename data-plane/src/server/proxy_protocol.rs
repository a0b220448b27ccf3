//! Receiving the PROXY protocol (v1 text, v2 binary) from load balancers, before TLS.
//!
//! Per listener a [`Mode`] (`--http-proxy-protocol`, `--https-proxy-protocol`, or
//! `--proxy-protocol` for both) and one list of balancers allowed to send it
//! (`--proxy-protocol-from`). From such a balancer the header is required: a connection
//! without one, with the wrong version for the listener, malformed, truncated, larger than
//! [`MAX_V2_BYTES`] or slower than [`HEADER_TIMEOUT`] is closed and counted
//! ([`refused_headers`], debug log). From any other peer nothing is read here, and a
//! connection that starts with a PROXY signature is closed by the protocol detection (plain
//! HTTP) or fails the TLS handshake (HTTPS): no client can claim another address.
//!
//! The header is framed with `peek` and consumed exactly, so the bytes that follow (the
//! TLS ClientHello or the HTTP request) stay in the socket for the next stage. Reading
//! runs in the connection's own task under its own deadline; it allocates one buffer the
//! size of the header (at most 107 bytes for v1, the declared length for v2), freed once
//! parsed, and the TLVs kept ([`ProxyHeader`]) only when present. Parsing is `ppp`'s.
//!
//! `LOCAL` (v2) and `UNKNOWN` (v1) headers, and v2 `AF_UNIX`/unspecified addresses, keep
//! the TCP peer as the client address, as the specification says.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ppp::v1;
use ppp::v2;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::peer::{Cidrs, ProxyHeader, SslInfo};

/// Time a trusted balancer has to send the whole header.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest v1 header (the specification's 107 bytes, CRLF included).
const MAX_V1_BYTES: usize = 107;
/// Longest v2 header accepted: the 16-byte prefix and 2 KiB of addresses and TLVs (HAProxy's
/// `send-proxy-v2-ssl-cn` sends a few hundred bytes).
pub(crate) const MAX_V2_BYTES: usize = 16 + 2048;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Which PROXY protocol versions a listener accepts from `--proxy-protocol-from`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No PROXY protocol: every peer is the client.
    #[default]
    Off,
    /// Text headers only.
    V1,
    /// Binary headers only.
    V2,
    /// Either.
    Any,
}

/// The process's receiving configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The plain-HTTP listener's mode.
    pub http: Mode,
    /// The HTTPS listener's mode.
    pub https: Mode,
    /// Peers that must send the header on a listener whose mode is not `off`.
    pub from: Cidrs,
}

static CONFIG: OnceLock<ProxyProtocol> = OnceLock::new();

/// Connections closed because of their PROXY header (missing from a trusted balancer,
/// sent by anyone else, malformed, oversized or slow).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Sets the receiving configuration for the whole process, once, before listening.
///
/// # Errors
/// A mode other than `off` without `--proxy-protocol-from`, or the list without any mode:
/// the message names the flag.
pub fn set_proxy_protocol(config: ProxyProtocol) -> Result<(), String> {
    let on = config.http != Mode::Off || config.https != Mode::Off;
    if on && config.from.is_empty() {
        return Err("--proxy-protocol-from: required when a listener receives the PROXY protocol (the load balancers allowed to send it)".into());
    }
    if !on && !config.from.is_empty() {
        return Err(
            "--proxy-protocol-from: no listener receives the PROXY protocol (set --proxy-protocol)"
                .into(),
        );
    }
    let _ = CONFIG.set(config);
    Ok(())
}

/// Connections refused so far because of their PROXY header.
pub fn refused_headers() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Counts a connection refused because its first bytes are a PROXY header from a peer
/// not allowed to send one (the caller logs it with the peer).
pub(super) fn count_untrusted() {
    REFUSED.fetch_add(1, Ordering::Relaxed);
}

/// Whether `bytes` (a connection's first bytes) start like a PROXY header.
pub(super) fn is_signature(bytes: &[u8]) -> bool {
    bytes.starts_with(V1_PREFIX) || bytes.starts_with(&V2_SIGNATURE[..6])
}

/// The mode of a listener when `peer` must send a header on it, else `None`.
pub(super) fn expected(https: bool, peer: IpAddr) -> Option<Mode> {
    let config = CONFIG.get()?;
    let mode = if https { config.https } else { config.http };
    (mode != Mode::Off && config.from.contains(peer)).then_some(mode)
}

/// Reads and parses the header a trusted balancer must send first: the client address,
/// and what else the header said. `None` (counted, logged at debug) closes the connection.
pub(super) async fn receive(
    stream: &mut TcpStream,
    peer: SocketAddr,
    mode: Mode,
) -> Option<(SocketAddr, Box<ProxyHeader>)> {
    receive_within(stream, peer, mode, HEADER_TIMEOUT).await
}

async fn receive_within(
    stream: &mut TcpStream,
    peer: SocketAddr,
    mode: Mode,
    timeout: Duration,
) -> Option<(SocketAddr, Box<ProxyHeader>)> {
    let result = match tokio::time::timeout(timeout, read_header(stream, mode)).await {
        Ok(Ok(bytes)) => parse(&bytes, peer),
        Ok(Err(refusal)) => Err(refusal),
        Err(_elapsed) => Err(Refusal::Slow),
    };
    match result {
        Ok((client, header)) => {
            tracing::debug!(
                %peer,
                %client,
                version = header.version,
                local = header.local,
                authority = header.authority.as_deref(),
                alpn = ?header.alpn,
                ssl = ?header.ssl,
                "PROXY protocol header accepted"
            );
            Some((client, header))
        }
        Err(refusal) => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %refusal, "connection closed: PROXY protocol header refused");
            None
        }
    }
}

/// Why a header was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    Missing,
    WrongVersion(Mode),
    Malformed(&'static str),
    TooLong,
    Truncated,
    Slow,
    Io(std::io::Error),
}

/// How much of a header the bytes so far hold.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The header is the first `n` bytes.
    Complete(usize),
    /// Every byte so far is header; it will be at least this long.
    Incomplete(usize),
}

/// Reads exactly the header's bytes (nothing after it).
async fn read_header(stream: &mut TcpStream, mode: Mode) -> Result<Vec<u8>, Refusal> {
    let mut buf = vec![0u8; MAX_V1_BYTES];
    let mut filled = 0;
    loop {
        let n = stream.peek(&mut buf[filled..]).await.map_err(Refusal::Io)?;
        if n == 0 {
            return Err(if filled == 0 {
                Refusal::Missing
            } else {
                Refusal::Truncated
            });
        }
        let available = filled + n;
        match frame(&buf[..available], mode)? {
            Frame::Complete(len) => {
                stream
                    .read_exact(&mut buf[filled..len])
                    .await
                    .map_err(Refusal::Io)?;
                buf.truncate(len);
                return Ok(buf);
            }
            Frame::Incomplete(at_least) => {
                // All of it is header: consume it, so the next peek waits for more.
                stream
                    .read_exact(&mut buf[filled..available])
                    .await
                    .map_err(Refusal::Io)?;
                filled = available;
                if at_least > buf.len() {
                    buf.resize(at_least, 0);
                }
                if filled == buf.len() {
                    return Err(Refusal::TooLong);
                }
            }
        }
    }
}

/// Frames the start of a connection as a header of `mode`.
fn frame(bytes: &[u8], mode: Mode) -> Result<Frame, Refusal> {
    match bytes.first() {
        Some(b'P') => {
            if matches!(mode, Mode::V2) {
                return Err(Refusal::WrongVersion(mode));
            }
            let n = bytes.len().min(V1_PREFIX.len());
            if bytes[..n] != V1_PREFIX[..n] {
                return Err(Refusal::Missing);
            }
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) if end > 0 && bytes[end - 1] == b'\r' => Ok(Frame::Complete(end + 1)),
                Some(_) => Err(Refusal::Malformed("v1 line not ended by CRLF")),
                None if bytes.len() >= MAX_V1_BYTES => Err(Refusal::TooLong),
                None => Ok(Frame::Incomplete(bytes.len() + 1)),
            }
        }
        Some(b'\r') => {
            if matches!(mode, Mode::V1) {
                return Err(Refusal::WrongVersion(mode));
            }
            let n = bytes.len().min(V2_SIGNATURE.len());
            if bytes[..n] != V2_SIGNATURE[..n] {
                return Err(Refusal::Missing);
            }
            if bytes.len() < 16 {
                return Ok(Frame::Incomplete(16));
            }
            let total = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
            if total > MAX_V2_BYTES {
                Err(Refusal::TooLong)
            } else if bytes.len() >= total {
                Ok(Frame::Complete(total))
            } else {
                Ok(Frame::Incomplete(total))
            }
        }
        _ => Err(Refusal::Missing),
    }
}

/// What [`decode_header`] found at the start of a connection's bytes.
#[derive(Debug)]
pub enum Decoded {
    /// The header is the first `len` bytes; `client` is the address every decision uses.
    Complete {
        /// The header's length: the bytes after it are the next stage's.
        len: usize,
        /// The client address.
        client: SocketAddr,
        /// What else the header said.
        header: Box<ProxyHeader>,
    },
    /// Every byte so far is header; it will be at least `at_least` bytes long.
    Incomplete {
        /// The fewest bytes the header can have.
        at_least: usize,
    },
}

/// Frames and parses the start of a connection from `peer` on a listener of `mode`, with
/// the same [`frame`] and [`parse`] the accept path runs on the bytes it peeks and reads
/// (the fuzz target's entry point). `Err` is the refusal's message.
pub fn decode_header(bytes: &[u8], mode: Mode, peer: SocketAddr) -> Result<Decoded, String> {
    match frame(bytes, mode).map_err(|r| r.to_string())? {
        Frame::Complete(len) => {
            let (client, header) = parse(&bytes[..len], peer).map_err(|r| r.to_string())?;
            Ok(Decoded::Complete {
                len,
                client,
                header,
            })
        }
        Frame::Incomplete(at_least) => Ok(Decoded::Incomplete { at_least }),
    }
}

/// The client address and header info from a complete header.
fn parse(bytes: &[u8], peer: SocketAddr) -> Result<(SocketAddr, Box<ProxyHeader>), Refusal> {
    if bytes.first() == Some(&b'P') {
        let header =
            v1::Header::try_from(bytes).map_err(|_| Refusal::Malformed("invalid v1 header"))?;
        let mut info = Box::new(ProxyHeader {
            version: 1,
            ..ProxyHeader::default()
        });
        let client = match header.addresses {
            v1::Addresses::Tcp4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
            v1::Addresses::Tcp6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
            v1::Addresses::Unknown => {
                info.local = true;
                peer
            }
        };
        return Ok((client, info));
    }
    let header =
        v2::Header::try_from(bytes).map_err(|_| Refusal::Malformed("invalid v2 header"))?;
    let mut info = Box::new(ProxyHeader {
        version: 2,
        local: header.command == v2::Command::Local,
        ..ProxyHeader::default()
    });
    let client = match (header.command, header.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
            SocketAddr::new(a.source_address.into(), a.source_port)
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
            SocketAddr::new(a.source_address.into(), a.source_port)
        }
        _ => peer,
    };
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|_| Refusal::Malformed("invalid v2 TLV"))?;
        let value: &[u8] = &tlv.value;
        match tlv.kind {
            0x01 => info.alpn = Some(value.into()),
            0x02 => {
                let authority = std::str::from_utf8(value)
                    .map_err(|_| Refusal::Malformed("v2 authority is not UTF-8"))?;
                info.authority = Some(authority.into());
            }
            0x05 if value.len() <= 128 => info.unique_id = Some(value.into()),
            0x05 => return Err(Refusal::Malformed("v2 unique id longer than 128 bytes")),
            0x20 => info.ssl = Some(parse_ssl(value)?),
            _ => {}
        }
    }
    Ok((client, info))
}

/// `PP2_TYPE_SSL`: client flags, verify result, then sub-TLVs (the version is kept).
fn parse_ssl(value: &[u8]) -> Result<SslInfo, Refusal> {
    let [client, v0, v1, v2, v3, rest @ ..] = value else {
        return Err(Refusal::Malformed("v2 SSL TLV shorter than 5 bytes"));
    };
    let mut ssl = SslInfo {
        client: *client,
        verify: u32::from_be_bytes([*v0, *v1, *v2, *v3]),
        version: None,
    };
    let mut rest = rest;
    while !rest.is_empty() {
        let [kind, l0, l1, tail @ ..] = rest else {
            return Err(Refusal::Malformed("v2 SSL sub-TLV truncated"));
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if tail.len() < len {
            return Err(Refusal::Malformed("v2 SSL sub-TLV truncated"));
        }
        let (sub, next) = tail.split_at(len);
        if *kind == 0x21 {
            ssl.version = std::str::from_utf8(sub).ok().map(Into::into);
        }
        rest = next;
    }
    Ok(ssl)
}

// === impl Mode ===

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "v1" => Ok(Self::V1),
            "v2" => Ok(Self::V2),
            "any" => Ok(Self::Any),
            other => Err(format!("{other:?}: expected off, v1, v2 or any")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Any => "any",
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no PROXY header from a balancer that must send one"),
            Self::WrongVersion(mode) => {
                write!(f, "wrong PROXY protocol version for a {mode} listener")
            }
            Self::Malformed(what) => write!(f, "malformed PROXY header: {what}"),
            Self::TooLong => f.write_str("PROXY header too long"),
            Self::Truncated => f.write_str("connection closed inside the PROXY header"),
            Self::Slow => f.write_str("PROXY header not received in time"),
            Self::Io(error) => write!(f, "reading the PROXY header: {error}"),
        }
    }
}

#[cfg(test)]
mod tests;
