//! What one request did, for its access-log record ([`crate::access_log`]).
//!
//! [`Observe::start`] runs first in [`super::handle`] and takes the request's own facts
//! (method, host, path, HTTP version, client, user agent, request id, `Mcp-Session-Id`,
//! the connection's PROXY v2 TLVs). Each phase then adds what it decided through one small
//! call: the proxy (and the query string, if the proxy opts in), the admission (route,
//! user and `client_id` from the verified claims) or the refusal and its reason, the
//! upstream and when its response head arrived. [`Observe::finish`] wraps the response
//! body; when that body ends or is dropped (client gone, stream closed), or for a relayed
//! WebSocket when the relay closes (bytes are those copied each way), the record is
//! complete and [`Observation::finish`] hands its [`access_log::Fields`] to the access
//! log, which encodes them. That is the single point where a request is over: duration,
//! status and upstream time are final.
//!
//! **Costs.** When [`access_log::enabled`] is false, [`Observe`] is `None` and every call
//! is one branch: nothing is allocated or copied. When on: the free-form strings (client,
//! host, path, request id, user agent, …) are copied into one text buffer of the
//! observation, and observations are recycled per worker thread ([`POOL`]), so a warm
//! worker allocates nothing per request for its records but the response body's box.
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
use crate::access_log;
use crate::answer::Rejection;
use crate::body::{BoxError, Progress, ProxyBody};
use crate::peer::ProxyHeader;
use crate::upstream::Upstream;
use crate::vhost::{Admitted, Proxy};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The observation of one request, or nothing when access logging is off.
#[derive(Debug, Default)]
pub(crate) struct Observe(Option<Box<Observation>>);

/// A request's own facts, as [`Observe::start`] reads them (header values as `to_str`
/// gives them: empty when absent or not visible ASCII).
pub(crate) struct Facts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) version: Version,
    /// The host as sent (replaced by the routed form at [`Observe::proxy`]).
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) user_agent: &'a str,
    pub(crate) mcp_session_id: &'a str,
}

/// The record's free-form fields, each a span of [`Observation::text`].
#[derive(Clone, Copy, Debug)]
enum Text {
    ClientIp,
    Host,
    Path,
    Query,
    Upstream,
    Proxy,
    Route,
    AuthReason,
    User,
    ClientId,
    RequestId,
    TraceId,
    UserAgent,
    McpSessionId,
    ProxyAuthority,
    ProxyUniqueId,
    ProxyAlpn,
    ProxySslVersion,
}

const TEXTS: usize = Text::ProxySslVersion as usize + 1;

/// One request's facts, gathered phase by phase; complete at [`Observation::finish`].
#[derive(Debug)]
pub struct Observation {
    /// The free-form fields, one after the other (a replaced field leaves its old text
    /// behind until the observation is recycled).
    text: String,
    /// Where each [`Text`] field is in `text` (empty when unset).
    spans: [(u32, u32); TEXTS],
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
        let facts = Facts {
            method: req.method(),
            version: req.version(),
            host: req.uri().host().unwrap_or_else(|| text(host)),
            path: req.uri().path(),
            request_id: text(Some(request_id)),
            user_agent: text(user_agent),
            mcp_session_id: text(mcp_session),
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
        let client = conn.client_of(&http::HeaderMap::new());
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
        o.set(Text::ClientIp, client.header.to_str().unwrap_or_default());
        o.client_port = conn.client_port_for(client.ip);
        o.set(Text::Host, facts.host);
        o.set(Text::Path, facts.path);
        o.set(Text::RequestId, facts.request_id);
        o.set(Text::UserAgent, facts.user_agent);
        o.set(Text::McpSessionId, facts.mcp_session_id);
        if let Some(id) = trace_id {
            o.set_hex(Text::TraceId, &id);
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
            && o.get(Text::Path) != path
        {
            o.set(Text::Path, path);
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
                o.set(Text::Query, &access_log::redact_query(query, true));
            }
            o.set(Text::Proxy, proxy.hostname());
            if o.get(Text::Host) != host {
                o.set(Text::Host, host);
            }
        }
    }

    /// Phase 2, admitted: the route and, from a verified token, the user (`login`, else
    /// `sub`) and `client_id`; `auth` is `admitted` only when a token or session was.
    pub(crate) fn admitted(&mut self, admitted: &Admitted<'_>) {
        let Some(o) = &mut self.0 else { return };
        if let Some(route) = admitted.route() {
            o.set(Text::Route, route.id());
        }
        if let Some(claims) = admitted.claims() {
            o.auth = "admitted";
            let user = if claims.login.is_empty() {
                &claims.sub
            } else {
                &claims.login
            };
            o.set(Text::User, user);
            o.set(Text::ClientId, &claims.client_id);
        }
    }

    /// Phase 2, refused: `auth` is `refused` and the reason is the OAuth error of the
    /// challenge (`invalid_token`, `insufficient_scope`), `missing_token` for a bare
    /// challenge, else the status code.
    pub(crate) fn refused(&mut self, rejection: &Rejection) {
        let Some(o) = &mut self.0 else { return };
        o.auth = "refused";
        o.set(Text::AuthReason, &refusal_reason(rejection));
    }

    /// Phase 3: the upstream the request goes to.
    pub(crate) fn upstream(&mut self, upstream: &Upstream) {
        if let Some(o) = &mut self.0 {
            o.set(Text::Upstream, upstream.target().authority().as_str());
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
        o.status = response.status().as_u16();
        if o.get(Text::McpSessionId).is_empty()
            && let Some(id) = response
                .headers()
                .get(MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
        {
            o.set(Text::McpSessionId, id);
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

impl Observe {
    /// [`Self::finish`] for a response relayed without a `Response` value (the HTTP/1.1
    /// fast path, [`super::h1`]): its status, the `Mcp-Session-Id` it carried, and the
    /// body bytes written to the client, once they are (or once the relay broke off).
    pub(crate) fn finish_relayed(self, status: u16, mcp_session_id: Option<&str>, bytes: u64) {
        let Some(mut o) = self.0 else { return };
        o.status = status;
        if o.get(Text::McpSessionId).is_empty()
            && let Some(id) = mcp_session_id
        {
            o.set(Text::McpSessionId, id);
        }
        o.finish(bytes, Instant::now());
    }
}

impl Observation {
    fn new() -> Self {
        Self {
            text: String::with_capacity(256),
            spans: [(0, 0); TEXTS],
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

    fn set(&mut self, field: Text, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.spans[field as usize] = (start as u32, self.text.len() as u32);
    }

    /// `bytes` as lower-case hex.
    fn set_hex(&mut self, field: Text, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let start = self.text.len();
        for b in bytes {
            self.text.push(char::from(HEX[usize::from(b >> 4)]));
            self.text.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        self.spans[field as usize] = (start as u32, self.text.len() as u32);
    }

    fn get(&self, field: Text) -> &str {
        let (start, end) = self.spans[field as usize];
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The TLVs of the connection's PROXY v2 header: authority, unique id (hex), ALPN,
    /// SSL.
    fn balancer_tlvs(&mut self, h: &ProxyHeader) {
        if let Some(a) = &h.authority {
            self.set(Text::ProxyAuthority, a);
        }
        if let Some(id) = &h.unique_id {
            self.set_hex(Text::ProxyUniqueId, id);
        }
        if let Some(alpn) = &h.alpn {
            self.set(Text::ProxyAlpn, &String::from_utf8_lossy(alpn));
        }
        if let Some(ssl) = &h.ssl {
            self.ssl_client = ssl.client;
            self.ssl_verify = ssl.verify;
            self.set(
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
        access_log::record(&access_log::Fields {
            time_unix_nanos: o.time_unix_nanos,
            listener: o.listener,
            client_ip: o.get(Text::ClientIp),
            client_port: u32::from(o.client_port),
            method: o.method.as_str(),
            host: o.get(Text::Host),
            path: o.get(Text::Path),
            query: o.get(Text::Query),
            http_version: o.http_version,
            status: u32::from(o.status),
            request_body_bytes: request_bytes,
            response_body_bytes: response_bytes,
            duration_micros: micros(total),
            upstream_ttfb_micros: o.upstream_duration().map_or(0, micros),
            upstream: o.get(Text::Upstream),
            proxy: o.get(Text::Proxy),
            route: o.get(Text::Route),
            auth: o.auth,
            auth_reason: o.get(Text::AuthReason),
            user: o.get(Text::User),
            client_id: o.get(Text::ClientId),
            request_id: o.get(Text::RequestId),
            trace_id: o.get(Text::TraceId),
            user_agent: o.get(Text::UserAgent),
            mcp_session_id: o.get(Text::McpSessionId),
            proxy_authority: o.get(Text::ProxyAuthority),
            proxy_unique_id: o.get(Text::ProxyUniqueId),
            proxy_alpn: o.get(Text::ProxyAlpn),
            proxy_ssl_version: o.get(Text::ProxySslVersion),
            proxy_ssl_client: u32::from(o.ssl_client),
            proxy_ssl_verify: o.ssl_verify,
        });
        self.recycle();
    }

    /// Clears this observation and keeps it for this thread's next request.
    fn recycle(mut self: Box<Self>) {
        if self.text.capacity() > POOL_TEXT_BYTES {
            return;
        }
        self.text.clear();
        self.spans = [(0, 0); TEXTS];
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
