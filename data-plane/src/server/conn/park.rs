//! Parking: HTTP/1.1 connections that hold no HTTP buffers while idle.
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
//! unread is drained in the background, up to a bound
//! ([`drain`](super::service::drain)); a body refused past that bound (hyper then closes
//! the connection), or an upgrade, keeps the connection with hyper for the rest of its
//! life. Unparsed bytes hyper had read (the start of the next request) are handed to the
//! next hyper connection first. The 30 s limit for a request head is enforced here too,
//! not by hyper: it counts from the end of the last response, across parking, so a
//! client sending a head a byte at a time is cut off whether or not its connection was
//! ever idle.
//!
//! On TLS, the parked transport is the rustls stream: its session state stays (a few KiB
//! of rustls' own), only hyper's is dropped. A read that hyper (or the fast path) saw
//! blocked means rustls had no plaintext left and the socket had nothing more, so waiting
//! for the socket to become readable is waiting for the next request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::activity::{Activity, Socket};
use super::service::Service;
use super::{PARK_AFTER, Transport};
use crate::server::{Connection, HEADER_READ_TIMEOUT, max_request_header_bytes};

/// HTTP/1.1 until the connection closes: hyper while a request is under way, the bare
/// socket while idle. `deadline` ends the wait for the first request head.
pub(super) async fn serve_h1<T: Transport>(
    mut stream: T,
    mut unparsed: Bytes,
    mut deadline: Instant,
    conn: Arc<Connection>,
) -> hyper::Result<()> {
    let activity = Arc::new(Activity::new());
    loop {
        if super::fast::applies() {
            // Boxed, as hyper's connection below: a parked connection's task should not
            // carry room for the fast path's request state (its header slots, ~2 KiB).
            let fast = Box::pin(super::fast::serve(&mut stream, unparsed, deadline, &conn));
            match fast.await {
                super::fast::Exit::Closed => return Ok(()),
                super::fast::Exit::Idle(since, rest) => {
                    deadline = since + HEADER_READ_TIMEOUT;
                    if !park(&stream, deadline).await {
                        return Ok(());
                    }
                    unparsed = rest;
                    continue;
                }
                super::fast::Exit::Fallback(bytes, head_deadline) => {
                    (unparsed, deadline) = (bytes, head_deadline);
                }
            }
        }
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
        if !park(&stream, deadline).await {
            return Ok(());
        }
    }
}

/// Parked: the next request's bytes wake it (`true`), the head deadline or an error
/// closes it (`false`).
async fn park<T: Transport>(stream: &T, deadline: Instant) -> bool {
    let _parked = Parked::new();
    matches!(
        tokio::time::timeout_at(deadline, stream.readable()).await,
        Ok(Ok(()))
    )
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
