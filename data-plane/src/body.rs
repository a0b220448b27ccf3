//! Body types on the proxy path. Bodies are streamed frame by frame, never collected, so
//! memory stays flat for any body size and server-sent events pass through as produced.
//!
//! Streamed bodies in both directions go through [`IdleBody`], which ends an exchange
//! whose body falls silent for longer than the proxy's idle timeout, so quiet but alive
//! streams (SSE, MCP) stay open while dead ones release their upstream connection.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::time::{Instant, Sleep};

/// Error of proxied bodies: hyper's errors, or [`IdleTimeout`]. Boxed because hyper
/// errors cannot be made outside hyper, and a body that stops must end with an error
/// (not a clean end) so the peer can tell the stream was cut.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response the proxy returns: an upstream body passed through or a short
/// locally generated one.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A streamed body brought no frame within its proxy's idle timeout, so the data plane
/// ended the exchange (instead of holding the connections open forever).
#[derive(Debug, thiserror::Error)]
#[error("body idle for longer than {0:?}")]
pub(crate) struct IdleTimeout(pub Duration);

/// Ends `inner` with [`IdleTimeout`] once it has kept its reader waiting for a frame
/// longer than `timeout`.
///
/// The clock runs only while the reader is waiting (from the first `Pending` after a
/// frame), so a slow reader applying back-pressure never trips it. One timer per body,
/// created on the first wait and `reset` afterwards: no allocation per frame. On expiry
/// `inner` is dropped at once, which for an upstream response closes its connection
/// rather than returning it to the pool.
pub(crate) struct IdleBody<B> {
    inner: Option<B>,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

/// A request body grew past its proxy's `max_request_body_bytes` while being forwarded.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub(crate) struct BodyTooLarge(pub u64);

/// Request body sent upstream. Counts forwarded frames so the response timeout can tell
/// a stalled upstream from a long upload (see `request::forward`), ends the upload if the
/// client goes silent for longer than the idle timeout or sends more than the proxy's
/// body limit, and records in its [`Progress`] when the client side failed, so the
/// exchange's error is answered as the client's fault (4xx) rather than the upstream's.
#[derive(Debug)]
pub(crate) struct ForwardBody {
    /// `None` for a request without a body (most of them): nothing to box or watch.
    inner: Option<IdleBody<ProxyBody>>,
    progress: Option<Arc<Progress>>,
    /// Bytes the body may still carry within the proxy's limit (`u64::MAX`: no limit,
    /// which no body reaches). Checking it is a comparison per frame.
    allowance: u64,
    /// The limit, for the error.
    limit: u64,
}

/// What became of a request body on its way upstream, shared between the
/// [`ForwardBody`] (owned by the upstream connection) and the exchange waiting for the
/// response. Allocated once per request that has a body.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Frames the upstream has taken.
    frames: AtomicU64,
    /// Data bytes in those frames (for the access log).
    bytes: AtomicU64,
    /// A [`ClientFault`] as its `u8`, set once the client side of the body failed.
    fault: AtomicU8,
}

/// How the client side of a request body failed, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ClientFault {
    /// It did not (so an exchange error is the upstream's).
    None = 0,
    /// It grew past the proxy's body limit.
    TooLarge = 1,
    /// The client fell silent for longer than the idle timeout.
    Idle = 2,
    /// It broke off or was malformed (bad chunked framing, connection closed, stream
    /// reset).
    Broken = 3,
}

/// A short local body (error pages, admin answers).
pub(crate) fn full(text: impl Into<Bytes>) -> ProxyBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

// === impl IdleBody ===

impl<B> IdleBody<B> {
    /// Wraps `inner`; `timeout` is the longest wait for its next frame.
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner: Some(inner),
            timeout,
            sleep: None,
            waiting: false,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.timeout;
            match this.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            this.inner = None;
            return Poll::Ready(Some(Err(IdleTimeout(this.timeout).into())));
        }
        Poll::Pending
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

impl<B> std::fmt::Debug for IdleBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleBody")
            .field("timeout", &self.timeout)
            .field("expired", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

// === impl Progress ===

impl Progress {
    /// Frames the upstream has taken so far.
    pub(crate) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Data bytes the upstream has taken so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether, and how, the client side of the body failed.
    pub(crate) fn fault(&self) -> ClientFault {
        match self.fault.load(Ordering::Relaxed) {
            1 => ClientFault::TooLarge,
            2 => ClientFault::Idle,
            3 => ClientFault::Broken,
            _ => ClientFault::None,
        }
    }
}

// === impl ForwardBody ===

impl ForwardBody {
    /// [`ForwardBody::with_limit`] without a size limit.
    pub(crate) fn new<B>(inner: B, idle_timeout: Duration) -> (Self, Option<Arc<Progress>>)
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self::with_limit(inner, idle_timeout, u64::MAX)
    }

    /// Wraps `inner`, ended after `idle_timeout` without a frame or once it carries more
    /// than `limit` bytes (`u64::MAX`: no limit); when it has data to send, also returns
    /// its [`Progress`].
    pub(crate) fn with_limit<B>(
        inner: B,
        idle_timeout: Duration,
        limit: u64,
    ) -> (Self, Option<Arc<Progress>>)
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        if inner.is_end_stream() {
            let body = Self {
                inner: None,
                progress: None,
                allowance: limit,
                limit,
            };
            return (body, None);
        }
        let progress = Arc::new(Progress::default());
        let body = Self {
            inner: Some(IdleBody::new(
                inner.map_err(Into::into).boxed(),
                idle_timeout,
            )),
            progress: Some(progress.clone()),
            allowance: limit,
            limit,
        };
        (body, Some(progress))
    }

    fn fail(&self, fault: ClientFault) {
        if let Some(progress) = &self.progress {
            progress.fault.store(fault as u8, Ordering::Relaxed);
        }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                if len > this.allowance {
                    // Stop reading from the client; the upstream request is aborted.
                    this.inner = None;
                    this.fail(ClientFault::TooLarge);
                    return Poll::Ready(Some(Err(BodyTooLarge(this.limit).into())));
                }
                this.allowance -= len;
                if let Some(progress) = &this.progress {
                    progress.frames.fetch_add(1, Ordering::Relaxed);
                    progress.bytes.fetch_add(len, Ordering::Relaxed);
                }
            }
            // Everything this body reads comes from the client.
            Poll::Ready(Some(Err(error))) => this.fail(if error.is::<IdleTimeout>() {
                ClientFault::Idle
            } else {
                ClientFault::Broken
            }),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::{BoxError, IdleBody, IdleTimeout};

    type Item = Result<Frame<Bytes>, BoxError>;

    fn channel_body(
        timeout: Duration,
    ) -> (
        mpsc::Sender<Item>,
        IdleBody<StreamBody<ReceiverStream<Item>>>,
    ) {
        let (tx, rx) = mpsc::channel(4);
        (
            tx,
            IdleBody::new(StreamBody::new(ReceiverStream::new(rx)), timeout),
        )
    }

    async fn next(
        body: &mut IdleBody<StreamBody<ReceiverStream<Item>>>,
    ) -> Option<Result<Bytes, BoxError>> {
        body.frame()
            .await
            .map(|r| r.map(|f| f.into_data().unwrap_or_default()))
    }

    #[tokio::test]
    async fn frames_within_the_timeout_pass_and_silence_ends_the_body() {
        let (tx, mut body) = channel_body(Duration::from_millis(150));
        let sender = tokio::spawn(async move {
            for i in 0..3u8 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from(vec![i])))).await;
            }
            // Silent from here on, but still open.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tx);
        });
        for i in 0..3u8 {
            let frame = next(&mut body).await.and_then(Result::ok);
            assert_eq!(frame, Some(Bytes::from(vec![i])));
        }
        let started = tokio::time::Instant::now();
        let end = next(&mut body).await;
        let waited = started.elapsed();
        let error = match end {
            Some(Err(error)) => error,
            other => panic!("expected the idle timeout, got {other:?}"),
        };
        assert!(error.is::<IdleTimeout>(), "{error}");
        assert!(waited >= Duration::from_millis(140), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(http_body::Body::is_end_stream(&body));
        assert!(next(&mut body).await.is_none());
        sender.abort();
    }

    #[tokio::test]
    async fn a_slow_reader_does_not_trip_the_timer() {
        let (tx, mut body) = channel_body(Duration::from_millis(200));
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
                .await
                .ok();
            tokio::time::sleep(Duration::from_millis(500)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
                .await
                .ok();
        });
        // Waits (timer armed), gets "a" at ~50 ms.
        assert!(matches!(next(&mut body).await, Some(Ok(_))));
        // Busy for longer than the timeout (back-pressure), then waits ~100 ms for "b":
        // only the wait counts, so "b" arrives.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = next(&mut body).await;
        assert!(
            matches!(&b, Some(Ok(data)) if data.as_ref() == b"b"),
            "{b:?}"
        );
        assert!(next(&mut body).await.is_none());
        sender.abort();
    }
}
