//! The plain-HTTP listener: HTTP/1.1 (with upgrades) and HTTP/2 prior knowledge (h2c)
//! on one port, each connection on its own task.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::proxy::{self, ConnInfo};
use crate::store::ConfigStore;

/// Slow-loris bound: time a client has to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Back-off after `accept` fails (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What each request on a connection needs.
struct Connection {
    store: Arc<ConfigStore>,
    info: ConnInfo,
}

/// Accepts connections forever and proxies their requests with the current snapshot.
pub async fn serve_http(listener: TcpListener, store: Arc<ConfigStore>) {
    let builder = Arc::new(builder());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let conn = Arc::new(Connection {
            store: store.clone(),
            info: ConnInfo::new(peer),
        });
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(proxy::handle(&conn.store, &conn.info, req).await) }
            });
            let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = served.await {
                tracing::debug!(%peer, %error, "connection closed with error");
            }
        });
    }
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    builder
}
