//! Body types on the proxy path. Bodies are streamed frame by frame, never collected, so
//! memory stays flat for any body size and server-sent events pass through as produced.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Body of every response the proxy returns: an upstream body passed through or a short
/// locally generated one.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Request body sent upstream. Optionally counts forwarded frames so the response
/// timeout can tell a stalled upstream from a long upload (see `proxy::forward`).
#[derive(Debug)]
pub(crate) struct ForwardBody {
    inner: ProxyBody,
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

// === impl ForwardBody ===

impl ForwardBody {
    /// Wraps `inner`; when it has data to send, also returns a frame counter.
    pub(crate) fn new(inner: ProxyBody) -> (Self, Option<Arc<AtomicU64>>) {
        let progress = (!inner.is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        let body = Self {
            inner,
            progress: progress.clone(),
        };
        (body, progress)
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(progress)) = (&polled, &self.progress) {
            progress.fetch_add(1, Ordering::Relaxed);
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
