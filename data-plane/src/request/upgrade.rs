//! WebSocket (HTTP/1.1 `Upgrade: websocket`) relaying.
//!
//! The upgrade request is forwarded with its `Connection: upgrade` / `Upgrade` headers.
//! If the upstream answers 101, the client gets the 101 and a detached task copies bytes
//! both ways until either side closes. This is the only upstream work that outlives the
//! request future, because after a 101 there is no request future any more. Other upgrade
//! protocols (e.g. `h2c`) are not relayed; their headers are stripped as hop-by-hop.
//! When the relay ends it reports the bytes copied each way through [`RelayClosed`] (in
//! the 101 response's extensions), so the access-log record is written at the close.

use std::sync::{Arc, Mutex, PoisonError};

use http::header::{CONNECTION, UPGRADE};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::headers::has_token;

/// Whether `req` asks to become a WebSocket.
pub(crate) fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && has_token(req.headers(), CONNECTION, "upgrade")
        && has_token(req.headers(), UPGRADE, "websocket")
}

/// Resolves to the bytes copied (to the upstream, to the client) once the relay of an
/// upgraded connection ends (`Err` if it never started). `Clone` as response extensions
/// must be; only the first [`RelayClosed::take`] gets the receiver.
#[derive(Clone, Debug)]
pub(crate) struct RelayClosed(Arc<Mutex<Option<OnClose>>>);

/// Bytes copied (to the upstream, to the client), sent when the relay ends.
pub(crate) type OnClose = oneshot::Receiver<(u64, u64)>;

impl RelayClosed {
    pub(crate) fn take(&self) -> Option<OnClose> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Relays the two upgraded connections once both handshakes complete.
pub(crate) fn spawn_relay(client: OnUpgrade, upstream: OnUpgrade) -> RelayClosed {
    let (closed, on_close) = oneshot::channel();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((to_upstream, to_client)) => {
                tracing::debug!(to_upstream, to_client, "upgraded connection closed");
                let _ = closed.send((to_upstream, to_client));
            }
            Err(error) => tracing::debug!(%error, "upgraded connection failed"),
        }
    });
    RelayClosed(Arc::new(Mutex::new(Some(on_close))))
}
