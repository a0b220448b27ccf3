//! Keep-alive HTTP/1.1 connections to upstream origins.
//!
//! Replaces hyper-util's legacy pooled `Client` on the request path. Per request that
//! client hashed the pool key under its mutex, boxed the request future, and spawned a
//! task that put the connection back once the response body had been read (see
//! bench/README.md). Here an origin's [`Pool`] is found while the snapshot compiles and
//! held by the [`super::Upstream`]; a request pops an idle connection (one uncontended
//! lock), and the connection goes back when its response body ends ([`PooledBody`]).
//!
//! Kept from the legacy client: connections come from the same connector (connect
//! timeout, `TCP_NODELAY`, TCP keep-alive, rustls for `https://`), connections idle for
//! longer than [`POOL_IDLE_TIMEOUT`] are not reused, and a request that fails on a reused
//! connection before any of it was written (the upstream closed the idle connection
//! meanwhile) is retried on another one. Unlike the legacy client there is no reaper
//! timer: an expired idle connection is closed when its worker's list next lends or takes
//! back a connection (or when the upstream closes it), so a worker that sees no traffic to
//! an origin keeps its last idle connections there open.
//!
//! Open connections per origin are bounded ([`limit_connections_per_origin`], like Envoy's
//! default circuit breaker of 1,024 per cluster): past the bound a request that finds no idle
//! connection, on its worker's list or then on any other's, fails at once with
//! [`ClientError::Saturated`] (503) instead of taking more descriptors, so one busy or
//! looping origin cannot starve every other proxy. The bound is the concurrency cap of
//! [`crate::ratelimit`] ([`ConcurrencyLimit`]), one per origin, touched when a connection
//! opens and closes, never per request.
//!
//! Idle connections are kept per serving worker ([`crate::worker`]), like nginx's
//! per-worker upstream keep-alive caches: a connection is driven by the runtime of the
//! worker that opened it, so reusing it from the same worker wakes no other thread. The
//! price is up to one set of idle connections per worker and origin.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpStream;
use tower_service::Service as _;

use super::proxy_header::{Direct, ProxySource};
use crate::body::ForwardBody;
use crate::ratelimit::{ConcurrencyLimit, Permit};
use crate::worker;

/// Idle connections older than this are closed instead of reused.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Most open connections per origin (per data plane process); 0 = no bound. The binary
/// sets its flag's value at start.
static MAX_PER_ORIGIN: AtomicU32 = AtomicU32::new(0);

/// Sets the most connections this process keeps open to one upstream origin; 0 = no bound.
/// Applies to origins first used after the call (the binary calls it before any).
pub fn limit_connections_per_origin(max: u32) {
    MAX_PER_ORIGIN.store(max, Ordering::Relaxed);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Sender = http1::SendRequest<ForwardBody>;

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// TCP connect (or its timeout) or the TLS handshake failed.
    #[error("cannot connect to the upstream")]
    Connect(#[source] BoxError),
    /// The HTTP/1.1 connection could not be set up.
    #[error("upstream HTTP/1.1 handshake failed")]
    Handshake(#[source] hyper::Error),
    /// Sending the request or reading the response head failed.
    #[error("upstream exchange failed")]
    Exchange(#[source] hyper::Error),
    /// The origin already has as many open connections as allowed, none of them idle.
    #[error("too many open connections to the upstream")]
    Saturated,
    /// Writing the request or reading the response failed (the HTTP/1.1 fast path, which
    /// drives bare connections).
    #[error("upstream exchange failed")]
    Io(#[source] std::io::Error),
    /// The response broke HTTP/1.1 framing, or used a form the fast path refuses (the
    /// HTTP/1.1 fast path).
    #[error("invalid upstream response: {0}")]
    Malformed(&'static str),
}

/// The pools of one connector (one connect timeout), by origin.
pub(crate) struct Client {
    connector: HttpsConnector<HttpConnector>,
    /// For connections that start with a PROXY header (dialled here, not by `connector`).
    direct: Direct,
    pools: Mutex<HashMap<(Scheme, Authority), Weak<Pool>>>,
}

/// Idle connections to one origin.
pub(crate) struct Pool {
    /// `scheme://authority`, what the connector dials.
    origin: Uri,
    connector: HttpsConnector<HttpConnector>,
    direct: Direct,
    /// One list per serving worker, sized when the pool is created (after the listeners
    /// are bound, so by the final worker count; a smaller pool folds workers together,
    /// which is only slower). Oldest at the front; reused from the back (warm first).
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    /// The bound on connections open to this origin (idle or lent): each holds a slot
    /// until its task ends. `None` without a bound.
    connections: Option<Arc<ConcurrencyLimit>>,
    /// Idle bare connections of the HTTP/1.1 fast path ([`RawConn`]), per worker like
    /// `idle`; counted against `connections` like hyper's.
    raw: Box<[Mutex<Vec<RawIdle>>]>,
}

/// A bare keep-alive TCP connection to a plain-HTTP origin, for the HTTP/1.1 fast path
/// (`crate::request::h1`), which writes request heads and reads responses itself
/// instead of going through a hyper connection task. Holds its slot of the origin's
/// connection bound while it lives.
pub(crate) struct RawConn {
    pub(crate) stream: TcpStream,
    /// Whether it served an earlier request (a failed write may then be retried on a
    /// new connection: the upstream closed it while idle).
    pub(crate) reused: bool,
    slot: Option<Permit>,
}

/// What [`Pool::lease_raw`] found for one fast request.
pub(crate) enum Lease {
    /// An idle bare connection, probed open.
    Idle(RawConn),
    /// Room for a new one: its slot of the bound (`None`: no bound).
    New(Option<Permit>),
}

impl RawConn {
    /// Gives up the connection (closed when dropped), keeping its slot of the bound for
    /// the connection that replaces it.
    pub(crate) fn into_slot(mut self) -> Option<Permit> {
        self.slot.take()
    }
}

struct RawIdle {
    conn: RawConn,
    since: Instant,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// A connection lent to one request; back to its pool when the response body ends.
struct Pooled {
    pool: Arc<Pool>,
    sender: Sender,
}

/// The upstream's response body; returns the connection to the pool once it has ended.
pub(crate) struct PooledBody {
    inner: Incoming,
    conn: Option<Pooled>,
}

// === impl ClientError ===

impl ClientError {
    /// Whether no connection could be made (as opposed to a failed exchange).
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

// === impl Client ===

impl Client {
    pub(crate) fn new(connector: HttpsConnector<HttpConnector>, direct: Direct) -> Self {
        Self {
            connector,
            direct,
            pools: Mutex::default(),
        }
    }

    /// The pool for `scheme://authority`, shared with every snapshot still holding it so
    /// keep-alive connections survive config swaps. Compile time only.
    pub(crate) fn pool(&self, scheme: &Scheme, authority: &Authority) -> Arc<Pool> {
        self.pool_bounded(scheme, authority, MAX_PER_ORIGIN.load(Ordering::Relaxed))
    }

    /// [`Self::pool`] with at most `max` open connections (0: no bound) if it is new.
    fn pool_bounded(&self, scheme: &Scheme, authority: &Authority, max: u32) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (scheme.clone(), authority.clone());
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        let pool = Arc::new(Pool {
            origin,
            connector: self.connector.clone(),
            direct: self.direct.clone(),
            idle: (0..worker::count()).map(|_| Mutex::default()).collect(),
            connections: match max {
                0 => None,
                max => Some(Arc::new(ConcurrencyLimit::new(max))),
            },
            raw: (0..worker::count()).map(|_| Mutex::default()).collect(),
        });
        pools.insert(key, Arc::downgrade(&pool));
        pool
    }
}

impl Client {
    /// Forgets origins no snapshot uses any more. Compile time only.
    pub(crate) fn prune(&self) {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|_, pool| pool.strong_count() > 0);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

// === impl Pool ===

impl Pool {
    /// Sends `req` (its URI in origin form or absolute; only path and query are sent) on
    /// an idle connection or a new one.
    ///
    /// Not an `async fn`: its arguments would be stored twice in the state machine (once
    /// as arguments, once as locals); the block below keeps one copy of the request.
    ///
    /// With `proxy_header` (the proxy sends the PROXY protocol) the request goes on a new
    /// connection of its own that starts with the header for that client, and that
    /// connection is closed after the response: never pooled, so no request of another
    /// client can travel under this client's address ([`super::proxy_header`]).
    pub(crate) fn send(
        self: &Arc<Self>,
        mut req: Request<ForwardBody>,
        proxy_header: Option<ProxySource>,
    ) -> impl Future<Output = Result<Response<PooledBody>, ClientError>> + Send + '_ {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = None;
        parts.authority = None;
        *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        async move {
            if let Some(source) = proxy_header {
                let mut sender = Box::pin(self.connect_with_header(source)).await?;
                let response = sender
                    .try_send_request(req)
                    .await
                    .map_err(|e| ClientError::Exchange(e.into_error()))?;
                // `None`: the connection closes once this response is done.
                return Ok(response.map(|inner| PooledBody::new(inner, None)));
            }
            loop {
                let (mut sender, reused) = match self.checkout().await {
                    Some(sender) => (sender, true),
                    // Boxed: the connect future (connector + handshake) is large and rare;
                    // inline it would sit in every connection's idle request slot.
                    None => match Box::pin(self.connect()).await {
                        Ok(sender) => (sender, false),
                        // At the bound, another worker's idle connection still serves,
                        // else the slot of an idle bare one (the fast path's).
                        Err(ClientError::Saturated) => match self.steal().await {
                            Some(sender) => (sender, true),
                            None => match self.evict_raw() {
                                Some(slot) => (Box::pin(self.connect_in(Some(slot))).await?, false),
                                None => return Err(ClientError::Saturated),
                            },
                        },
                        Err(error) => return Err(error),
                    },
                };
                match sender.try_send_request(req).await {
                    Ok(response) => {
                        // An upgraded connection belongs to the relay, never to the pool.
                        let conn =
                            (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| {
                                Pooled {
                                    pool: self.clone(),
                                    sender,
                                }
                            });
                        return Ok(response.map(|inner| PooledBody::new(inner, conn)));
                    }
                    Err(mut error) => match error.take_message() {
                        // Nothing was written: the idle connection died meanwhile.
                        Some(back) if reused => req = back,
                        _ => return Err(ClientError::Exchange(error.into_error())),
                    },
                }
            }
        }
    }

    /// This worker's idle connections.
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle[worker::current() % self.idle.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open.
    async fn checkout(&self) -> Option<Sender> {
        loop {
            let idle = self.idle().pop_back()?;
            if idle.since.elapsed() > POOL_IDLE_TIMEOUT {
                continue;
            }
            let mut sender = idle.sender;
            // Ready once the connection has finished the previous exchange; an error
            // means it closed.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// An idle connection from any worker's list, for when this origin is at its connection
    /// bound: driven by the runtime of the worker that opened it (a cross-thread wake per
    /// exchange), which beats refusing the request. Rare, so it scans every list.
    async fn steal(&self) -> Option<Sender> {
        for list in &self.idle {
            loop {
                let idle = list
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_back();
                let Some(idle) = idle else { break };
                if idle.since.elapsed() > POOL_IDLE_TIMEOUT {
                    continue;
                }
                let mut sender = idle.sender;
                if sender.ready().await.is_ok() {
                    return Some(sender);
                }
            }
        }
        None
    }

    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) > POOL_IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        idle.push_back(Idle { sender, since: now });
    }

    /// A new connection that starts with `source`'s PROXY header, then TLS for
    /// `https://`; counted against the origin's bound like pooled ones.
    async fn connect_with_header(&self, source: ProxySource) -> Result<Sender, ClientError> {
        let slot = match &self.connections {
            Some(limit) => Some(limit.try_acquire().ok_or(ClientError::Saturated)?),
            None => None,
        };
        let io = self
            .direct
            .dial(&self.origin, source)
            .await
            .map_err(ClientError::Connect)?;
        let (sender, conn) = http1::handshake(io).await.map_err(ClientError::Handshake)?;
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection closed with error");
            }
        });
        Ok(sender)
    }

    async fn connect(&self) -> Result<Sender, ClientError> {
        self.connect_in(None).await
    }

    /// A new connection holding `slot`, or a fresh slot of the bound when `None`.
    async fn connect_in(&self, slot: Option<Permit>) -> Result<Sender, ClientError> {
        let slot = match (&self.connections, slot) {
            (_, Some(slot)) => Some(slot),
            (Some(limit), None) => Some(limit.try_acquire().ok_or_else(|| {
                tracing::debug!(origin = %self.origin, "upstream connection bound reached");
                ClientError::Saturated
            })?),
            (None, None) => None,
        };
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(ClientError::Connect)?;
        let (sender, conn) = http1::handshake(io).await.map_err(ClientError::Handshake)?;
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection closed with error");
            }
        });
        Ok(sender)
    }
}

/// The fast path's bare connections.
///
/// Bare and hyper connections are two idle lists under one bound (`connections`). So
/// that the bound never refuses a request one kind of connection could have served:
/// at the bound, a fast request that finds no idle bare connection anywhere is handed to
/// hyper's path when an idle hyper connection exists ([`Pool::has_idle`]: the fast path
/// decides before it has written anything), and hyper's path that finds no idle hyper
/// connection closes an idle bare one and takes its slot ([`Pool::evict_raw`]; a bare
/// connection's slot is freed the moment it is dropped).
impl Pool {
    /// What the fast path may send on, decided without waiting: this worker's most
    /// recently used idle bare connection that is still open, else a slot for a new one,
    /// else (at the origin's bound) another worker's idle one; `Err(Saturated)` when
    /// none (plain HTTP origins only: the fast path does not take `https://` ones).
    pub(crate) fn lease_raw(&self) -> Result<Lease, ClientError> {
        let mine = worker::current() % self.raw.len();
        if let Some(conn) = Self::pop_raw(&self.raw[mine]) {
            return Ok(Lease::Idle(conn));
        }
        match &self.connections {
            None => return Ok(Lease::New(None)),
            Some(limit) => {
                if let Some(slot) = limit.try_acquire() {
                    return Ok(Lease::New(Some(slot)));
                }
            }
        }
        for list in &self.raw {
            if let Some(conn) = Self::pop_raw(list) {
                return Ok(Lease::Idle(conn));
            }
        }
        tracing::debug!(origin = %self.origin, "upstream connection bound reached");
        Err(ClientError::Saturated)
    }

    /// Whether some worker holds an idle hyper connection to this origin (which hyper's
    /// path would reuse at the bound). Rare (only at the bound), so it looks at every list.
    pub(crate) fn has_idle(&self) -> bool {
        self.idle.iter().any(|list| {
            list.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|i| i.since.elapsed() <= POOL_IDLE_TIMEOUT && !i.sender.is_closed())
        })
    }

    /// Closes one idle bare connection (any worker's) and returns its slot, for hyper's
    /// path at the bound; `None` when there is none.
    fn evict_raw(&self) -> Option<Permit> {
        self.raw.iter().find_map(|list| {
            let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
            list.pop().and_then(|mut idle| idle.conn.slot.take())
        })
    }

    /// A new bare connection (never reused) holding `slot` (taken from
    /// [`Self::lease_raw`], or from a reused connection that failed), or a fresh slot
    /// when `None` and the origin is bounded.
    pub(crate) async fn connect_raw(&self, slot: Option<Permit>) -> Result<RawConn, ClientError> {
        let slot = match (&self.connections, slot) {
            (_, Some(slot)) => Some(slot),
            (Some(limit), None) => Some(limit.try_acquire().ok_or(ClientError::Saturated)?),
            (None, None) => None,
        };
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(ClientError::Connect)?;
        match io {
            hyper_rustls::MaybeHttpsStream::Http(io) => Ok(RawConn {
                stream: io.into_inner(),
                reused: false,
                slot,
            }),
            hyper_rustls::MaybeHttpsStream::Https(_) => Err(ClientError::Connect(
                "the fast path takes plain-HTTP origins only".into(),
            )),
        }
    }

    /// Pops idle connections until one is open and has nothing unread (an upstream that
    /// closed, or sent bytes nobody asked for, is not reused): one non-blocking read.
    fn pop_raw(list: &Mutex<Vec<RawIdle>>) -> Option<RawConn> {
        loop {
            let idle = list.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
            if idle.since.elapsed() > POOL_IDLE_TIMEOUT {
                continue;
            }
            let mut probe = [0u8; 1];
            match idle.conn.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let mut conn = idle.conn;
                    conn.reused = true;
                    return Some(conn);
                }
                _ => continue,
            }
        }
    }

    /// Gives back a bare connection whose last response was read to its end.
    pub(crate) fn put_raw(&self, conn: RawConn) {
        let now = Instant::now();
        let mut list = self.raw[worker::current() % self.raw.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.retain(|i| now.duration_since(i.since) <= POOL_IDLE_TIMEOUT);
        list.push(RawIdle { conn, since: now });
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

// === impl PooledBody ===

impl PooledBody {
    fn new(inner: Incoming, conn: Option<Pooled>) -> Self {
        let mut body = Self { inner, conn };
        body.release_if_done();
        body
    }

    fn release_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some(conn) = self.conn.take()
        {
            conn.pool.put(conn.sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => self.release_if_done(),
            Poll::Ready(None) => {
                if let Some(conn) = self.conn.take() {
                    conn.pool.put(conn.sender);
                }
            }
            // A broken body leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => self.conn = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Dropped before the end: the connection still carries the rest of this body.
        self.release_if_done();
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
