//! One accepted connection's HTTP: HTTP/1.1, or h2c (prior knowledge) told apart by the
//! first bytes, on plain TCP or TLS; and HTTP/1.1 connections that hold no HTTP buffers
//! while idle.
//!
//! hyper keeps its buffers for a connection's whole life: a read buffer of at least
//! 8 KiB (16 KiB once it has re-reserved), an 8 KiB head write buffer and its state,
//! ~19 KiB resident per idle keep-alive connection. nginx and HAProxy release theirs
//! between requests. Here, once a connection is idle, the hyper connection is taken apart
//! ([`http1::UpgradeableConnection::into_parts`]) and dropped, and the transport alone
//! waits for the next request ("parked"); its first bytes start a fresh hyper connection.
//!
//! Idle means that hyper has nothing left to do, which it does not report, so it is
//! inferred conservatively from what passes through [`Activity`]: every response body
//! dropped by hyper (it drops one once written), every request body read to its end,
//! everything written flushed, and hyper's last read found no data. A request body left
//! unread is drained in the background, up to a bound ([`drain`]); a body refused past
//! that bound (hyper then closes the connection), or an upgrade, keeps the connection
//! with hyper for the rest of its life. Unparsed bytes hyper had read (the start of the
//! next request) are handed to the next hyper connection first. The 30 s limit for a
//! request head is enforced here too, not by hyper: it counts from the end of the last
//! response, across parking, so a client sending a head a byte at a time is cut off
//! whether or not its connection was ever idle.
//!
//! On TLS, the parked transport is the rustls stream: its session state stays (a few KiB
//! of rustls' own), only hyper's is dropped. A read that hyper saw blocked means rustls
//! had no plaintext left and the socket had nothing more, so waiting for the socket to
//! become readable is waiting for the next request.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::{Connection, HEADER_READ_TIMEOUT, max_request_header_bytes};
use crate::body::ProxyBody;
use crate::request;

/// How long an HTTP/1.1 connection stays with hyper once idle before it is parked.
/// Parking and waking cost a hyper connection's set-up and teardown (~3.5 µs of CPU,
/// ~10 % of the requests per second if done between every two requests of a busy
/// connection); after this long without a request that is noise, and a connection
/// idle this long is likely to stay idle much longer.
const PARK_AFTER: Duration = Duration::from_millis(50);

/// The HTTP/2 connection preface (RFC 9113 §3.4): a client speaking h2c with prior
/// knowledge starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's byte stream, which parking must be able to wait on without reading.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves once the peer has sent something (or closed).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl Transport for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

impl Transport for Box<TlsStream<TcpStream>> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }
}

/// What may be spoken on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocols {
    /// HTTP/1.1, or HTTP/2 if the connection starts with its preface (plain HTTP, and TLS
    /// without ALPN).
    Detect,
    /// HTTP/1.1 only (TLS with ALPN `http/1.1`).
    Http1,
    /// HTTP/2 only (TLS with ALPN `h2`).
    Http2,
}

/// Serves one accepted connection until it closes.
pub(super) async fn serve<T: Transport>(
    mut stream: T,
    conn: Arc<Connection>,
    protocols: Protocols,
) {
    let deadline = Instant::now() + HEADER_READ_TIMEOUT;
    let preface = match protocols {
        Protocols::Http1 => Preface::H1(Bytes::new()),
        Protocols::Http2 => Preface::H2(Bytes::new()),
        Protocols::Detect => {
            match tokio::time::timeout_at(deadline, read_preface(&mut stream)).await {
                Ok(Ok(preface)) => preface,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %conn.info.peer(), %error, "connection closed before a request");
                    return;
                }
                Err(_elapsed) => return,
            }
        }
    };
    let result = match preface {
        // Boxed, as hyper's HTTP/1 connection below: the task is as large as the largest
        // state of this future, and a parked connection should not carry room for either.
        Preface::H2(first) => Box::pin(serve_h2(stream, first, conn.clone())).await,
        Preface::H1(first) => serve_h1(stream, first, deadline, conn.clone()).await,
    };
    if let Err(error) = result {
        tracing::debug!(peer = %conn.info.peer(), %error, "connection closed with error");
    }
}

/// What the first bytes of a connection say it speaks, with those bytes.
enum Preface {
    H1(Bytes),
    H2(Bytes),
}

/// Reads until the bytes stop matching [`H2_PREFACE`] (HTTP/1) or match all of it (h2c);
/// as hyper-util's protocol detection does.
async fn read_preface<T: Transport>(stream: &mut T) -> io::Result<Preface> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..]).await?;
        let matches = buf[filled..filled + n] == H2_PREFACE[filled..filled + n];
        filled += n;
        if n == 0 || !matches {
            return Ok(Preface::H1(Bytes::copy_from_slice(&buf[..filled])));
        }
    }
    Ok(Preface::H2(Bytes::copy_from_slice(&buf)))
}

/// HTTP/2 until the connection closes. Never parked (hyper's HTTP/2 state has no idle
/// point to take apart), so nothing reads its [`Activity`]; it goes through the same
/// [`Service`] as HTTP/1.1 all the same, for one request path.
async fn serve_h2<T: Transport>(
    stream: T,
    first: Bytes,
    conn: Arc<Connection>,
) -> hyper::Result<()> {
    let activity = Arc::new(Activity::new());
    let io = Socket::new(stream, first, activity.clone());
    http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(max_request_header_bytes())
        .serve_connection(TokioIo::new(io), Service { conn, activity })
        .await
}

/// HTTP/1.1 until the connection closes: hyper while a request is under way, the bare
/// socket while idle. `deadline` ends the wait for the first request head.
async fn serve_h1<T: Transport>(
    mut stream: T,
    mut unparsed: Bytes,
    mut deadline: Instant,
    conn: Arc<Connection>,
) -> hyper::Result<()> {
    let activity = Arc::new(Activity::new());
    loop {
        let io = Socket::new(stream, unparsed, activity.clone());
        // No timer and no head timeout for hyper: `until_idle` enforces head deadlines,
        // across parking.
        let hyper_conn = Box::new(
            http1::Builder::new()
                .header_read_timeout(None)
                .max_header_size(max_request_header_bytes() as usize)
                .serve_connection(
                    TokioIo::new(io),
                    Service {
                        conn: conn.clone(),
                        activity: activity.clone(),
                    },
                )
                .with_upgrades(),
        );
        let Some((idle, since)) = until_idle(hyper_conn, &activity, deadline).await? else {
            return Ok(());
        };
        let Some((socket, rest)) = take_apart(*idle) else {
            return Ok(());
        };
        (stream, unparsed) = (socket, rest);
        deadline = since + HEADER_READ_TIMEOUT;
        // Parked: the next request's bytes wake it, the head deadline closes it.
        let parked = Parked::new();
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => drop(parked),
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
    }
}

/// The socket of an idle hyper connection and the bytes read from it but not parsed
/// (the start of a pipelined request); everything else of hyper's, its buffers above
/// all, is dropped here.
fn take_apart<T: Transport>(
    idle: http1::UpgradeableConnection<TokioIo<Socket<T>>, Service>,
) -> Option<(T, Bytes)> {
    let parts = idle.into_parts()?;
    let socket = parts.io.into_inner();
    // hyper's unparsed bytes were read before what it left of the prefix. Copied:
    // `read_buf` is a view of hyper's whole buffer.
    let unparsed = if parts.read_buf.is_empty() && socket.prefix.is_empty() {
        Bytes::new()
    } else {
        [&parts.read_buf[..], &socket.prefix[..]].concat().into()
    };
    Some((socket.stream, unparsed))
}

/// Connections parked right now, in this process.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// How many HTTP/1.1 connections are parked (idle, holding no HTTP buffers) right
/// now, in this process: a gauge for metrics and tests.
pub fn parked_connections() -> usize {
    PARKED.load(Ordering::Relaxed)
}

/// Counts one connection in [`PARKED`] while it lives.
struct Parked;

impl Parked {
    fn new() -> Self {
        PARKED.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        PARKED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drives `conn` until it ends (`None`), has been idle for [`PARK_AFTER`] (`Some`, to be
/// taken apart, with the instant its last response ended), or has had no complete request
/// head for [`HEADER_READ_TIMEOUT`] (`None`: closed, as nginx does, without an answer).
/// Until its first request reaches the service, `deadline` (the head deadline that ran
/// while parked) ends it.
///
/// The head deadline is this driver's, not hyper's: hyper's creates, registers and drops
/// a boxed timer for every request (~1.5k instructions, 3.5 % of a keep-alive request).
/// Here one timer per connection serves both limits and is re-armed only when it fires,
/// so a busy connection costs a timer event per [`PARK_AFTER`], not per request.
async fn until_idle<C>(
    conn: C,
    activity: &Activity,
    deadline: Instant,
) -> hyper::Result<Option<(C, Instant)>>
where
    C: Future<Output = hyper::Result<()>> + Unpin,
{
    let mut conn = Some(conn);
    let mut served = false;
    // When the last response ended, while no request has begun since.
    let mut waiting_since = None;
    let mut timer = Box::pin(tokio::time::sleep_until(deadline));
    std::future::poll_fn(move |cx| {
        let Some(c) = conn.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        activity.read_blocked.store(false, Ordering::Relaxed);
        if let Poll::Ready(result) = Pin::new(c).poll(cx) {
            conn = None;
            return Poll::Ready(result.map(|()| None));
        }
        if activity.request_seen.swap(false, Ordering::Relaxed) {
            if !served {
                served = true;
                timer.as_mut().reset(Instant::now() + PARK_AFTER);
            }
            waiting_since = None;
        }
        if !served {
            // Still waiting for a complete head: the deadline runs on from parking.
            if timer.as_mut().poll(cx).is_ready() {
                conn = None;
                return Poll::Ready(Ok(None));
            }
            return Poll::Pending;
        }
        if activity.is_busy(cx) {
            waiting_since = None;
            return Poll::Pending;
        }
        let since = *waiting_since.get_or_insert_with(Instant::now);
        let idle = activity.is_idle();
        let due = since
            + if idle {
                PARK_AFTER
            } else {
                HEADER_READ_TIMEOUT
            };
        if timer.deadline() > due {
            // Armed for the head deadline, and the connection has since gone idle.
            timer.as_mut().reset(due);
        }
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= since + HEADER_READ_TIMEOUT {
                conn = None;
                return Poll::Ready(Ok(None));
            }
            if idle && now >= since + PARK_AFTER {
                return Poll::Ready(Ok(conn.take().map(|c| (c, since))));
            }
            timer.as_mut().reset(due);
        }
        Poll::Pending
    })
    .await
}

/// The request path, with both bodies reporting to the connection's [`Activity`].
struct Service {
    conn: Arc<Connection>,
    activity: Arc<Activity>,
}

type Exchange = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    // Boxed: hyper keeps a slot the size of the service future in every connection
    // (4.4 KiB here); one allocation per request is cheaper than that much memory.
    type Future = Exchange;

    fn call(&self, req: Request<Incoming>) -> Exchange {
        let (conn, activity) = (self.conn.clone(), self.activity.clone());
        activity.responses.fetch_add(1, Ordering::Relaxed);
        activity.request_seen.store(true, Ordering::Relaxed);
        let req = req.map(|body| RequestBody::new(body, activity.clone()));
        Box::pin(async move {
            let response = request::handle(&conn.store, &conn.info, req).await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                activity.pinned.store(true, Ordering::Relaxed);
            }
            Ok(response.map(|inner| ResponseBody { inner, activity }))
        })
    }
}

/// What tells the driver that hyper has nothing left to do on a connection. Atomics
/// only because tasks must be `Send`: one worker thread touches them.
#[derive(Debug)]
struct Activity {
    /// Responses hyper has not finished with (it drops a body once written).
    responses: AtomicU32,
    /// Request bodies not yet read to their end.
    bodies: AtomicU32,
    /// A request reached the service since the driver last looked: the connection was
    /// busy, even if hyper answered it within one poll.
    request_seen: AtomicBool,
    /// hyper's last read on the socket found no data.
    read_blocked: AtomicBool,
    /// hyper read bytes since the last response finished: the start of the next head,
    /// which stays with hyper (under the driver's head deadline) rather than be parked
    /// byte by byte.
    read_since_response: AtomicBool,
    /// Everything hyper wrote has been flushed (its write buffer is empty).
    flushed: AtomicBool,
    /// Never park again: a request body was refused unread (past [`drain`]'s bound;
    /// hyper closes), or the connection was upgraded.
    pinned: AtomicBool,
    /// The driver, while a request body is open: a body ends in the task that forwards
    /// it (or drops it), and nothing else would wake the driver to start the head
    /// deadline or park the connection afterwards.
    body_ended: AtomicWaker,
}

impl Activity {
    fn new() -> Self {
        Self {
            responses: AtomicU32::new(0),
            bodies: AtomicU32::new(0),
            request_seen: AtomicBool::new(false),
            read_blocked: AtomicBool::new(false),
            read_since_response: AtomicBool::new(false),
            flushed: AtomicBool::new(true),
            pinned: AtomicBool::new(false),
            body_ended: AtomicWaker::new(),
        }
    }

    /// Whether a request is under way; while a request body is open, `cx` is woken when
    /// it ends. Registered before the counters are read, so an end in between is seen
    /// either here or by the wake.
    fn is_busy(&self, cx: &Context<'_>) -> bool {
        if self.bodies.load(Ordering::Relaxed) > 0 {
            self.body_ended.register(cx.waker());
        }
        !self.is_between_requests()
    }

    /// No request is under way: the next head is awaited (or the last response is
    /// still being flushed), and the head deadline runs.
    fn is_between_requests(&self) -> bool {
        self.responses.load(Ordering::Relaxed) == 0 && self.bodies.load(Ordering::Relaxed) == 0
    }

    fn is_idle(&self) -> bool {
        self.is_between_requests()
            && self.read_blocked.load(Ordering::Relaxed)
            && !self.read_since_response.load(Ordering::Relaxed)
            && self.flushed.load(Ordering::Relaxed)
            && !self.pinned.load(Ordering::Relaxed)
    }
}

/// The client transport as hyper sees it: `prefix` (bytes already read from it) first.
struct Socket<T> {
    stream: T,
    prefix: Bytes,
    /// An error met reading on after the prefix, returned by the next read.
    error: Option<io::Error>,
    activity: Arc<Activity>,
}

impl<T> Socket<T> {
    fn new(stream: T, prefix: Bytes, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            prefix,
            error: None,
            activity,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Socket<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.activity.read_blocked.store(false, Ordering::Relaxed);
            this.activity
                .read_since_response
                .store(true, Ordering::Relaxed);
            // Read on into the same buffer: a prefix is mostly the start of a head (the
            // h2c check reads up to 24 bytes), and a read that returned it alone would
            // make hyper grow its buffer, copying it, to read the rest. What this read
            // finds is returned with the prefix, an error it meets by the next read.
            if this.prefix.is_empty()
                && buf.remaining() > 0
                && let Poll::Ready(Err(error)) = Pin::new(&mut this.stream).poll_read(cx, buf)
            {
                this.error = Some(error);
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        // Only the last read counts: hyper may read, answer part of what it read and
        // yield (after 16 rounds) with complete requests still buffered and no read after.
        let blocked = polled.is_pending();
        this.activity.read_blocked.store(blocked, Ordering::Relaxed);
        if !blocked && buf.filled().len() > before {
            this.activity
                .read_since_response
                .store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Socket<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.activity.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.activity.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.activity.flushed.store(true, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.activity.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Most of a request body read and thrown away after it was dropped unread (see
/// [`drain`]); a larger rest is refused as before (HTTP/1.1 closes, HTTP/2 resets the
/// stream). nginx discards such bodies too.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// Longest wait for the rest of a body dropped unread.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// A request body that reports reaching its end, or being dropped before it.
struct RequestBody {
    /// `None` once handed to [`drain`].
    inner: Option<Incoming>,
    activity: Arc<Activity>,
    ended: bool,
    /// This is the rest of a dropped body, being drained: dropped again, it is refused.
    draining: bool,
}

impl RequestBody {
    fn new(inner: Incoming, activity: Arc<Activity>) -> Self {
        let ended = inner.is_end_stream();
        if !ended {
            activity.bodies.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            inner: Some(inner),
            activity,
            ended,
            draining: false,
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            if self.activity.bodies.fetch_sub(1, Ordering::Relaxed) == 1 {
                // What hyper read up to here was this body, not the next head, even when
                // it came after the response.
                self.activity
                    .read_since_response
                    .store(false, Ordering::Relaxed);
                self.activity.body_ended.wake();
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.end(),
            // hyper's client stops polling after trailers, which end a body.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || inner.is_end_stream() => {
                self.end();
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.ended
            && !inner.is_end_stream()
        {
            // Unread (answered early, e.g. 401, 404 or 413): read the rest in the
            // background, up to a bound, so the exchange can end cleanly.
            if !self.draining
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                // The rest carries this body's place in `Activity::bodies`: the
                // connection stays busy until it is drained or refused.
                self.ended = true;
                runtime.spawn(drain(RequestBody {
                    inner: Some(inner),
                    activity: self.activity.clone(),
                    ended: false,
                    draining: true,
                }));
                return;
            }
            // Refused: hyper closes the HTTP/1.1 connection (never parked again) or
            // resets the HTTP/2 stream.
            self.activity.pinned.store(true, Ordering::Relaxed);
        }
        self.end();
    }
}

/// Reads and discards the rest of a request body that was answered without being read,
/// up to [`DRAIN_LIMIT`] bytes within [`DRAIN_TIME`]; past either it is dropped,
/// refusing the rest.
///
/// Why: dropping it at once makes HTTP/2 end the stream with `RST_STREAM(NO_ERROR)`
/// after the answer, allowed (RFC 9113 §8.1) but reported as an error by curl 7.88
/// and others for most such POSTs, and makes hyper close an HTTP/1.1 connection that
/// could have been kept. Costs a task (one allocation) per request answered before its
/// body was read, and nothing on any other request.
async fn drain(mut rest: RequestBody) {
    use http_body_util::BodyExt as _;
    let mut left = DRAIN_LIMIT;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = rest.frame().await {
            let len = frame.data_ref().map_or(0, |data| data.len() as u64);
            if len > left {
                return;
            }
            left -= len;
        }
    })
    .await;
}

/// A response body that reports when hyper is done with it.
struct ResponseBody {
    inner: ProxyBody,
    activity: Arc<Activity>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.activity
            .read_since_response
            .store(false, Ordering::Relaxed);
        self.activity.responses.fetch_sub(1, Ordering::Relaxed);
    }
}
