//! The HTTPS listener: TLS handshake (certificate chosen per SNI by
//! [`SniResolver`]), then the same request path as plain HTTP
//! with [`Listener::Https`].
//!
//! The HTTP version follows ALPN: `h2` → HTTP/2 only, `http/1.1` → HTTP/1.1 (with
//! upgrades, the fast path and parking while idle, like plain HTTP/1.1), no ALPN →
//! detected from the preface. An `acme-tls/1` connection is a TLS-ALPN-01 validation: it is closed right
//! after the handshake (RFC 8737 §3).

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::conn::{self, Protocols};
use super::sni::SniResolver;
use super::{Admission, Connection, accept};
use crate::metrics;
use crate::request::Listener;
use crate::store::ConfigStore;
use crate::tls::{ACME_TLS_ALPN, ALPN_H2, ALPN_HTTP11, provider};

/// Time a client has to complete the TLS handshake, so idle sockets cannot pile up.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for sending `close_notify` after a TLS-ALPN-01 handshake.
const ACME_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTPS listener's configuration: TLS 1.3 and 1.2, no client authentication,
/// certificates from [`SniResolver`] over `store`.
///
/// ALPN lists `acme-tls/1` first. rustls picks the first of *its* protocols that the
/// client offered, so a client offering `acme-tls/1` always negotiates it, which is
/// exactly when the resolver hands out a challenge certificate; the listener closes such
/// connections after the handshake. Browsers never offer it and get `h2` or `http/1.1`.
pub fn tls_config(store: Arc<ConfigStore>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(store)));
    config.alpn_protocols = vec![
        ACME_TLS_ALPN.to_vec(),
        ALPN_H2.to_vec(),
        ALPN_HTTP11.to_vec(),
    ];
    Ok(Arc::new(config))
}

/// Accepts HTTPS connections forever. `tls` comes from
/// [`tls_config`] over the same `store`, so
/// certificates follow the served snapshot. `public_port` is how clients reach this
/// listener ([`PublicPorts::https`](crate::request::PublicPorts)).
pub async fn serve_https(
    listener: TcpListener,
    store: Arc<ConfigStore>,
    tls: Arc<ServerConfig>,
    public_port: u16,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = accept(&listener).await;
        let Some(admission) = Admission::new(true, peer) else {
            continue;
        };
        let (acceptor, store) = (acceptor.clone(), store.clone());
        tokio::spawn(async move {
            // The PROXY header, if due, comes before TLS.
            let Some((stream, info, slot)) = admission.complete(stream, Listener::Https).await
            else {
                return;
            };
            let Some(tls) = handshake(&acceptor, stream).await else {
                return;
            };
            let protocols = match tls.get_ref().1.alpn_protocol() {
                Some(ACME_TLS_ALPN) => {
                    close_acme(tls).await;
                    return;
                }
                Some(ALPN_H2) => Protocols::Http2,
                Some(ALPN_HTTP11) => Protocols::Http1,
                _ => Protocols::Detect,
            };
            let conn = Arc::new(Connection {
                store,
                info: info.with_public_port(public_port),
                _slot: slot,
            });
            // Boxed: this task is as large as its largest state for its whole life, and
            // the 1.2 KiB TLS stream would otherwise be copied into every future it
            // passes through.
            conn::serve(Box::new(tls), conn, protocols).await;
        });
    }
}

async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    let peer = stream.peer_addr().ok();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            metrics::tls_handshake(Ok(()));
            Some(tls)
        }
        Ok(Err(error)) => {
            metrics::tls_handshake(Err(false));
            tracing::debug!(?peer, %error, "TLS handshake failed");
            None
        }
        Err(_elapsed) => {
            metrics::tls_handshake(Err(true));
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}

/// Ends a TLS-ALPN-01 validation connection: `close_notify`, then close. No HTTP is
/// ever served on it.
async fn close_acme(mut tls: TlsStream<TcpStream>) {
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    tracing::info!(?sni, "answered ACME TLS-ALPN-01 validation");
    let _ = tokio::time::timeout(ACME_CLOSE_TIMEOUT, tls.shutdown()).await;
}
