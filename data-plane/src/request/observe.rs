//! What one request did, for its access-log record ([`crate::access_log`]).
//!
//! [`Observe::start`] runs first in [`super::handle`] and takes the request's own facts
//! (method, host, path, HTTP version, client, user agent, request id, `Mcp-Session-Id`).
//! Each phase then adds what it decided through one small call: the proxy, the admission
//! (route, user and `client_id` from the verified claims) or the refusal and its reason,
//! the upstream and when its response head arrived. [`Observe::finish`] wraps the
//! response body; when that body ends or is dropped (client gone, stream closed), or for
//! a relayed WebSocket when the relay closes (bytes are those copied each way), the
//! record is complete and [`Observation::finish`] hands it to the access log. That is the
//! single point where a request is over: duration, status and upstream time are final.
//!
//! **Costs.** When [`access_log::enabled`] is false, [`Observe`] is `None` and every call
//! is one branch: nothing is allocated or copied. When on: the record's free-form strings
//! (client, host, path, request id, user agent, …; listener, method, HTTP version and
//! auth travel as static strings in the [`access_log::Entry`]), one box for the
//! observation and one for the wrapped response body.
//!
//! **Secrets.** Only the fields listed are copied; no header but `User-Agent`,
//! `X-Request-Id` and `Mcp-Session-Id` is read, and the query string is recorded only for a
//! proxy that opts in (`log_query`), through [`access_log::redact_query`], so `Authorization`, cookies, codes and tokens cannot reach a
//! record.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::USER_AGENT;
use http::{HeaderName, HeaderValue, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use portcullis_proto::v1::AccessLogRecord;
use tokio::time::Instant;

use super::host::RequestHost;
use super::upgrade::RelayClosed;
use super::{ConnInfo, Listener};
use crate::access_log;
use crate::answer::Rejection;
use crate::body::{BoxError, Progress, ProxyBody};
use crate::upstream::Upstream;
use crate::vhost::{Admitted, Proxy};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The observation of one request, or nothing when access logging is off.
#[derive(Debug, Default)]
pub(crate) struct Observe(Option<Box<Observation>>);

/// One request's facts, gathered phase by phase; complete at [`Observation::finish`].
#[derive(Debug)]
pub struct Observation {
    /// The record's free-form fields, and the fixed-vocabulary ones as static strings.
    entry: access_log::Entry,
    start: Instant,
    /// When the upstream's response head arrived; `None` when no upstream answered.
    upstream_head: Option<Instant>,
    /// The forwarded request body's progress (its bytes); `None` without a body.
    request_body: Option<Arc<Progress>>,
}

impl Observe {
    /// Starts observing `req` (before anything about it is decided); `None` inside when
    /// access logging is off. `started` is when the request path began (the metrics' clock too: one reading).
    pub(crate) fn start<B>(
        conn: &ConnInfo,
        req: &Request<B>,
        request_id: &HeaderValue,
        started: std::time::Instant,
    ) -> Self {
        if !access_log::enabled() {
            return Self(None);
        }
        let headers = req.headers();
        let text = |v: Option<&HeaderValue>| {
            v.and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let host = req
            .uri()
            .host()
            .map(str::to_owned)
            .unwrap_or_else(|| text(headers.get(http::header::HOST)));
        // The same client every decision sees: the PROXY header's source, or the rightmost
        // untrusted `X-Forwarded-For` entry behind a trusted forwarder.
        let client = conn.client_of(headers);
        let mut record = AccessLogRecord {
            time_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            client_ip: text(Some(&client.header)),
            client_port: u32::from(conn.client_port_for(client.ip)),
            host,
            path: req.uri().path().to_owned(),
            request_id: text(Some(request_id)),
            user_agent: text(headers.get(USER_AGENT)),
            mcp_session_id: text(headers.get(MCP_SESSION_ID)),
            trace_id: crate::trace::trace_id_of(req).map(hex).unwrap_or_default(),
            ..Default::default()
        };
        if let Some(h) = conn.proxy_header() {
            balancer_tlvs(&mut record, h);
        }
        let entry = access_log::Entry {
            record,
            listener: match conn.listener {
                Listener::Http { .. } => "http",
                Listener::Https => "https",
            },
            method: req.method().clone(),
            http_version: version(req.version()),
            auth: "none",
        };
        Self(Some(Box::new(Observation {
            entry,
            start: Instant::from_std(started),
            upstream_head: None,
            request_body: None,
        })))
    }

    /// Phase 0: the path as normalised (what every later phase and the upstream see).
    pub(crate) fn path(&mut self, path: &str) {
        if let Some(o) = &mut self.0
            && o.entry.record.path != path
        {
            path.clone_into(&mut o.entry.record.path);
        }
    }

    /// Phase 1: the proxy the host resolved to, and the host in its normal form (no
    /// port, lower case); until then `host` is the client's Host as sent. The query
    /// string is kept only when the proxy opts in, and then without credentials.
    pub(crate) fn proxy(&mut self, proxy: &Proxy, host: &RequestHost, query: Option<&str>) {
        if let Some(o) = &mut self.0 {
            if proxy.log_query()
                && let Some(query) = query
            {
                o.entry.record.query = access_log::redact_query(query, true);
            }
            proxy.hostname().clone_into(&mut o.entry.record.proxy);
            if o.entry.record.host != host.name() {
                host.name().clone_into(&mut o.entry.record.host);
            }
        }
    }

    /// Phase 2, admitted: the route and, from a verified token, the user (`login`, else
    /// `sub`) and `client_id`; `auth` is `admitted` only when a token or session was.
    pub(crate) fn admitted(&mut self, admitted: &Admitted<'_>) {
        let Some(o) = &mut self.0 else { return };
        if let Some(route) = admitted.route() {
            route.id().clone_into(&mut o.entry.record.route);
        }
        if let Some(claims) = admitted.claims() {
            o.entry.auth = "admitted";
            let user = if claims.login.is_empty() {
                &claims.sub
            } else {
                &claims.login
            };
            user.clone_into(&mut o.entry.record.user);
            claims.client_id.clone_into(&mut o.entry.record.client_id);
        }
    }

    /// Phase 2, refused: `auth` is `refused` and the reason is the OAuth error of the
    /// challenge (`invalid_token`, `insufficient_scope`), `missing_token` for a bare
    /// challenge, else the status code.
    pub(crate) fn refused(&mut self, rejection: &Rejection) {
        let Some(o) = &mut self.0 else { return };
        o.entry.auth = "refused";
        o.entry.record.auth_reason = refusal_reason(rejection);
    }

    /// Phase 3: the upstream the request goes to.
    pub(crate) fn upstream(&mut self, upstream: &Upstream) {
        if let Some(o) = &mut self.0 {
            o.entry.record.upstream = upstream.target().authority().as_str().to_owned();
        }
    }

    /// Phase 4: the request body on its way upstream (its byte count is read at the end).
    pub(crate) fn request_body(&mut self, progress: Option<&Arc<Progress>>) {
        if let Some(o) = &mut self.0 {
            o.request_body = progress.cloned();
        }
    }

    /// Phase 4: the upstream's answer (or failure) arrived.
    pub(crate) fn upstream_answered(&mut self) {
        if let Some(o) = &mut self.0 {
            o.upstream_head = Some(Instant::now());
        }
    }

    /// Takes the response's status and wraps its body so the record is written when the
    /// body ends or is dropped. Returns `response` untouched when not observing.
    pub(crate) fn finish(self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some(mut o) = self.0 else {
            return response;
        };
        o.entry.record.status = u32::from(response.status().as_u16());
        if o.entry.record.mcp_session_id.is_empty()
            && let Some(id) = response
                .headers()
                .get(MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
        {
            id.clone_into(&mut o.entry.record.mcp_session_id);
        }
        if let Some(closed) = response
            .extensions_mut()
            .remove::<RelayClosed>()
            .and_then(|relay| relay.take())
        {
            tokio::spawn(async move {
                let (to_upstream, to_client) = closed.await.unwrap_or_default();
                o.request_body = None;
                o.entry.record.request_body_bytes = to_upstream;
                o.finish(to_client, Instant::now());
            });
            return response;
        }
        response.map(|inner| {
            ObservedBody {
                inner,
                observation: Some(o),
                bytes: 0,
                ended: None,
            }
            .boxed()
        })
    }
}

impl Observation {
    /// The request is over (its response body ended, or was dropped at `end`): completes
    /// the record and hands it to the access log. The one place every observed request
    /// passes exactly once; per-request metrics belong here.
    fn finish(mut self, response_bytes: u64, end: Instant) {
        let total = end.saturating_duration_since(self.start);
        let upstream = self.upstream_duration();
        let r = &mut self.entry.record;
        r.response_body_bytes = response_bytes;
        if let Some(progress) = &self.request_body {
            r.request_body_bytes = progress.bytes();
        }
        r.duration_micros = micros(total);
        r.upstream_ttfb_micros = upstream.map_or(0, micros);
        access_log::record(self.entry);
    }

    /// The proxy's hostname (empty when the host matched none).
    pub fn proxy(&self) -> &str {
        &self.entry.record.proxy
    }

    /// The request method.
    pub fn method(&self) -> &str {
        self.entry.method.as_str()
    }

    /// The response status.
    pub fn status(&self) -> u32 {
        self.entry.record.status
    }

    /// Time from the start of the request to its upstream's response head; `None` when
    /// no upstream answered.
    pub fn upstream_duration(&self) -> Option<Duration> {
        self.upstream_head
            .map(|head| head.saturating_duration_since(self.start))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "",
    }
}

fn refusal_reason(rejection: &Rejection) -> String {
    let challenge = rejection.challenge().and_then(|v| v.to_str().ok());
    if let Some(challenge) = challenge {
        if let Some(rest) = challenge.split("error=\"").nth(1) {
            let code = rest.split('"').next().unwrap_or_default();
            // OAuth error codes are short tokens; anything else is not copied.
            if !code.is_empty()
                && code.len() <= 32
                && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                return code.to_owned();
            }
        }
        return "missing_token".to_owned();
    }
    rejection.status().as_u16().to_string()
}

/// The response body, counting its bytes; completes the observation on its end or drop.
struct ObservedBody {
    inner: ProxyBody,
    observation: Option<Box<Observation>>,
    bytes: u64,
    /// When the last frame was read (the end of the response as the client saw it).
    ended: Option<Instant>,
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.inner.is_end_stream() {
                    this.ended = Some(Instant::now());
                }
            }
            Poll::Ready(_) => this.ended = Some(Instant::now()),
            Poll::Pending => {}
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

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(o) = self.observation.take() {
            o.finish(self.bytes, self.ended.unwrap_or_else(Instant::now));
        }
    }
}

/// The TLVs of the connection's PROXY v2 header: authority, unique id (hex), ALPN, SSL.
fn balancer_tlvs(r: &mut AccessLogRecord, h: &crate::peer::ProxyHeader) {
    if let Some(a) = &h.authority {
        r.proxy_authority = a.to_string();
    }
    if let Some(id) = &h.unique_id {
        r.proxy_unique_id = hex_bytes(id);
    }
    if let Some(alpn) = &h.alpn {
        r.proxy_alpn = String::from_utf8_lossy(alpn).into_owned();
    }
    if let Some(ssl) = &h.ssl {
        r.proxy_ssl_client = u32::from(ssl.client);
        r.proxy_ssl_verify = ssl.verify;
        r.proxy_ssl_version = ssl.version.as_deref().unwrap_or_default().to_owned();
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Lower-case hex of a W3C trace id, as the collector and `traceparent` show it.
fn hex(id: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in id {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}
