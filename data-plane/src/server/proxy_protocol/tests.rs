use std::net::{Ipv4Addr, SocketAddr};

use ppp::v2::{Builder, Command, IPv4, IPv6, Protocol, Type, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn peer() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 40000))
}

fn v2(command: Command, addresses: impl Into<v2::Addresses>, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut builder = Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses);
    for (kind, value) in tlvs {
        builder = builder
            .write_tlv(*kind, value)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    builder.build().unwrap_or_else(|e| panic!("{e}"))
}

/// Frames and parses `bytes` as one complete header.
fn whole(bytes: &[u8], mode: Mode) -> Result<(SocketAddr, Box<ProxyHeader>), Refusal> {
    match frame(bytes, mode)? {
        Frame::Complete(n) if n == bytes.len() => parse(bytes, peer()),
        other => panic!("{other:?} for {} bytes", bytes.len()),
    }
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let (client, info) = whole(b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\n", Mode::Any)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        client,
        "203.0.113.9:51234"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!((info.version, info.local), (1, false));
    let (client, _) = whole(b"PROXY TCP6 2001:db8::9 2001:db8::1 1 2\r\n", Mode::V1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        client,
        "[2001:db8::9]:1".parse().unwrap_or_else(|e| panic!("{e}"))
    );
    let (client, info) = whole(b"PROXY UNKNOWN\r\n", Mode::V1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client, peer(), "UNKNOWN keeps the peer");
    assert!(info.local);
}

/// The fuzz target's entry point: the header's length, not the bytes after it, and
/// `Incomplete` while more is needed.
#[test]
fn decode_header_frames_then_parses() {
    let bytes = b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
    match decode_header(bytes, Mode::Any, peer()) {
        Ok(Decoded::Complete { len, client, .. }) => {
            assert_eq!(len, 43);
            assert_eq!(client, SocketAddr::from(([203, 0, 113, 9], 51234)));
        }
        other => panic!("{other:?}"),
    }
    let v2_header = v2(
        Command::Local,
        IPv4::new([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
        &[],
    );
    assert!(matches!(
        decode_header(&v2_header[..10], Mode::V2, peer()),
        Ok(Decoded::Incomplete { at_least: 16 })
    ));
    let refused = decode_header(bytes, Mode::V2, peer()).map(|_| ());
    assert_eq!(
        refused,
        Err("wrong PROXY protocol version for a v2 listener".to_owned())
    );
}

#[test]
fn v2_proxy_local_families_and_tlvs() {
    let addresses = IPv4::new([198, 51, 100, 7], [10, 0, 0, 1], 5555, 443);
    let mut ssl = vec![0x01, 0, 0, 0, 0, 0x21, 0, 7];
    ssl.extend_from_slice(b"TLSv1.3");
    let bytes = v2(
        Command::Proxy,
        addresses,
        &[
            (Type::ALPN.into(), b"h2"),
            (Type::Authority.into(), b"app.example.com"),
            (Type::UniqueId.into(), b"abc"),
            (Type::SSL.into(), &ssl),
            (Type::NoOp.into(), b""),
        ],
    );
    let (client, info) = whole(&bytes, Mode::V2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        client,
        "198.51.100.7:5555"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(info.version, 2);
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(info.authority.as_deref(), Some("app.example.com"));
    assert_eq!(info.unique_id.as_deref(), Some(&b"abc"[..]));
    let ssl = info.ssl.as_ref().unwrap_or_else(|| panic!("ssl"));
    assert_eq!(
        (ssl.client, ssl.verify, ssl.version.as_deref()),
        (1, 0, Some("TLSv1.3"))
    );

    let v6 = IPv6::new(
        "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap_or_else(|e| panic!("{e}")),
        std::net::Ipv6Addr::LOCALHOST,
        1,
        2,
    );
    let (client, _) =
        whole(&v2(Command::Proxy, v6, &[]), Mode::Any).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        client.ip(),
        "2001:db8::7"
            .parse::<IpAddr>()
            .unwrap_or_else(|e| panic!("{e}"))
    );

    // LOCAL (health checks) and AF_UNIX keep the peer.
    let (client, info) =
        whole(&v2(Command::Local, addresses, &[]), Mode::Any).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client, peer());
    assert!(info.local);
    let unix = v2::Unix::new([1; 108], [2; 108]);
    let (client, _) =
        whole(&v2(Command::Proxy, unix, &[]), Mode::Any).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client, peer());
}

#[test]
fn bad_headers_are_refused_not_panicked_on() {
    let refused = |bytes: &[u8], mode: Mode| match frame(bytes, mode) {
        Ok(Frame::Complete(n)) => parse(&bytes[..n], peer()).is_err(),
        Ok(Frame::Incomplete(_)) => false,
        Err(_) => true,
    };
    // Not a header at all, from a balancer that must send one.
    assert!(refused(b"GET / HTTP/1.1\r\n", Mode::Any));
    assert!(refused(b"\x16\x03\x01", Mode::Any));
    // The wrong version for the listener.
    assert!(refused(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Mode::V2));
    let good_v2 = v2(
        Command::Proxy,
        IPv4::new([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
        &[],
    );
    assert!(refused(&good_v2, Mode::V1));
    // Malformed v1.
    for bad in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
        b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    ] {
        assert!(
            refused(bad, Mode::Any),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Too long: 107 bytes without a line end.
    assert!(refused(
        &[b"PROXY ".as_slice(), &[b'A'; 120]].concat(),
        Mode::V1
    ));
    // v2: bad version nibble, bad TLV, declared length over the limit.
    let mut bad = good_v2.clone();
    bad[12] = 0x11;
    assert!(refused(&bad, Mode::Any));
    let mut tlv = v2(
        Command::Proxy,
        IPv4::new([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
        &[(0x05, &[0; 129])],
    );
    assert!(refused(&tlv, Mode::Any), "unique id > 128 bytes");
    tlv = good_v2.clone();
    tlv.extend_from_slice(&[0x01, 0, 9, b'x']);
    let len = u16::try_from(tlv.len() - 16).unwrap_or(0).to_be_bytes();
    tlv[14..16].copy_from_slice(&len);
    assert!(refused(&tlv, Mode::Any), "TLV longer than the header");
    let mut long = good_v2[..16].to_vec();
    long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(refused(&long, Mode::Any));
    // Prefixes of good headers are incomplete, never errors.
    for n in 1..good_v2.len() {
        assert!(
            matches!(frame(&good_v2[..n], Mode::Any), Ok(Frame::Incomplete(_))),
            "{n}"
        );
    }
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let client = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (server, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
    (client, server)
}

/// Over a socket, sent in pieces: the header is consumed exactly and what follows stays.
#[tokio::test]
async fn reads_exactly_the_header_in_pieces() {
    for header in [
        b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(
            Command::Proxy,
            IPv4::new([203, 0, 113, 9], [10, 0, 0, 1], 51234, 443),
            &[(0x02, b"a.example")],
        ),
    ] {
        let (mut client, mut server) = pair().await;
        let sender = tokio::spawn(async move {
            for chunk in header.chunks(7) {
                client
                    .write_all(chunk)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client
                .write_all(b"GET / HTTP/1.1\r\n")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            client
        });
        let (client_addr, _) = receive(&mut server, peer(), Mode::Any)
            .await
            .unwrap_or_else(|| panic!("refused"));
        assert_ne!(client_addr.port(), 0);
        let _client = sender.await.unwrap_or_else(|e| panic!("{e}"));
        let mut rest = [0u8; 16];
        server
            .read_exact(&mut rest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&rest, b"GET / HTTP/1.1\r\n");
    }
}

#[tokio::test]
async fn a_slow_or_truncated_header_is_refused_and_counted() {
    let (mut client, mut server) = pair().await;
    client
        .write_all(b"PROXY TCP4 1.2.")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = refused_headers();
    let slow = receive_within(&mut server, peer(), Mode::Any, Duration::from_millis(200));
    assert!(slow.await.is_none(), "slow");
    assert!(refused_headers() > before);
    let (mut client, mut server) = pair().await;
    client
        .write_all(b"PROXY TCP4 1.2.")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(client);
    // Closed inside the header: refused at once, not at the deadline.
    let truncated = receive_within(&mut server, peer(), Mode::Any, Duration::from_secs(30));
    let started = std::time::Instant::now();
    assert!(truncated.await.is_none(), "truncated");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn configuration_names_the_flag_in_errors() {
    let from: Cidrs = "127.0.0.1/32".parse().unwrap_or_default();
    let error = set_proxy_protocol(ProxyProtocol {
        http: Mode::V1,
        ..ProxyProtocol::default()
    });
    assert!(error.is_err_and(|e| e.contains("--proxy-protocol-from")));
    let error = set_proxy_protocol(ProxyProtocol {
        from,
        ..ProxyProtocol::default()
    });
    assert!(error.is_err_and(|e| e.contains("--proxy-protocol")));
    assert_eq!("any".parse(), Ok(Mode::Any));
    assert!("v3".parse::<Mode>().is_err());
    assert!(is_signature(b"PROXY TCP4"));
    assert!(is_signature(b"\r\n\r\n\0\r\nQUIT\n"));
    assert!(!is_signature(b"PRI * HTTP/2.0"));
    assert!(!is_signature(b"\r\nGET / HTTP/1.1"));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Frames then parses `bytes` the way [`read_header`] and [`receive`] do; `Ok(None)`
    /// while incomplete. The property: any input gives an answer, never a panic, and a
    /// complete frame never claims more bytes than it was given.
    fn accept(bytes: &[u8], mode: Mode) -> Result<Option<SocketAddr>, Refusal> {
        match frame(bytes, mode)? {
            Frame::Complete(n) => {
                assert!(n <= bytes.len());
                parse(&bytes[..n], peer()).map(|(client, _)| Some(client))
            }
            Frame::Incomplete(at_least) => {
                assert!(
                    at_least > bytes.len(),
                    "incomplete means more bytes are needed"
                );
                Ok(None)
            }
        }
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::V1), Just(Mode::V2), Just(Mode::Any)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), mode in mode()) {
            let _ = accept(&bytes, mode);
        }

        /// Valid-looking prefixes with random tails: the signatures are what random bytes
        /// rarely reach on their own.
        #[test]
        fn signature_then_noise_never_panics(
            v2 in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
            mode in mode(),
        ) {
            let mut bytes = if v2 { V2_SIGNATURE.to_vec() } else { V1_PREFIX.to_vec() };
            bytes.extend_from_slice(&tail);
            let _ = accept(&bytes, mode);
        }

        /// Every v2 header ppp can build from addresses and TLVs parses back to its source.
        #[test]
        fn built_headers_round_trip(
            src in any::<[u8; 4]>(),
            port in any::<u16>(),
            tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..4),
        ) {
            // Known TLV kinds have constraints of their own (UTF-8 authority, SSL layout);
            // the rest are skipped by the parser.
            let tlvs: Vec<(u8, &[u8])> = tlvs
                .iter()
                .filter(|(kind, _)| ![0x01, 0x02, 0x05, 0x20].contains(kind))
                .map(|(kind, value)| (*kind, value.as_slice()))
                .collect();
            let bytes = v2(Command::Proxy, IPv4::new(src, [10, 0, 0, 1], port, 443), &tlvs);
            let client = accept(&bytes, Mode::Any).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(client, Some(SocketAddr::from((src, port))));
        }
    }
}
