//! The request path. Every request goes through these phases, in this order:
//!
//! 0. **Request target**: the path is normalised once ([`crate::path`]; ambiguous paths
//!    are refused with 400) and every later phase, and the upstream, see only that form; a
//!    request that has looped back to this process is refused with 508. Then the
//!    listener: on plain HTTP, ACME HTTP-01 answers and HTTPS redirects (see [`handle`]);
//!    on HTTPS, HSTS is added to the answer.
//! 1. **Host → proxy**: Host (or `:authority`) is normalised and looked up in the
//!    listener's host table.
//! 2. **Proxy policy**: [`vhost::admit`] runs for every request to that proxy. It removes
//!    the identity and forwarding headers the client sent (protected or not), and looks
//!    up the route itself, so the route's extra scopes or admin-set `public` flag count.
//! 3. **Route → upstream**: only reachable through the admission from phase 2, so a
//!    route cannot bypass the proxy's protection.
//! 4. **Forward**: rewrite, send upstream, stream the answer back.
//!
//! Errors from any phase are turned into responses in exactly one place
//! ([`ProxyError::into_response`]).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::STRICT_TRANSPORT_SECURITY;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body::Body;

use self::host::RequestHost;
use crate::auth::Origin;
use crate::body::ProxyBody;
use crate::path;
use crate::ratelimit;
use crate::report::Report;
use crate::router::HostTable;
use crate::store::ConfigStore;
use crate::vhost::{self, Admitted, Proxy};

mod error;
mod forward;
mod headers;
mod host;
mod https;
mod observe;
mod request_id;
mod upgrade;

pub(crate) use self::error::ProxyError;
pub use self::observe::Observation;
use self::observe::Observe;

/// Which listener a connection arrived on; decides the host table, ACME HTTP-01,
/// redirects, HSTS and `X-Forwarded-Proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Plain HTTP. Redirects to HTTPS put `https_port` in `Location` unless it is 443.
    Http {
        /// The port clients reach the HTTPS listener on.
        https_port: u16,
    },
    /// HTTPS: TLS terminated by this data plane.
    Https,
}

/// The ports clients reach this data plane's listeners on: the listen ports unless a
/// load balancer or container runtime publishes them under others. `redirect`-mode login
/// callbacks are built from these, never from the port in the client's Host header, and
/// the control plane is told them, so the authorization server accepts exactly the
/// callback URLs data planes send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicPorts {
    /// Public port of the plain-HTTP listener.
    pub http: u16,
    /// Public port of the HTTPS listener (also where HTTP→HTTPS redirects point).
    pub https: u16,
}

impl Default for PublicPorts {
    /// The scheme defaults, 80 and 443: listeners reached without a port in the URL.
    fn default() -> Self {
        Self {
            http: 80,
            https: 443,
        }
    }
}

/// Facts about the client connection, computed once per connection.
#[derive(Debug)]
pub struct ConnInfo {
    peer: SocketAddr,
    /// The peer IP as a header value for `X-Forwarded-For` / `X-Real-IP`.
    peer_ip: HeaderValue,
    listener: Listener,
    /// The port clients reach `listener` on.
    public_port: u16,
}

/// Handles one request end to end. Never fails: errors become short plain responses.
///
/// Plain HTTP: ACME HTTP-01 answers come first (any Host, before host lookup and
/// redirects, so validation works for names not configured yet), then a proxy that
/// redirects answers 308. HTTPS: the proxy's HSTS header is set on every response of a
/// known host, errors included.
///
/// Every response carries the request's id ([`request_id`]); when access logging is on,
/// the phases are observed ([`observe`]) and the record is written when the response
/// body ends.
pub async fn handle<B>(
    store: &ConfigStore,
    conn: &ConnInfo,
    mut req: Request<B>,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let request_id = request_id::take_or_make(req.headers_mut());
    let mut observe = Observe::start(conn, &req, &request_id);
    let mut response = phases(store, conn, req, &mut observe).await;
    response
        .headers_mut()
        .insert(request_id::X_REQUEST_ID, request_id);
    observe.finish(response)
}

async fn phases<B>(
    store: &ConfigStore,
    conn: &ConnInfo,
    mut req: Request<B>,
    observe: &mut Observe,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let Some(snapshot) = store.load() else {
        return ProxyError::NotReady.into_response();
    };
    // Phase 0: one view of the request target for every decision and the upstream.
    if let Err(error) = normalize_path(&mut req).and_then(|()| headers::check_loop(req.headers())) {
        return error.into_response();
    }
    observe.path(req.uri().path());
    let hosts = match conn.listener {
        Listener::Http { .. } => {
            if let Some(answer) = https::acme_http01(snapshot.acme(), &req) {
                return answer;
            }
            snapshot.http_hosts()
        }
        Listener::Https => snapshot.https_hosts(),
    };
    // Phase 1: host → proxy.
    let (proxy, host) = match find_proxy(hosts, &req) {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    observe.proxy(proxy, &host);
    let mut response = match conn.listener {
        Listener::Http { https_port } if proxy.https().redirects_to_https() => {
            return https::redirect(&host, req.uri(), https_port);
        }
        _ => proxy_request(proxy, conn, &host, req, observe)
            .await
            .unwrap_or_else(ProxyError::into_response),
    };
    if let (Listener::Https, Some(hsts)) = (conn.listener, proxy.https().hsts()) {
        response
            .headers_mut()
            .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

fn find_proxy<'s, B>(
    hosts: &'s HostTable<Arc<Proxy>>,
    req: &Request<B>,
) -> Result<(&'s Arc<Proxy>, RequestHost), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }
    let host = RequestHost::from_request(req)?;
    let proxy = hosts
        .lookup_normalized(host.name())
        .ok_or_else(|| ProxyError::unknown_host(host.name()))?;
    Ok((proxy, host))
}

/// Replaces the request's path with its normal form ([`path::normalize`]), keeping the
/// query as sent. Allocates only when the path changes.
fn normalize_path<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    let normal = match path::normalize(req.uri().path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(normal) => normal,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    let target = match parts.path_and_query.as_ref().and_then(PathAndQuery::query) {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    parts.path_and_query =
        Some(PathAndQuery::try_from(target).map_err(|e| ProxyError::UpstreamUri(e.into()))?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|e| ProxyError::UpstreamUri(e.into()))?;
    Ok(())
}

async fn proxy_request<B>(
    proxy: &Proxy,
    conn: &ConnInfo,
    host: &RequestHost,
    mut req: Request<B>,
    observe: &mut Observe,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    // Phase 2: proxy-level policy (with the matching route's settings). Runs for every
    // request to this proxy; the route's upstream is only reachable through `admitted`.
    // Address-keyed rate limits count before any token is verified (crate::ratelimit).
    let limits = proxy.limits();
    if let Some(limits) = limits {
        limits
            .check_peer(conn.peer.ip())
            .map_err(ProxyError::Limited)?;
    }
    let secure = matches!(conn.listener, Listener::Https);
    let origin = Origin::new(secure, host.raw().to_str().unwrap_or_default())
        .with_public_port(conn.public_port);
    if let Some(answer) = vhost::intercept(proxy, &origin, &req).await {
        return Ok(answer);
    }
    let admitted = vhost::admit(proxy, &origin, &mut req)
        .inspect_err(|rejection| observe.refused(rejection))
        .map_err(ProxyError::Rejected)?;
    observe.admitted(&admitted);
    // Subject/client-keyed rates and the concurrency slot, held until the body ends.
    let caller = admitted
        .claims()
        .map(|c| ratelimit::Caller::new(&c.sub, &c.client_id));
    let permit = match limits.map(|l| l.admitted(conn.peer.ip(), caller.as_ref())) {
        Some(Err(limited)) => {
            // Not logged: a flood must not turn into a log line per request.
            let mut response = limited.into_response();
            admitted.expose(&mut response);
            return Ok(response);
        }
        Some(Ok(permit)) => permit,
        None => None,
    };
    // Phase 3: route → upstream.
    let upstream = admitted.upstream();
    observe.upstream(upstream);
    // Phase 4: forward.
    let exchange = match forward::forward(upstream, conn, host, req) {
        Ok(exchange) => exchange,
        Err(error) => return Ok(failed(&admitted, error)),
    };
    observe.request_body(exchange.progress());
    // A statement of its own: the `match` above would otherwise live on beside the
    // exchange it was moved into (temporaries last until the end of their statement).
    let exchanged = exchange.await;
    if exchanged.is_ok() {
        observe.upstream_answered();
    }
    Ok(match exchanged {
        Ok(mut response) => {
            admitted.expose(&mut response);
            ratelimit::hold(response, permit)
        }
        Err(error) => failed(&admitted, error),
    })
}

/// The answer to a request that could not be forwarded; logged, since only the client
/// sees the status: as the upstream's failure (warn), or as the client's fault (info: a
/// body too large, malformed or abandoned says nothing about the upstream's health).
/// Browser clients can read these answers too.
fn failed(admitted: &Admitted<'_>, error: ProxyError) -> Response<ProxyBody> {
    let upstream = admitted.upstream();
    if error.is_client_fault() {
        tracing::info!(
            proxy = admitted.proxy().hostname(),
            route = admitted.route().map(|r| r.id()),
            error = %Report(&error),
            "request refused: the client's fault"
        );
    } else {
        tracing::warn!(
            proxy = admitted.proxy().hostname(),
            route = admitted.route().map(|r| r.id()),
            upstream = %upstream.target(),
            error = %Report(&error),
            "proxying failed"
        );
    }
    let mut response = error.into_response();
    admitted.expose(&mut response);
    response
}

// === impl ConnInfo ===

impl ConnInfo {
    /// Describes a connection from `peer` accepted on `listener`, reached by clients on
    /// the scheme's default port (80 or 443) unless [`Self::with_public_port`] says
    /// otherwise.
    pub fn new(peer: SocketAddr, listener: Listener) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        let peer_ip = HeaderValue::try_from(ip).unwrap_or(HeaderValue::from_static("unknown"));
        let public_port = match listener {
            Listener::Http { .. } => 80,
            Listener::Https => 443,
        };
        Self {
            peer,
            peer_ip,
            listener,
            public_port,
        }
    }

    /// The port clients reach the listener on (see [`PublicPorts`]).
    pub(crate) fn with_public_port(mut self, port: u16) -> Self {
        self.public_port = port;
        self
    }

    /// The TCP peer.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The listener the connection arrived on.
    pub fn listener(&self) -> Listener {
        self.listener
    }
}

#[cfg(test)]
mod tests;
