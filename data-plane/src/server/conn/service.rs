//! hyper serving: HTTP/2 connections, and the request path as hyper's service for both
//! HTTP versions, with request and response bodies that report to the connection's
//! [`Activity`] (so the parking driver knows when hyper is done).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::Transport;
use super::activity::{Activity, Socket};
use crate::body::ProxyBody;
use crate::server::{Connection, max_request_header_bytes};
use crate::{request, trace};

/// HTTP/2 until the connection closes. Never parked (hyper's HTTP/2 state has no idle
/// point to take apart), so nothing reads its [`Activity`]; it goes through the same
/// [`Service`] as HTTP/1.1 all the same, for one request path.
pub(super) async fn serve_h2<T: Transport>(
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

/// The request path, with both bodies reporting to the connection's [`Activity`].
pub(super) struct Service {
    pub(super) conn: Arc<Connection>,
    pub(super) activity: Arc<Activity>,
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
        let mut req = req.map(|body| RequestBody::new(body, activity.clone()));
        // `None` unless `--otlp-endpoint`; rewrites `traceparent` for the upstream.
        let secure = matches!(conn.info.listener(), request::Listener::Https);
        // The span's `client.address` is the client every decision sees (PROXY header,
        // trusted `X-Forwarded-For`), not the balancer in front.
        let client = conn.info.client_of(req.headers()).ip;
        let client = SocketAddr::new(client, conn.info.client_port_for(client));
        let span = trace::start(&mut req, client, secure).map(Box::new);
        Box::pin(async move {
            let (response, ending) = request::serve(&conn.store, &conn.info, req).await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                activity.pinned.store(true, Ordering::Relaxed);
            }
            let span = span.map(|mut span| {
                span.respond(response.status());
                span
            });
            Ok(response.map(|inner| ResponseBody {
                inner,
                activity,
                span,
                ending,
            }))
        })
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

/// A response body that reports when hyper is done with it, and ends the request's
/// span then (the end of the body, or the client going away); it carries the request's
/// access-log [`request::Ending`] too (written when it is dropped).
pub(super) struct ResponseBody {
    inner: ProxyBody,
    activity: Arc<Activity>,
    span: Option<Box<trace::RequestSpan>>,
    ending: request::Ending,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.ending.polled(&polled, &this.inner);
        polled
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
        if let Some(span) = self.span.take() {
            span.end();
        }
    }
}
