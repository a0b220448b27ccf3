//! Listeners: plain HTTP (HTTP/1.1 with upgrades, and h2c prior knowledge on one port)
//! and HTTPS ([`serve_https`]). Each connection runs on its own task (served by the
//! private `conn` module) and every request goes through [`crate::proxy::handle`] with
//! the listener it arrived on. The binary runs one pair of listeners per serving thread
//! ([`workers`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::proxy::{ConnInfo, Listener, PublicPorts};
use crate::store::ConfigStore;

mod clients;
mod conn;
mod https;
pub mod workers;

pub use self::clients::{limit_per_client, refused_connections};

pub use self::conn::parked_connections;
pub use self::https::{HANDSHAKE_TIMEOUT, serve_https};

/// Slow-loris bound: time a client has to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
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
        let Some(slot) = clients::admit(peer.ip()) else {
            continue;
        };
        let info = ConnInfo::new(
            peer,
            Listener::Http {
                https_port: ports.https,
            },
        )
        .with_public_port(ports.http);
        let conn = Arc::new(Connection {
            store: store.clone(),
            info,
            _slot: slot,
        });
        tokio::spawn(conn::serve(stream, conn, conn::Protocols::Detect));
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
