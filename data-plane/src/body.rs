//! Body types on the proxy path. Bodies are streamed frame by frame, never collected, so
//! memory stays flat for any body size and server-sent events pass through as produced.
//!
//! Streamed bodies in both directions go through [`IdleBody`], which ends an exchange
//! whose body falls silent for longer than the proxy's idle timeout, so quiet but alive
//! streams (SSE, MCP) stay open while dead ones release their upstream connection.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response the proxy returns: an upstream body passed through or a short
/// locally generated one.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A streamed body brought no frame within its proxy's idle timeout, so the data plane
/// ended the exchange (instead of holding the connections open forever).
#[derive(Debug, thiserror::Error)]
#[error("body idle for longer than {0:?}")]
pub struct IdleTimeout(pub Duration);

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

/// Request body sent upstream. Optionally counts forwarded frames so the response
/// timeout can tell a stalled upstream from a long upload (see `proxy::forward`), and
/// ends the upload if the client goes silent for longer than the idle timeout.
#[derive(Debug)]
pub(crate) struct ForwardBody {
    /// `None` for a request without a body (most of them): nothing to box or watch.
    inner: Option<IdleBody<ProxyBody>>,
    progress: Option<Arc<AtomicU64>>,
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

// === impl ForwardBody ===

impl ForwardBody {
    /// Wraps `inner`, ended after `idle_timeout` without a frame; when it has data to
    /// send, also returns a frame counter.
    pub(crate) fn new<B>(inner: B, idle_timeout: Duration) -> (Self, Option<Arc<AtomicU64>>)
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        if inner.is_end_stream() {
            let body = Self {
                inner: None,
                progress: None,
            };
            return (body, None);
        }
        let progress = Arc::new(AtomicU64::new(0));
        let body = Self {
            inner: Some(IdleBody::new(
                inner.map_err(Into::into).boxed(),
                idle_timeout,
            )),
            progress: Some(progress.clone()),
        };
        (body, Some(progress))
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(progress)) = (&polled, &self.progress) {
            progress.fetch_add(1, Ordering::Relaxed);
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
