//! The data plane's PROXY header reader (`server::decode_proxy_header`: the `frame` and
//! `parse` the accept path runs on the bytes it peeks), two ways per input:
//!
//! - raw: the bytes as a connection's start, on v1, v2 and any listeners. Never panics; a
//!   complete header never claims more bytes than given, an incomplete one asks for more;
//!   v1 only on v1/any listeners, at most 107 bytes and CRLF-ended; v2 only on v2/any, at
//!   most 16 + 2048 bytes and exactly its declared length (longer declared lengths are
//!   refused); the client address and the TLVs kept are what an independent decoding of
//!   the accepted bytes (the specification's layout) finds.
//! - built: the bytes drive an independent encoder (v1 TCP4/TCP6/UNKNOWN, v2 PROXY/LOCAL
//!   over IPv4/IPv6/UNIX/unspecified with TLVs), followed by the rest as the next stage's
//!   bytes; the header is accepted, its length is exactly the encoding's and the address,
//!   port and TLVs come back as encoded (none after an unspecified family's block: `ppp`
//!   reads it all as addresses, which are ignored); an encoding over the limits is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use portcullis_data_plane::peer::ProxyHeader;
use portcullis_data_plane::server::{
    DecodedProxyHeader as Decoded, ProxyProtocolMode as Mode, decode_proxy_header as decode,
};

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
const MAX_V1: usize = 107;
const MAX_V2: usize = 16 + 2048;
const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn main() {
    portcullis_fuzz::driver::run("proxy_protocol", |data: &[u8]| {
        check_raw(data);
        check_built(data);
    });
}

/// What an accepted header must say, decoded independently.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    client: Option<SocketAddr>,
    local: bool,
    alpn: Option<Vec<u8>>,
    authority: Option<String>,
    unique_id: Option<Vec<u8>>,
}

fn kept(header: &ProxyHeader, client: SocketAddr) -> Expected {
    Expected {
        client: Some(client),
        local: header.local,
        alpn: header.alpn.as_deref().map(<[u8]>::to_vec),
        authority: header.authority.as_deref().map(str::to_owned),
        unique_id: header.unique_id.as_deref().map(<[u8]>::to_vec),
    }
}

fn check_raw(data: &[u8]) {
    for mode in [Mode::V1, Mode::V2, Mode::Any] {
        let v2_declared = (data.len() >= 16 && data.starts_with(SIG))
            .then(|| 16 + usize::from(u16::from_be_bytes([data[14], data[15]])));
        match decode(data, mode, PEER) {
            Ok(Decoded::Complete {
                len,
                client,
                header,
            }) => {
                assert!(len <= data.len(), "{len} > {}", data.len());
                let bytes = &data[..len];
                if header.version == 1 {
                    assert_ne!(mode, Mode::V2);
                    assert!(len <= MAX_V1 && bytes.ends_with(b"\r\n"));
                    let expected = v1_expected(bytes).expect("accepted v1 header");
                    assert_eq!(kept(&header, client), expected, "{bytes:?}");
                } else {
                    assert_eq!(header.version, 2);
                    assert_ne!(mode, Mode::V1);
                    assert_eq!(Some(len), v2_declared);
                    assert!(len <= MAX_V2);
                    if let Some(expected) = v2_expected(bytes) {
                        assert_eq!(kept(&header, client), expected, "{bytes:?}");
                    }
                }
            }
            Ok(Decoded::Incomplete { at_least }) => {
                assert!(at_least > data.len(), "{at_least} <= {}", data.len());
                assert!(at_least <= MAX_V2);
                assert!(v2_declared.is_none_or(|n| n <= MAX_V2));
            }
            Err(message) => assert!(!message.is_empty()),
        }
        if mode != Mode::V1 && v2_declared.is_some_and(|n| n > MAX_V2) {
            assert!(decode(data, mode, PEER).is_err(), "over the v2 limit");
        }
        if data.starts_with(b"PROXY ") && !data[..data.len().min(MAX_V1)].contains(&b'\n') {
            let result = decode(data, mode, PEER);
            if data.len() >= MAX_V1 || mode == Mode::V2 {
                assert!(result.is_err(), "v1 line over 107 bytes");
            } else {
                assert!(matches!(result, Ok(Decoded::Incomplete { .. })));
            }
        }
    }
}

/// The specification's v1 line: `PROXY TCP4|TCP6 src dst sport dport\r\n` or `PROXY
/// UNKNOWN…`.
fn v1_expected(line: &[u8]) -> Option<Expected> {
    let text = std::str::from_utf8(line.strip_suffix(b"\r\n")?).ok()?;
    // `ppp` also takes a lone CR as a separator; the address is still the line's.
    let mut parts = text.split([' ', '\r']);
    (parts.next()? == "PROXY").then_some(())?;
    match parts.next()? {
        "UNKNOWN" => Some(Expected {
            client: Some(PEER),
            local: true,
            ..Expected::default()
        }),
        proto @ ("TCP4" | "TCP6") => {
            let src: IpAddr = parts.next()?.parse().ok()?;
            let _dst: IpAddr = parts.next()?.parse().ok()?;
            let port: u16 = parts.next()?.parse().ok()?;
            assert_eq!(src.is_ipv4(), proto == "TCP4", "{text:?}");
            Some(Expected {
                client: Some(SocketAddr::new(src, port)),
                ..Expected::default()
            })
        }
        _ => None,
    }
}

/// The specification's v2 layout; `None` where the check is not independent (unspecified
/// family, or a TLV area this walk does not take apart).
fn v2_expected(bytes: &[u8]) -> Option<Expected> {
    let command = bytes[12] & 0x0f;
    let family = bytes[13] >> 4;
    let body = &bytes[16..];
    let (client, addresses) = match family {
        1 => (
            SocketAddr::new(
                Ipv4Addr::from(<[u8; 4]>::try_from(body.get(..4)?).ok()?).into(),
                u16::from_be_bytes([*body.get(8)?, *body.get(9)?]),
            ),
            12,
        ),
        2 => (
            SocketAddr::new(
                Ipv6Addr::from(<[u8; 16]>::try_from(body.get(..16)?).ok()?).into(),
                u16::from_be_bytes([*body.get(32)?, *body.get(33)?]),
            ),
            36,
        ),
        3 => (PEER, 216),
        _ => return None,
    };
    let mut expected = Expected {
        client: Some(if command == 1 { client } else { PEER }),
        local: command == 0,
        ..Expected::default()
    };
    let mut rest = body.get(addresses..)?;
    while !rest.is_empty() {
        let [kind, l0, l1, tail @ ..] = rest else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let value = tail.get(..len)?;
        match kind {
            0x01 => expected.alpn = Some(value.to_vec()),
            0x02 => expected.authority = Some(String::from_utf8(value.to_vec()).ok()?),
            0x05 => expected.unique_id = Some(value.to_vec()),
            _ => {}
        }
        rest = &tail[len..];
    }
    Some(expected)
}

/// Encodes a header from `data` (see the module docs) and checks it round-trips.
fn check_built(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut input = Input(rest);
    let (bytes, expected) = if selector & 0x80 == 0 {
        build_v1(selector, &mut input)
    } else {
        build_v2(selector, &mut input)
    };
    let len = bytes.len();
    let mut stream = bytes;
    stream.extend_from_slice(input.0);
    let over = if stream[0] == b'P' {
        len > MAX_V1
    } else {
        len > MAX_V2
    };
    let modes: &[Mode] = if stream[0] == b'P' {
        &[Mode::V1, Mode::Any]
    } else {
        &[Mode::V2, Mode::Any]
    };
    for &mode in modes {
        match decode(&stream, mode, PEER) {
            Ok(Decoded::Complete {
                len: got,
                client,
                header,
            }) => {
                assert!(!over, "accepted {len} bytes, over the limit");
                assert_eq!(got, len);
                assert_eq!(kept(&header, client), expected, "{:?}", &stream[..len]);
            }
            other => assert!(over, "{other:?} for {:?}", &stream[..len]),
        }
    }
}

/// Bytes taken from the front of the input, zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = self.0.len().min(N);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
}

fn build_v1(selector: u8, input: &mut Input) -> (Vec<u8>, Expected) {
    let (src, dst): (IpAddr, IpAddr) = match selector % 3 {
        0 => (
            Ipv4Addr::from(input.take::<4>()).into(),
            Ipv4Addr::from(input.take::<4>()).into(),
        ),
        1 => (
            Ipv6Addr::from(input.take::<16>()).into(),
            Ipv6Addr::from(input.take::<16>()).into(),
        ),
        _ => {
            let expected = Expected {
                client: Some(PEER),
                local: true,
                ..Expected::default()
            };
            return (b"PROXY UNKNOWN\r\n".to_vec(), expected);
        }
    };
    let (sport, dport) = (input.u16(), input.u16());
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    let line = format!("PROXY {proto} {src} {dst} {sport} {dport}\r\n");
    let expected = Expected {
        client: Some(SocketAddr::new(src, sport)),
        ..Expected::default()
    };
    (line.into_bytes(), expected)
}

fn build_v2(selector: u8, input: &mut Input) -> (Vec<u8>, Expected) {
    let local = selector & 0x40 != 0;
    let family = (selector >> 4) & 0x03; // 0 unspecified, 1 IPv4, 2 IPv6, 3 UNIX
    let mut body = Vec::new();
    let client = match family {
        1 => {
            let src = Ipv4Addr::from(input.take::<4>());
            body.extend_from_slice(&src.octets());
            body.extend_from_slice(&input.take::<4>());
            let port = input.u16();
            body.extend_from_slice(&port.to_be_bytes());
            body.extend_from_slice(&input.take::<2>());
            SocketAddr::new(src.into(), port)
        }
        2 => {
            let src = Ipv6Addr::from(input.take::<16>());
            body.extend_from_slice(&src.octets());
            body.extend_from_slice(&input.take::<16>());
            let port = input.u16();
            body.extend_from_slice(&port.to_be_bytes());
            body.extend_from_slice(&input.take::<2>());
            SocketAddr::new(src.into(), port)
        }
        3 => {
            body.extend_from_slice(&input.take::<216>());
            PEER
        }
        _ => PEER,
    };
    let mut expected = Expected {
        client: Some(if local { PEER } else { client }),
        local,
        ..Expected::default()
    };
    // TLVs: (kind, length byte, value) until the input says stop (kind 0) or runs out;
    // the kinds with a layout of their own are made valid.
    for _ in 0..(selector & 0x0f) {
        let kind = input.u8();
        if kind == 0 {
            break;
        }
        let want = usize::from(input.u8()) * 4;
        let value = input.bytes(want).to_vec();
        let value = match kind {
            0x01 => {
                expected.alpn = Some(value.clone());
                value
            }
            0x02 => {
                let text = String::from_utf8_lossy(&value).into_owned();
                expected.authority = Some(text.clone());
                text.into_bytes()
            }
            0x05 => {
                let value = value[..value.len().min(128)].to_vec();
                expected.unique_id = Some(value.clone());
                value
            }
            0x20 => {
                // client flags, verify, then a version sub-TLV.
                let mut ssl = vec![value.first().copied().unwrap_or(1), 0, 0, 0, 0];
                let version = String::from_utf8_lossy(&value).into_owned();
                ssl.push(0x21);
                ssl.extend_from_slice(&(version.len() as u16).to_be_bytes());
                ssl.extend_from_slice(version.as_bytes());
                ssl
            }
            _ => value,
        };
        body.push(kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(&value);
    }
    if family == 0 {
        // An unspecified family's block is all address data, ignored with its TLVs
        // (`ppp`; the specification says to ignore the addresses).
        expected.alpn = None;
        expected.authority = None;
        expected.unique_id = None;
    }
    let mut bytes = SIG.to_vec();
    bytes.push(0x20 | u8::from(!local));
    bytes.push((family << 4) | 0x01);
    let declared = u16::try_from(body.len()).unwrap_or(u16::MAX);
    bytes.extend_from_slice(&declared.to_be_bytes());
    bytes.extend_from_slice(&body);
    (bytes, expected)
}
