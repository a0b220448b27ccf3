//! Listeners: plain HTTP (HTTP/1.1 with upgrades, and h2c prior knowledge on one port)
//! and HTTPS ([`serve_https`], certificates chosen per handshake by the SNI resolver). Each connection runs on its own task (served by the
//! private `conn` module) and every request goes through [`crate::request::handle`] with
//! the listener it arrived on. The binary runs one pair of listeners per serving thread
//! ([`workers`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::request::{ConnInfo, Listener, PublicPorts};
use crate::store::ConfigStore;

mod clients;
mod conn;
mod https;
mod proxy_protocol;
pub(crate) mod sni;
pub mod workers;

pub use self::clients::limit_per_client;

pub use self::clients::refused_connections;
pub use self::conn::{parked_connections, set_h1_fast_path};
pub use self::https::{serve_https, tls_config};
pub use self::proxy_protocol::{
    Decoded as DecodedProxyHeader, Mode as ProxyProtocolMode, ProxyProtocol,
    decode_header as decode_proxy_header, refused_headers, set_proxy_protocol,
};

/// Slow-loris bound: time a client has to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`set_max_request_header_bytes`]: 64 KiB of request head (HTTP/1.1 request
/// line and headers; the HTTP/2 header list as RFC 9113 counts it). hyper alone would take
/// ~400 KiB of HTTP/1.1 head (its read buffer's limit) but only 16 KiB over HTTP/2; nginx
/// takes 1 KiB + 4 × 8 KiB, Caddy and Go 1 MiB. 64 KiB fits large cookies and JWTs.
pub(crate) const DEFAULT_MAX_REQUEST_HEADER_BYTES: u32 = 64 * 1024;

/// The request-head limit of every connection accepted from now on (see
/// [`set_max_request_header_bytes`]).
static MAX_REQUEST_HEADER_BYTES: AtomicU32 = AtomicU32::new(DEFAULT_MAX_REQUEST_HEADER_BYTES);

/// Sets the largest request head accepted, for the whole process (`--max-request-header-bytes`):
/// a larger HTTP/1.1 head is answered 431 and the connection closed; HTTP/2 peers are
/// told the limit in SETTINGS and a larger header list is answered 431 on its stream.
///
/// Process-wide, not per proxy: the head is read, and the memory spent, before its Host
/// is known. Read once per connection (and per unparked HTTP/1.1 connection), never per
/// request; enforcing it costs hyper a comparison per read of a head.
pub fn set_max_request_header_bytes(bytes: u32) {
    MAX_REQUEST_HEADER_BYTES.store(bytes, Ordering::Relaxed);
}

fn max_request_header_bytes() -> u32 {
    MAX_REQUEST_HEADER_BYTES.load(Ordering::Relaxed)
}

/// Back-off after `accept` fails (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What each request on a connection needs.
struct Connection {
    store: Arc<ConfigStore>,
    info: ConnInfo,
    /// The client address's place among its open connections, held while any task of
    /// this connection lives.
    _slot: clients::ClientSlot,
}

/// Accepts plain-HTTP connections forever and proxies their requests with the current
/// snapshot. `ports.https` is where redirects to HTTPS send clients; `ports.http` is how
/// clients reach this listener.
pub async fn serve_http(listener: TcpListener, store: Arc<ConfigStore>, ports: PublicPorts) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let Some(admission) = Admission::new(false, peer) else {
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let listener = Listener::Http {
                https_port: ports.https,
            };
            let Some((stream, info, slot)) = admission.complete(stream, listener).await else {
                return;
            };
            let conn = Arc::new(Connection {
                store,
                info: info.with_public_port(ports.http),
                _slot: slot,
            });
            conn::serve(stream, conn, conn::Protocols::Detect).await;
        });
    }
}

/// A new connection before its client is known: a balancer that must send a PROXY header
/// (its slot is taken by the client address the header gives), or the client itself.
enum Admission {
    Client(SocketAddr, clients::ClientSlot),
    Balancer(SocketAddr, proxy_protocol::Mode),
}

impl Admission {
    /// `None` when the peer is a client at its connection limit.
    fn new(https: bool, peer: SocketAddr) -> Option<Self> {
        match proxy_protocol::expected(https, peer.ip()) {
            Some(mode) => Some(Self::Balancer(peer, mode)),
            None => clients::admit(peer.ip()).map(|slot| Self::Client(peer, slot)),
        }
    }

    /// In the connection's task: reads the PROXY header if one is due (before TLS), then
    /// admits the client. `None` closes the connection.
    async fn complete(
        self,
        mut stream: TcpStream,
        listener: Listener,
    ) -> Option<(TcpStream, ConnInfo, clients::ClientSlot)> {
        match self {
            Self::Client(peer, slot) => Some((stream, ConnInfo::new(peer, listener), slot)),
            Self::Balancer(peer, mode) => {
                let (client, header) = proxy_protocol::receive(&mut stream, peer, mode).await?;
                let slot = clients::admit(client.ip())?;
                let info = ConnInfo::new(peer, listener).with_proxy_header(client, header);
                Some((stream, info, slot))
            }
        }
    }
}

/// Next accepted TCP connection, with `TCP_NODELAY` set; retries after a pause on errors.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                }
                return (stream, peer);
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}
