//! Sending the PROXY protocol to upstreams (a proxy's `upstream_proxy_protocol`), so
//! backends such as nginx (`listen … proxy_protocol`) or HAProxy (`accept-proxy`) see the
//! client's address.
//!
//! A PROXY header describes the whole TCP connection it opens, so such a connection must
//! only ever carry requests of that one client. The data plane does not pool them: each
//! request to such a proxy opens its own upstream connection, which starts with the
//! header for the request's client and is closed after the response (or, for a WebSocket,
//! when the tunnel ends). An attacker therefore cannot have its request sent on a
//! connection labelled with another client's address, nor the reverse. The price is a TCP
//! (and TLS) handshake per request to such upstreams; connections still count against
//! `--max-upstream-connections`.
//!
//! The header's source is the request's client address (the PROXY header this data plane
//! received, a trusted forwarder's `X-Forwarded-For` entry, or the TCP peer; its port is
//! 0 when only the address is known); its destination is the upstream address dialled.
//! Mixed families are sent as IPv6 (IPv4-mapped).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use ppp::v2;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which PROXY protocol version a proxy sends upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SendProxy {
    /// None: pooled keep-alive connections.
    #[default]
    Off,
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// The header to open one upstream connection with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProxySource {
    pub(crate) version: SendProxy,
    /// The request's client.
    pub(crate) client: SocketAddr,
}

/// Dials upstream connections that start with a PROXY header (the pooled connector
/// cannot write before its TLS handshake).
#[derive(Clone)]
pub(crate) struct Direct {
    connect_timeout: Duration,
    tls: TlsConnector,
}

/// The same stream type as the pooled connector's.
pub(crate) type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

impl Direct {
    pub(crate) fn new(connect_timeout: Duration, mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            connect_timeout,
            tls: TlsConnector::from(Arc::new(tls)),
        }
    }

    /// Connects to `origin`, writes `source`'s header, then does TLS for `https://`.
    pub(crate) async fn dial(&self, origin: &Uri, source: ProxySource) -> Result<Io, BoxError> {
        let host = origin.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let https = origin.scheme_str() == Some("https");
        let port = origin.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect = TcpStream::connect((host, port));
        let mut tcp = tokio::time::timeout(self.connect_timeout, connect).await??;
        let _ = tcp.set_nodelay(true);
        let destination = tcp.peer_addr()?;
        tcp.write_all(&header(source, destination)).await?;
        Ok(if https {
            let name = ServerName::try_from(host.to_owned())?;
            let tls = self
                .tls
                .connect(name, TokioIo::new(TokioIo::new(tcp)))
                .await?;
            MaybeHttpsStream::Https(TokioIo::new(tls))
        } else {
            MaybeHttpsStream::Http(TokioIo::new(tcp))
        })
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// The header for a connection from `source.client` to `destination`.
pub(crate) fn header(source: ProxySource, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(source.client, destination);
    match source.version {
        SendProxy::Off => Vec::new(),
        SendProxy::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        SendProxy::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        // Writing into a Vec only fails past 64 KiB; two addresses are 36 bytes.
        .unwrap_or_default(),
    }
}

/// Both addresses in one family: IPv4 when both are (or map to) IPv4, else IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (ia, ib) = (a.ip().to_canonical(), b.ip().to_canonical());
    match (ia, ib) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            (SocketAddr::new(ia, a.port()), SocketAddr::new(ib, b.port()))
        }
        _ => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
                v6 => v6,
            };
            (
                SocketAddr::new(v6(ia), a.port()),
                SocketAddr::new(v6(ib), b.port()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn headers_carry_the_client_and_parse_back() {
        let source = |version| ProxySource {
            version,
            client: addr("203.0.113.9:5555"),
        };
        let v1 = header(source(SendProxy::V1), addr("127.0.0.1:8080"));
        assert_eq!(v1, b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 8080\r\n");
        let v2 = header(source(SendProxy::V2), addr("127.0.0.1:8080"));
        let parsed = v2::Header::try_from(v2.as_slice()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            parsed.addresses,
            v2::Addresses::from((addr("203.0.113.9:5555"), addr("127.0.0.1:8080")))
        );
        // Mixed families become IPv6.
        let mixed = ProxySource {
            version: SendProxy::V1,
            client: addr("[2001:db8::1]:1"),
        };
        assert_eq!(
            header(mixed, addr("127.0.0.1:80")),
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 1 80\r\n"
        );
        assert!(
            header(
                ProxySource {
                    version: SendProxy::Off,
                    ..mixed
                },
                addr("127.0.0.1:80")
            )
            .is_empty()
        );
    }
}
