//! What one request did, for its access-log record ([`crate::access_log`]).
//!
//! [`Observe::start`] runs first in [`super::handle`] and takes the request's own facts
//! (method, host, path, HTTP version, client, user agent, request id, `Mcp-Session-Id`,
//! the connection's PROXY v2 TLVs). Each phase then adds what it decided through one small
//! call: the proxy (and the query string, if the proxy opts in), the admission (route,
//! user and `client_id` from the verified claims) or the refusal and its reason, the
//! upstream and when its response head arrived. [`Observe::end`] takes the response's
//! status and returns the request's [`Ending`], which the response body carries (hyper's
//! service keeps it in its own body wrapper; [`Ending::wrap`] boxes one for other
//! callers); when that body ends or is dropped (client gone, stream closed), or for a
//! relayed WebSocket when the relay closes (bytes are those copied each way), the record is
//! complete and [`Observation::finish`] hands it to the access log. That is the single
//! point where a request is over: duration, status and upstream time are final.
//!
//! **Costs.** When [`access_log::enabled`] is false, [`Observe`] is `None` and every call
//! is one branch: nothing is allocated or copied. When on: the free-form strings (client,
//! host, path, request id, user agent, …) are copied into one buffer of the observation,
//! already as protobuf fields ([`access_log::Strings`]: the control-plane sink's form), so
//! the record is written with one copy of that buffer and its dozen fixed fields
//! ([`access_log::Fixed`]); the stdout sink reads the same strings through their spans.
//! Observations are recycled per worker thread ([`POOL`]), so a warm worker allocates
//! nothing per request for its records.
//!
//! **Secrets.** Only the fields listed are copied; no header but `User-Agent`,
//! `X-Request-Id` and `Mcp-Session-Id` is read, and the query string is recorded only for a
//! proxy that opts in (`log_query`), through [`access_log::redact_query`], so
//! `Authorization`, cookies, codes and tokens cannot reach a record.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::USER_AGENT;
use http::{HeaderName, HeaderValue, Method, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::host::RequestHost;
use super::upgrade::RelayClosed;
use super::{ConnInfo, Listener};
use crate::access_log::{self, Strings, Text};
use crate::answer::Rejection;
use crate::body::{BoxError, Progress, ProxyBody};
use crate::peer::ProxyHeader;
use crate::upstream::Upstream;
use crate::vhost::{Admitted, Proxy};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The observation of one request, or nothing when access logging is off.
#[derive(Debug, Default)]
pub(crate) struct Observe(Option<Box<Observation>>);

/// A request's own facts, as [`Observe::start`] reads them (header values as sent,
/// empty when absent; recorded as `to_str` gives them: empty unless visible ASCII).
pub(crate) struct Facts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) version: Version,
    /// The host as sent (replaced by the routed form at [`Observe::proxy`]).
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) request_id: &'a [u8],
    pub(crate) user_agent: &'a [u8],
    pub(crate) mcp_session_id: &'a [u8],
}

/// One request's facts, gathered phase by phase; complete at [`Observation::finish`].
#[derive(Debug)]
pub struct Observation {
    /// The free-form fields, already as `AccessLogRecord` protobuf fields. A replaced
    /// field is written again (protobuf takes a field's last occurrence), its old value
    /// left behind until the observation is recycled.
    strings: Strings,
    time_unix_nanos: i64,
    start: Instant,
    /// When the upstream's response head arrived; `None` when no upstream answered.
    upstream_head: Option<Instant>,
    /// The forwarded request body's progress (its bytes); `None` without a body.
    request_body: Option<Arc<Progress>>,
    /// Bytes relayed to the upstream when there is no body to ask (WebSocket).
    request_bytes: u64,
    listener: &'static str,
    method: Method,
    http_version: &'static str,
    auth: &'static str,
    status: u16,
    client_port: u16,
    ssl_client: u8,
    ssl_verify: u32,
}

/// Observations recycled per thread (with their text buffer's capacity), at most this many.
const POOL_SIZE: usize = 256;
/// A text buffer larger than this is not kept for the next request.
const POOL_TEXT_BYTES: usize = 4096;

thread_local! {
    /// Finished observations of this thread, ready for the next request (boxed as
    /// [`Observe`] holds them: moving one in or out of the pool is a pointer copy).
    #[allow(clippy::vec_box)]
    static POOL: RefCell<Vec<Box<Observation>>> = const { RefCell::new(Vec::new()) };
}

impl Observe {
    /// Starts observing `req` (before anything about it is decided); `None` inside when
    /// access logging is off. `started` is when the request path began (the metrics'
    /// clock too: one reading).
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
        fn text(v: Option<&HeaderValue>) -> &str {
            v.and_then(|v| v.to_str().ok()).unwrap_or_default()
        }
        // The three headers read, in one pass over the few a request has (three hashed
        // look-ups cost more); the first value of each, as `HeaderMap::get` gives.
        let (mut host, mut user_agent, mut mcp_session) = (None, None, None);
        for (name, value) in headers {
            if *name == http::header::HOST {
                host.get_or_insert(value);
            } else if *name == USER_AGENT {
                user_agent.get_or_insert(value);
            } else if *name == MCP_SESSION_ID {
                mcp_session.get_or_insert(value);
            }
        }
        fn bytes(v: Option<&HeaderValue>) -> &[u8] {
            v.map_or(&[], HeaderValue::as_bytes)
        }
        let facts = Facts {
            method: req.method(),
            version: req.version(),
            host: req.uri().host().unwrap_or_else(|| text(host)),
            path: req.uri().path(),
            request_id: request_id.as_bytes(),
            user_agent: bytes(user_agent),
            mcp_session_id: bytes(mcp_session),
        };
        // The same client every decision sees: the PROXY header's source, or the rightmost
        // untrusted `X-Forwarded-For` entry behind a trusted forwarder.
        let client = conn.client_of(headers);
        Self::begin(
            conn,
            &client,
            &facts,
            crate::trace::trace_id_of(req),
            started,
        )
    }

    /// [`Self::start`] for a request head that is not a `Request` value (the HTTP/1.1
    /// fast path, [`super::h1`]): its facts as text, the client the connection's own
    /// (that path takes no connection from a trusted forwarder), no trace id (that
    /// path takes no request while tracing is on).
    pub(crate) fn start_head(
        conn: &ConnInfo,
        facts: &Facts<'_>,
        started: std::time::Instant,
    ) -> Self {
        if !access_log::enabled() {
            return Self(None);
        }
        // The connection's own client, as `client_of` gives it without forwarded headers
        // (built here: an empty `HeaderMap` to pass costs more than the record's field).
        let client = super::Client {
            ip: conn.client,
            header: std::borrow::Cow::Borrowed(&conn.client_ip),
        };
        Self::begin(conn, &client, facts, None, started)
    }

    /// Fills an observation (recycled from this thread's pool) with the request's facts.
    fn begin(
        conn: &ConnInfo,
        client: &super::Client<'_>,
        facts: &Facts<'_>,
        trace_id: Option<[u8; 16]>,
        started: std::time::Instant,
    ) -> Self {
        let mut o = POOL
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| Box::new(Observation::new()));
        // Header values as `HeaderValue::to_str` takes them (visible ASCII, else empty),
        // checked as they are copied.
        o.strings
            .set_visible(Text::ClientIp, client.header.as_bytes());
        o.client_port = conn.client_port_for(client.ip);
        o.strings.set(Text::Host, facts.host);
        o.strings.set(Text::Path, facts.path);
        o.strings.set_visible(Text::RequestId, facts.request_id);
        o.strings.set_visible(Text::UserAgent, facts.user_agent);
        o.strings
            .set_visible(Text::McpSessionId, facts.mcp_session_id);
        if let Some(id) = trace_id {
            o.strings.set_hex(Text::TraceId, &id);
        }
        if let Some(h) = conn.proxy_header() {
            o.balancer_tlvs(h);
        }
        o.time_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        o.start = Instant::from_std(started);
        o.listener = match conn.listener {
            Listener::Http { .. } => "http",
            Listener::Https => "https",
        };
        o.method = facts.method.clone();
        o.http_version = version(facts.version);
        Self(Some(o))
    }

    /// Phase 0: the path as normalised (what every later phase and the upstream see).
    pub(crate) fn path(&mut self, path: &str) {
        if let Some(o) = &mut self.0
            && o.strings.get(Text::Path) != path.as_bytes()
        {
            o.strings.set(Text::Path, path);
        }
    }

    /// Phase 1: the proxy the host resolved to, and the host in its normal form (no
    /// port, lower case); until then `host` is the client's Host as sent. The query
    /// string is kept only when the proxy opts in, and then without credentials.
    pub(crate) fn proxy(&mut self, proxy: &Proxy, host: &RequestHost, query: Option<&str>) {
        self.proxy_named(proxy, host.name(), query);
    }

    /// [`Self::proxy`] with the host's normal form as text.
    pub(crate) fn proxy_named(&mut self, proxy: &Proxy, host: &str, query: Option<&str>) {
        if let Some(o) = &mut self.0 {
            if proxy.log_query()
                && let Some(query) = query
            {
                o.strings
                    .set(Text::Query, &access_log::redact_query(query, true));
            }
            o.strings.set(Text::Proxy, proxy.hostname());
            if o.strings.get(Text::Host) != host.as_bytes() {
                o.strings.set(Text::Host, host);
            }
        }
    }

    /// Phase 2, admitted: the route and, from a verified token, the user (`login`, else
    /// `sub`) and `client_id`; `auth` is `admitted` only when a token or session was.
    pub(crate) fn admitted(&mut self, admitted: &Admitted<'_>) {
        let Some(o) = &mut self.0 else { return };
        if let Some(route) = admitted.route() {
            o.strings.set(Text::Route, route.id());
        }
        if let Some(claims) = admitted.claims() {
            o.auth = "admitted";
            let user = if claims.login.is_empty() {
                &claims.sub
            } else {
                &claims.login
            };
            o.strings.set(Text::User, user);
            o.strings.set(Text::ClientId, &claims.client_id);
        }
    }

    /// Phase 2, refused: `auth` is `refused` and the reason is the OAuth error of the
    /// challenge (`invalid_token`, `insufficient_scope`), `missing_token` for a bare
    /// challenge, else the status code.
    pub(crate) fn refused(&mut self, rejection: &Rejection) {
        let Some(o) = &mut self.0 else { return };
        o.auth = "refused";
        o.strings.set(Text::AuthReason, &refusal_reason(rejection));
    }

    /// Phase 3: the upstream the request goes to.
    pub(crate) fn upstream(&mut self, upstream: &Upstream) {
        if let Some(o) = &mut self.0 {
            o.strings
                .set(Text::Upstream, upstream.target().authority().as_str());
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

    /// [`Self::upstream_answered`] at `at`, a clock reading the caller made anyway.
    pub(crate) fn upstream_answered_at(&mut self, at: std::time::Instant) {
        if let Some(o) = &mut self.0 {
            o.upstream_head = Some(Instant::from_std(at));
        }
    }

    /// Takes the response's status; returns the [`Ending`] its body must carry (the record
    /// is written when that is dropped), or none when not observing or when the response
    /// is a relayed WebSocket (recorded when the relay closes).
    pub(crate) fn end(self, response: &mut Response<ProxyBody>) -> Ending {
        let Some(mut o) = self.0 else {
            return Ending::default();
        };
        o.status = response.status().as_u16();
        // One pass over the response's few headers (a hashed look-up costs more); the
        // first value, as `HeaderMap::get` gives.
        if o.strings.get(Text::McpSessionId).is_empty()
            && let Some((_, value)) = response
                .headers()
                .iter()
                .find(|(name, _)| **name == MCP_SESSION_ID)
            && let Ok(id) = value.to_str()
        {
            o.strings.set(Text::McpSessionId, id);
        }
        if let Some(closed) = response
            .extensions_mut()
            .remove::<RelayClosed>()
            .and_then(|relay| relay.take())
        {
            tokio::spawn(async move {
                let (to_upstream, to_client) = closed.await.unwrap_or_default();
                o.request_body = None;
                o.request_bytes = to_upstream;
                o.finish(to_client, Instant::now());
            });
            return Ending::default();
        }
        Ending {
            observation: Some(o),
            bytes: 0,
            ended: None,
        }
    }
}

impl Observe {
    /// [`Self::end`] for a response relayed without a `Response` value (the HTTP/1.1
    /// fast path, [`super::h1`]): its status, the `Mcp-Session-Id` it carried, and the
    /// body bytes written to the client, once they are (or once the relay broke off).
    pub(crate) fn finish_relayed(self, status: u16, mcp_session_id: Option<&str>, bytes: u64) {
        let Some(mut o) = self.0 else { return };
        o.status = status;
        if o.strings.get(Text::McpSessionId).is_empty()
            && let Some(id) = mcp_session_id
        {
            o.strings.set(Text::McpSessionId, id);
        }
        o.finish(bytes, Instant::now());
    }
}

impl Observation {
    fn new() -> Self {
        Self {
            strings: Strings::with_capacity(320),
            time_unix_nanos: 0,
            start: Instant::now(),
            upstream_head: None,
            request_body: None,
            request_bytes: 0,
            listener: "",
            method: Method::GET,
            http_version: "",
            auth: "none",
            status: 0,
            client_port: 0,
            ssl_client: 0,
            ssl_verify: 0,
        }
    }

    /// The TLVs of the connection's PROXY v2 header: authority, unique id (hex), ALPN,
    /// SSL.
    fn balancer_tlvs(&mut self, h: &ProxyHeader) {
        if let Some(a) = &h.authority {
            self.strings.set(Text::ProxyAuthority, a);
        }
        if let Some(id) = &h.unique_id {
            self.strings.set_hex(Text::ProxyUniqueId, id);
        }
        if let Some(alpn) = &h.alpn {
            self.strings
                .set(Text::ProxyAlpn, &String::from_utf8_lossy(alpn));
        }
        if let Some(ssl) = &h.ssl {
            self.ssl_client = ssl.client;
            self.ssl_verify = ssl.verify;
            self.strings.set(
                Text::ProxySslVersion,
                ssl.version.as_deref().unwrap_or_default(),
            );
        }
    }

    /// The request is over (its response body ended, or was dropped at `end`): hands the
    /// record to the access log and the observation back to this thread's pool. The one
    /// place every observed request passes exactly once; per-request metrics belong here.
    fn finish(self: Box<Self>, response_bytes: u64, end: Instant) {
        let total = end.saturating_duration_since(self.start);
        let request_bytes = match &self.request_body {
            Some(progress) => progress.bytes(),
            None => self.request_bytes,
        };
        let o = &*self;
        let fixed = access_log::Fixed {
            time_unix_nanos: o.time_unix_nanos,
            listener: o.listener,
            client_port: u32::from(o.client_port),
            method: o.method.as_str(),
            http_version: o.http_version,
            status: u32::from(o.status),
            request_body_bytes: request_bytes,
            response_body_bytes: response_bytes,
            duration_micros: micros(total),
            upstream_ttfb_micros: o.upstream_duration().map_or(0, micros),
            auth: o.auth,
            proxy_ssl_client: u32::from(o.ssl_client),
            proxy_ssl_verify: o.ssl_verify,
        };
        access_log::record_strings(&fixed, &o.strings);
        self.recycle();
    }

    /// Clears this observation and keeps it for this thread's next request.
    fn recycle(mut self: Box<Self>) {
        if self.strings.capacity() > POOL_TEXT_BYTES {
            return;
        }
        self.strings.clear();
        self.upstream_head = None;
        self.request_body = None;
        self.request_bytes = 0;
        self.auth = "none";
        self.status = 0;
        self.ssl_client = 0;
        self.ssl_verify = 0;
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_SIZE {
                pool.push(self);
            }
        });
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

/// The end of an observed response: counts its body's bytes as they are polled, notes
/// when the last one was, and completes the observation ([`Observation::finish`]) when
/// dropped. Carried by the response body (no box of its own in hyper's service); empty
/// (every call one branch) when not observing.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    observation: Option<Box<Observation>>,
    bytes: u64,
    /// When the last frame was read (the end of the response as the client saw it).
    ended: Option<Instant>,
}

impl Ending {
    /// Notes what polling `body` gave.
    #[inline]
    pub(crate) fn polled<B: Body, E>(
        &mut self,
        polled: &Poll<Option<Result<Frame<Bytes>, E>>>,
        body: &B,
    ) {
        if self.observation.is_none() || self.ended.is_some() {
            return;
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                if body.is_end_stream() {
                    self.ended = Some(Instant::now());
                }
            }
            Poll::Ready(_) => self.ended = Some(Instant::now()),
            Poll::Pending => {}
        }
    }

    /// `response` with its body carrying this ending (boxed once more; for callers of
    /// [`super::handle`] without a body wrapper of their own), or as it is when not
    /// observing.
    pub(crate) fn wrap(self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        if self.observation.is_none() {
            return response;
        }
        response.map(|inner| {
            ObservedBody {
                inner,
                ending: self,
            }
            .boxed()
        })
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(o) = self.observation.take() {
            o.finish(self.bytes, self.ended.unwrap_or_else(Instant::now));
        }
    }
}

/// A response body carrying its [`Ending`].
struct ObservedBody {
    inner: ProxyBody,
    ending: Ending,
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
