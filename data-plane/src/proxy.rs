//! The request path. Every request goes through four phases, in this order:
//!
//! 1. **Host → proxy**: Host (or `:authority`) is normalised and looked up.
//! 2. **Proxy policy**: [`policy::admit`] runs for every request to that proxy.
//! 3. **Route → upstream**: only reachable through the admission from phase 2, so a
//!    route cannot bypass the proxy's protection.
//! 4. **Forward**: rewrite, send upstream, stream the answer back.
//!
//! Errors from any phase are turned into responses in exactly one place
//! ([`ProxyError::into_response`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;

use self::host::RequestHost;
use crate::body::ProxyBody;
use crate::policy;
use crate::report::Report;
use crate::store::ConfigStore;

mod error;
mod forward;
mod headers;
mod host;
mod upgrade;

pub use self::error::ProxyError;

/// Facts about the client connection, computed once per connection.
#[derive(Debug)]
pub struct ConnInfo {
    peer: SocketAddr,
    /// The peer IP as a header value for `X-Forwarded-For` / `X-Real-IP`.
    peer_ip: HeaderValue,
}

/// Handles one request end to end. Never fails: errors become short plain responses.
pub async fn handle<B>(store: &ConfigStore, conn: &ConnInfo, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    match proxy_request(store, conn, req).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn proxy_request<B>(
    store: &ConfigStore,
    conn: &ConnInfo,
    req: Request<B>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let snapshot = store.load().ok_or(ProxyError::NotReady)?;
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }

    // Phase 1: host → proxy.
    let host = RequestHost::from_request(&req)?;
    let proxy = snapshot
        .http_hosts()
        .lookup_normalized(host.name())
        .ok_or_else(|| ProxyError::unknown_host(host.name()))?;

    // Phase 2: proxy-level policy. Runs for every request to this proxy; routing is
    // only reachable through `admitted`.
    let admitted = policy::admit(proxy, &req).map_err(ProxyError::Rejected)?;

    // Phase 3: route → upstream.
    let selected = admitted.select(req.method(), req.uri().path());

    // Phase 4: forward.
    forward::forward(selected.target, conn, &host, req)
        .await
        .inspect_err(|error| {
            tracing::warn!(
                proxy = proxy.hostname(),
                route = selected.route.map(|r| r.id()),
                upstream = %selected.target.target(),
                error = %Report(error),
                "proxying failed"
            );
        })
}

// === impl ConnInfo ===

impl ConnInfo {
    /// Describes a connection from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        let peer_ip = HeaderValue::try_from(ip).unwrap_or(HeaderValue::from_static("unknown"));
        Self { peer, peer_ip }
    }

    /// The TCP peer.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

#[cfg(test)]
mod tests;
