//! The connection side of the HTTP/1.1 fast path (`--h1-fast-path`, on by default): reads
//! request heads into one buffer and lets [`crate::request::h1`] serve those it takes; the first
//! one it does not take goes to hyper with every byte read so far ([`Exit::Fallback`]),
//! and hyper then serves the connection until it is idle and parked, after which the
//! next request starts here again.
//!
//! Deadlines are the parking driver's ([`super::park`]): a request head must be complete
//! within [`HEADER_READ_TIMEOUT`] of the end of the last response (across parking), else
//! the connection closes without an answer; a connection that served a request and has
//! had nothing to do for [`PARK_AFTER`] since returns [`Exit::Idle`] and is parked,
//! dropping its buffers (the start of a pipelined head is carried over, as hyper's
//! unparsed bytes are).
//! One timer per connection serves both, re-armed only when it fires (so a busy
//! connection costs one timer event per [`PARK_AFTER`], not one per request).
//!
//! HTTP/1.1 connections of both listeners enter here, plain HTTP and TLS alike (on TLS
//! the transport is the rustls stream: every response is flushed before the next read,
//! [`crate::request::h1`]), and only while tracing is off (spans are started by hyper's
//! service); the access log records fast requests too. HTTP/2 never does: ALPN `h2` and
//! the h2c preface go to hyper's HTTP/2 connection before this loop could start.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{PARK_AFTER, Transport};
use crate::request::h1::{self, Buffers, Step};
use crate::server::{Connection, HEADER_READ_TIMEOUT, max_request_header_bytes};
use crate::trace;

/// Reads ask for at least this much room.
const READ_CHUNK: usize = 8 * 1024;
/// A head still incomplete at this size goes to hyper (which enforces the configured
/// limit and answers 431).
const MAX_FAST_HEAD: usize = 16 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the HTTP/1.1 fast path on or off for connections served from now on
/// (`--h1-fast-path`).
pub fn set_h1_fast_path(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the next requests of an HTTP/1.1 connection may take the fast path (whichever
/// its listener: [`h1::serve`] applies each listener's rules).
pub(super) fn applies() -> bool {
    ENABLED.load(Ordering::Relaxed) && !trace::enabled()
}

/// How the fast path left a connection.
pub(super) enum Exit {
    /// Closed, or to be closed.
    Closed,
    /// Idle since the instant given (the end of its last response): to be parked, with
    /// the start of a pipelined request head if one came (copied: the buffer is freed).
    Idle(Instant, Bytes),
    /// A request it does not take: these bytes (from that request's first byte on) go to
    /// hyper, under this head deadline.
    Fallback(Bytes, Instant),
}

/// Serves requests from `first` and `stream` until one is not for the fast path, the
/// connection is idle, or it closes.
pub(super) async fn serve<T: Transport>(
    stream: &mut T,
    first: Bytes,
    mut deadline: Instant,
    conn: &Connection,
) -> Exit {
    let max_head = max_request_header_bytes() as usize;
    let mut buf = BytesMut::with_capacity(READ_CHUNK.max(first.len()));
    buf.extend_from_slice(&first);
    let mut bufs = Buffers::default();
    // When the last response ended; `None` until one has.
    let mut since: Option<Instant> = None;
    let mut timer = Box::pin(tokio::time::sleep_until(deadline));
    loop {
        if !buf.is_empty() {
            match h1::serve(&conn.store, &conn.info, &buf, stream, &mut bufs, max_head).await {
                Step::Partial if buf.len() < MAX_FAST_HEAD.min(max_head) => {}
                Step::Partial | Step::Fallback => return Exit::Fallback(buf.freeze(), deadline),
                Step::Served {
                    consumed,
                    keep_alive,
                } => {
                    buf.advance(consumed);
                    bufs.take_read_ahead(&mut buf);
                    if !keep_alive {
                        let _ = stream.shutdown().await;
                        return Exit::Closed;
                    }
                    let now = Instant::now();
                    since = Some(now);
                    deadline = now + HEADER_READ_TIMEOUT;
                    // Armed for later (an old head deadline): bring it forward to when the
                    // connection would park. Otherwise it fires first and is re-armed then.
                    if timer.deadline() > now + PARK_AFTER {
                        timer.as_mut().reset(now + PARK_AFTER);
                    }
                    continue;
                }
                Step::Close => return Exit::Closed,
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            read = stream.read_buf(&mut buf) => Some(read),
            () = timer.as_mut() => None,
        };
        match read {
            // hyper sees the end of the stream itself, after what was read.
            Some(Ok(0)) if !buf.is_empty() => return Exit::Fallback(buf.freeze(), deadline),
            Some(Ok(0)) | Some(Err(_)) => return Exit::Closed,
            Some(Ok(_)) => {}
            None => {
                let now = Instant::now();
                if now >= deadline {
                    return Exit::Closed;
                } else if let Some(since) = since {
                    if now >= since + PARK_AFTER {
                        return Exit::Idle(since, Bytes::copy_from_slice(&buf));
                    }
                    timer.as_mut().reset(since + PARK_AFTER);
                } else {
                    timer.as_mut().reset(deadline);
                }
            }
        }
    }
}
