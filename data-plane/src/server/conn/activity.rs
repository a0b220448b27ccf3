//! What tells the parking driver that hyper has nothing left to do on a connection:
//! [`Activity`], fed by the socket wrapper hyper reads and writes through ([`Socket`])
//! and by the request and response bodies ([`super::service`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What tells the driver that hyper has nothing left to do on a connection. Atomics
/// only because tasks must be `Send`: one worker thread touches them.
#[derive(Debug)]
pub(super) struct Activity {
    /// Responses hyper has not finished with (it drops a body once written).
    pub(super) responses: AtomicU32,
    /// Request bodies not yet read to their end.
    pub(super) bodies: AtomicU32,
    /// A request reached the service since the driver last looked: the connection was
    /// busy, even if hyper answered it within one poll.
    pub(super) request_seen: AtomicBool,
    /// hyper's last read on the socket found no data.
    pub(super) read_blocked: AtomicBool,
    /// hyper read bytes since the last response finished: the start of the next head,
    /// which stays with hyper (under the driver's head deadline) rather than be parked
    /// byte by byte.
    pub(super) read_since_response: AtomicBool,
    /// Everything hyper wrote has been flushed (its write buffer is empty).
    pub(super) flushed: AtomicBool,
    /// Never park again: a request body was refused unread (past the bound of
    /// [`drain`](super::service::drain); hyper closes), or the connection was upgraded.
    pub(super) pinned: AtomicBool,
    /// The driver, while a request body is open: a body ends in the task that forwards
    /// it (or drops it), and nothing else would wake the driver to start the head
    /// deadline or park the connection afterwards.
    pub(super) body_ended: AtomicWaker,
}

impl Activity {
    pub(super) fn new() -> Self {
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
    pub(super) fn is_busy(&self, cx: &Context<'_>) -> bool {
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

    pub(super) fn is_idle(&self) -> bool {
        self.is_between_requests()
            && self.read_blocked.load(Ordering::Relaxed)
            && !self.read_since_response.load(Ordering::Relaxed)
            && self.flushed.load(Ordering::Relaxed)
            && !self.pinned.load(Ordering::Relaxed)
    }
}

/// The client transport as hyper sees it: `prefix` (bytes already read from it) first.
pub(super) struct Socket<T> {
    pub(super) stream: T,
    pub(super) prefix: Bytes,
    /// An error met reading on after the prefix, returned by the next read.
    pub(super) error: Option<io::Error>,
    pub(super) activity: Arc<Activity>,
}

impl<T> Socket<T> {
    pub(super) fn new(stream: T, prefix: Bytes, activity: Arc<Activity>) -> Self {
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
