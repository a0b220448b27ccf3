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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Extensions, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;

use super::error::ProxyError;
use super::host::RequestHost;
use super::{ConnInfo, headers, upgrade};
use crate::body::{self, BoxError, ForwardBody, IdleBody, ProxyBody};
use crate::upstream::{ClientError, PooledBody, Upstream};

/// Sends `req` to `upstream` and returns the upstream's response, rewritten.
pub(crate) async fn forward<B>(
    upstream: &Upstream,
    conn: &ConnInfo,
    host: &RequestHost,
    mut req: Request<B>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let settings = upstream.settings();
    let client_upgrade = upgrade::is_websocket_upgrade(&req).then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, client_upgrade.is_some());
    headers::set_forwarding(&mut parts.headers, conn, host);
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

    let (body, progress) =
        ForwardBody::new(body.map_err(BoxError::from).boxed(), settings.idle_timeout);
    let sent = upstream.pool().send(Request::from_parts(parts, body));
    let mut response = await_head(sent, settings.read_timeout, progress).await?;

    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded {
        let client_upgrade = client_upgrade.ok_or(ProxyError::UnexpectedUpgrade)?;
        upgrade::spawn_relay(client_upgrade, hyper::upgrade::on(&mut response));
    }
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, upgraded);
    settings.response_headers.apply(&mut parts.headers);
    parts.extensions = Extensions::new();
    let body = if upgraded {
        body::empty()
    } else {
        IdleBody::new(body, settings.idle_timeout).boxed()
    };
    Ok(Response::from_parts(parts, body))
}

/// Waits for response headers; see the module docs for the timeout rule.
async fn await_head(
    sent: impl Future<Output = Result<Response<PooledBody>, ClientError>>,
    read_timeout: Duration,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Response<PooledBody>, ProxyError> {
    let mut seen = 0;
    let mut sent = std::pin::pin!(sent);
    loop {
        match tokio::time::timeout(read_timeout, &mut sent).await {
            Ok(result) => return result.map_err(ProxyError::from_client),
            Err(_elapsed) => {
                let now = progress
                    .as_ref()
                    .map_or(seen, |p| p.load(Ordering::Relaxed));
                if now == seen {
                    return Err(ProxyError::ResponseTimeout);
                }
                seen = now;
            }
        }
    }
}
