//! Phase 4: rewrite the request for the upstream, send it, and stream the answer back.
//!
//! Timeouts: the connect timeout lives in the upstream's connector. The read timeout
//! bounds the wait for response headers only. While a request body is being uploaded,
//! that timer restarts whenever the upstream takes another chunk, so a slow large upload
//! is not cut off but a stalled upstream is (after between one and two read timeouts).
//! After the head, the idle timeout bounds the silence between two frames of the
//! response body (and of the request body): quiet server-sent event streams live on as
//! long as something arrives within it, dead ones end with an error and their upstream
//! connection is closed, not pooled ([`IdleBody`]). A client that disconnects drops the
//! response body, which drops the upstream exchange with it.
//!
//! Request bodies: one declared (`Content-Length`) above the proxy's
//! `max_request_body_bytes` is answered 413 before the upstream is contacted; one that
//! grows past it while streaming is cut ([`ForwardBody`]), which aborts the upstream
//! request and is answered 413 if the response has not started. A body that fails on
//! the client's side (malformed chunked framing, a client that goes away or silent) is
//! answered as the client's fault (400, 408), never as the upstream's (502).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::HOST;
use http::{Extensions, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::error::ProxyError;
use super::host::RequestHost;
use super::{Client, ConnInfo, headers, upgrade};
use crate::body::{self, ForwardBody, IdleBody, Progress, ProxyBody};
use crate::upstream::{
    ClientError, PooledBody, ProxySource, SendProxy, Upstream, UpstreamSettings,
};

/// Rewrites `req` for `upstream` and starts sending it; the returned exchange resolves to
/// the upstream's response, rewritten.
///
/// The rewrite happens here, synchronously, and the exchange is a hand-written future
/// rather than an `async fn`: every `async fn` level of the request path is a state
/// machine built on the stack and moved into its caller's, so one flat future saves a
/// few kilobytes of copying per request (bench/README.md, finding 5).
pub(crate) fn forward<'u, B>(
    upstream: &'u Upstream,
    conn: &ConnInfo,
    client: &Client<'_>,
    host: &RequestHost,
    mut req: Request<B>,
) -> Result<Exchange<'u, impl Future<Output = Result<Response<PooledBody>, ClientError>>>, ProxyError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let settings = upstream.settings();
    // A comparison: with no limit (`u64::MAX`) no declared length exceeds it.
    if req.body().size_hint().lower() > settings.max_request_body {
        return Err(ProxyError::BodyTooLarge(settings.max_request_body));
    }
    let client_upgrade = upgrade::is_websocket_upgrade(&req).then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, client_upgrade.is_some());
    headers::set_forwarding(&mut parts.headers, conn, client, host);
    headers::append_via(&mut parts.headers, parts.version);
    let host_value = if settings.preserve_host {
        host.raw().clone()
    } else {
        upstream.target().host_header().clone()
    };
    parts.headers.insert(HOST, host_value);
    settings.request_headers.apply(&mut parts.headers);
    parts.uri = upstream
        .target()
        .uri_for(parts.uri.path_and_query())
        .map_err(ProxyError::UpstreamUri)?;
    parts.version = Version::HTTP_11;
    parts.extensions = Extensions::new();

    let proxy_header = (settings.send_proxy != SendProxy::Off).then(|| ProxySource {
        version: settings.send_proxy,
        client: SocketAddr::new(client.ip, conn.client_port_for(client.ip)),
    });
    let (body, progress) =
        ForwardBody::with_limit(body, settings.idle_timeout, settings.max_request_body);
    Ok(Exchange {
        sent: upstream
            .pool()
            .send(Request::from_parts(parts, body), proxy_header),
        timer: tokio::time::sleep(settings.read_timeout),
        settings,
        progress,
        seen: 0,
        client_upgrade,
    })
}

pin_project! {
    /// One request in flight to an upstream: waits for the response head under the read
    /// timeout (see the module docs for the rule), then rewrites the response.
    pub(crate) struct Exchange<'u, F> {
        #[pin]
        sent: F,
        #[pin]
        timer: Sleep,
        settings: &'u UpstreamSettings,
        // The request body's frames taken and client-side failure; `None` without a body.
        progress: Option<Arc<Progress>>,
        // `progress` when the timer was last started.
        seen: u64,
        client_upgrade: Option<OnUpgrade>,
    }
}

impl<F> Exchange<'_, F> {
    /// The request body's progress (frames and bytes taken); `None` without a body.
    pub(crate) fn progress(&self) -> Option<&Arc<Progress>> {
        self.progress.as_ref()
    }
}

impl<F> Future for Exchange<'_, F>
where
    F: Future<Output = Result<Response<PooledBody>, ClientError>>,
{
    type Output = Result<Response<ProxyBody>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(sent) = this.sent.as_mut().poll(cx) {
                let response = sent.map_err(|error| {
                    let limit = this.settings.max_request_body;
                    ProxyError::from_exchange(error, this.progress.as_deref(), limit)
                })?;
                return Poll::Ready(respond(this.settings, response, this.client_upgrade.take()));
            }
            ready!(this.timer.as_mut().poll(cx));
            let now = this.progress.as_ref().map_or(*this.seen, |p| p.frames());
            if now == *this.seen {
                return Poll::Ready(Err(ProxyError::ResponseTimeout));
            }
            *this.seen = now;
            let next = Instant::now() + this.settings.read_timeout;
            this.timer.as_mut().reset(next);
        }
    }
}

/// Rewrites the upstream's response head for the client; relays an upgrade.
fn respond(
    settings: &UpstreamSettings,
    mut response: Response<PooledBody>,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let relay = if upgraded {
        let client_upgrade = client_upgrade.ok_or(ProxyError::UnexpectedUpgrade)?;
        Some(upgrade::spawn_relay(
            client_upgrade,
            hyper::upgrade::on(&mut response),
        ))
    } else {
        None
    };
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, upgraded);
    settings.response_headers.apply(&mut parts.headers);
    parts.extensions = Extensions::new();
    if let Some(relay) = relay {
        // For the access log: the record of an upgrade is written when the relay ends.
        parts.extensions.insert(relay);
    }
    let body = if upgraded {
        body::empty()
    } else {
        IdleBody::new(body, settings.idle_timeout).boxed()
    };
    Ok(Response::from_parts(parts, body))
}
