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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::STRICT_TRANSPORT_SECURITY;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body::Body;

use self::host::RequestHost;
use crate::auth::Origin;
use crate::body::ProxyBody;
use crate::config::Snapshot;
use crate::metrics::{self, ProxyMetrics};
use crate::path;
use crate::peer::{self, ProxyHeader};
use crate::ratelimit;
use crate::report::Report;
use crate::router::HostTable;
use crate::store::ConfigStore;
use crate::vhost::{self, Admitted, Proxy};

mod error;
mod forward;
pub(crate) mod h1;
mod headers;
mod host;
mod https;
mod observe;
mod request_id;
mod upgrade;

pub(crate) use self::error::ProxyError;
pub(crate) use self::observe::Ending;
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
    /// The client: the TCP peer, or the source a trusted balancer's PROXY header gave.
    /// Every address decision (forwarding headers, rate limits) starts from it.
    client: IpAddr,
    /// The client's port (the PROXY header's source port, or the peer's).
    client_port: u16,
    /// `client` as a header value for `X-Forwarded-For` / `X-Real-IP`.
    client_ip: HeaderValue,
    /// Whether `client` is a trusted forwarder (`--trusted-forwarders`), whose
    /// `X-Forwarded-For` names the real client ([`crate::peer`]).
    forwarder: bool,
    /// What the PROXY header said besides the address, if there was one.
    proxy_header: Option<Box<ProxyHeader>>,
    listener: Listener,
    /// The port clients reach `listener` on.
    public_port: u16,
}

/// Handles one request end to end. Never fails: errors become short plain responses.
///
/// Every response carries the request's id ([`request_id`]); when access logging is on,
/// the phases are observed ([`observe`]) and the record is written when the response
/// body ends. Metrics: the request is counted when its response head is ready (status and
/// duration to the head; a streamed body's end is not waited for), under the proxy that
/// served it, or `unknown` ([`crate::metrics`]).
pub async fn handle<B>(store: &ConfigStore, conn: &ConnInfo, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let (response, ending) = serve(store, conn, req).await;
    ending.wrap(response)
}

/// [`handle`], with the access-log record's [`Ending`] apart from the response, for a
/// caller whose own body wrapper carries it (hyper's service: no second boxed body).
pub(crate) async fn serve<B>(
    store: &ConfigStore,
    conn: &ConnInfo,
    mut req: Request<B>,
) -> (Response<ProxyBody>, Ending)
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let (started, method) = (Instant::now(), metrics::method_class(req.method()));
    let request_id = request_id::take_or_make(req.headers_mut());
    let mut observe = Observe::start(conn, &req, &request_id, started);
    let snapshot = store.load();
    let mut served = None;
    let mut response = match &snapshot {
        Some(snapshot) => phases(snapshot, conn, req, &mut served, &mut observe).await,
        None => ProxyError::NotReady.into_response(),
    };
    served
        .map_or(&**ProxyMetrics::unknown(), Proxy::metrics)
        .request_finished(method, response.status().as_u16(), started.elapsed());
    response
        .headers_mut()
        .insert(request_id::X_REQUEST_ID, request_id);
    let ending = observe.end(&mut response);
    (response, ending)
}

/// The phases of [`handle`] over the served snapshot; sets `served` once the host's proxy
/// is known.
///
/// Plain HTTP: ACME HTTP-01 answers come first (any Host, before host lookup and
/// redirects, so validation works for names not configured yet), then a proxy that
/// redirects answers 308. HTTPS: the proxy's HSTS header is set on every response of a
/// known host, errors included.
async fn phases<'s, B>(
    snapshot: &'s Snapshot,
    conn: &ConnInfo,
    mut req: Request<B>,
    served: &mut Option<&'s Proxy>,
    observe: &mut Observe,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
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
    *served = Some(&**proxy);
    observe.proxy(proxy, &host, req.uri().query());
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
    let client = conn.client_of(req.headers());
    if !proxy.allows_client(client.ip) {
        let page = crate::answer::is_page_load(req.method(), req.headers());
        return Err(ProxyError::ClientNotAllowed(
            crate::answer::Rejection::client_not_allowed(page, host.name(), client.ip),
        ));
    }
    let limits = proxy.limits();
    if let Some(limits) = limits {
        limits.check_peer(client.ip).map_err(ProxyError::Limited)?;
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
    // For the request's span, when tracing is on (a no-op otherwise).
    crate::trace::note_route(&req, admitted.route().map(|r| (r.id(), r.pattern())));
    // Subject/client-keyed rates and the concurrency slot, held until the body ends.
    let caller = admitted
        .claims()
        .map(|c| ratelimit::Caller::new(&c.sub, &c.client_id));
    let permit = match limits.map(|l| l.admitted(client.ip, caller.as_ref())) {
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
    let exchange = match forward::forward(upstream, conn, &client, host, req) {
        Ok(exchange) => exchange,
        Err(error) => return Ok(failed(&admitted, error)),
    };
    observe.request_body(exchange.progress());
    // A statement of its own: the `match` above would otherwise live on beside the
    // exchange it was moved into (temporaries last until the end of their statement).
    let sent = Instant::now();
    let exchanged = exchange.await;
    if exchanged.is_ok() {
        observe.upstream_answered();
    }
    Ok(match exchanged {
        Ok(mut response) => {
            proxy.metrics().upstream_answered(sent.elapsed());
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
    if let Some(failure) = error.upstream_failure() {
        metrics::upstream_failed(failure);
    }
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

/// The client address one request is treated as coming from.
#[derive(Debug)]
pub(crate) struct Client<'c> {
    pub(crate) ip: IpAddr,
    /// `ip` for `X-Forwarded-For` / `X-Real-IP`.
    pub(crate) header: Cow<'c, HeaderValue>,
}

fn ip_header(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

// === impl ConnInfo ===

impl ConnInfo {
    /// Describes a connection from `peer` accepted on `listener`, reached by clients on
    /// the scheme's default port (80 or 443) unless [`Self::with_public_port`] says
    /// otherwise.
    pub fn new(peer: SocketAddr, listener: Listener) -> Self {
        let client = peer.ip().to_canonical();
        let public_port = match listener {
            Listener::Http { .. } => 80,
            Listener::Https => 443,
        };
        Self {
            peer,
            client,
            client_port: peer.port(),
            client_ip: ip_header(client),
            forwarder: peer::trusted_forwarders().contains(client),
            proxy_header: None,
            listener,
            public_port,
        }
    }

    /// The client address and header a trusted balancer's PROXY header gave.
    pub(crate) fn with_proxy_header(
        mut self,
        client: SocketAddr,
        header: Box<ProxyHeader>,
    ) -> Self {
        self.client = client.ip().to_canonical();
        self.client_port = client.port();
        self.client_ip = ip_header(self.client);
        self.forwarder = peer::trusted_forwarders().contains(self.client);
        self.proxy_header = Some(header);
        self
    }

    /// The client address (the PROXY header's source, or the TCP peer).
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// The port of `ip` as this connection knows it: the client's port when `ip` is the
    /// connection's client, else 0 (an address from `X-Forwarded-For`).
    pub(crate) fn client_port_for(&self, ip: IpAddr) -> u16 {
        if ip == self.client {
            self.client_port
        } else {
            0
        }
    }

    /// The PROXY header's TLVs (ALPN, authority, unique id, SSL), if one was received.
    pub fn proxy_header(&self) -> Option<&ProxyHeader> {
        self.proxy_header.as_deref()
    }

    /// The client of one request: from a trusted forwarder's `X-Forwarded-For` (read
    /// before the policy strips it), else the connection's. Allocates only in the first
    /// case.
    pub(crate) fn client_of(&self, headers: &http::HeaderMap) -> Client<'_> {
        if self.forwarder
            && let Some(ip) = peer::client_from_xff(headers, peer::trusted_forwarders())
        {
            return Client {
                ip,
                header: Cow::Owned(ip_header(ip)),
            };
        }
        Client {
            ip: self.client,
            header: Cow::Borrowed(&self.client_ip),
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
