//! The HTTP/1.1 fast path (`--h1-fast-path`, on by default; `--h1-fast-path false` turns
//! it off): the common keep-alive request forwarded as bytes, without hyper and without
//! building a `HeaderMap` on either side.
//!
//! **Why.** A keep-alive request through hyper costs ~40k instructions, spread over two
//! `HeaderMap`s built and torn down, hyper's client and server state machines and their
//! body channels, and timers (bench/README.md, finding 5). Here the request head is
//! parsed with `httparse` (the parser hyper itself uses) into an array of slices, checked,
//! and written to a bare pooled upstream connection with the same rewrites as
//! [`super::forward`] does; the response head is parsed the same way, rewritten, and the
//! body relayed by copying.
//!
//! **What it takes, and who decides the rest.** [`serve`] only ever *forwards*; any
//! request it would have to answer itself (every refusal, redirect, ACME answer, 404,
//! 400, 431, 508), and every request that is not the plain case, it hands back
//! ([`Step::Fallback`]) *before anything was written anywhere*, and the connection gives
//! the unchanged bytes to hyper, whose path decides exactly as it always has. Taken:
//! HTTP/1.1; origin-form target of plain URI characters whose path normalises
//! ([`crate::path`]); exactly one valid Host; no body (no `Transfer-Encoding`, at most one
//! `Content-Length: 0`); no `Upgrade`, `Expect`, `TE`, `Trailer`, `Keep-Alive`,
//! `Proxy-Connection`, `Via`, `HTTP2-Settings`; `Connection` naming only `keep-alive` /
//! `close`; at most 64 headers, a head within `--max-request-header-bytes`; either
//! listener (on HTTPS, every connection that speaks HTTP/1.1: ALPN `http/1.1`, or none
//! and no HTTP/2 preface), client not a trusted forwarder; a host known to that
//! listener's host table whose proxy admits it through [`vhost::admit_head`] (the same
//! route lookup, `blocked` check and bearer verification as [`vhost::admit`], over the
//! head's slices: an open proxy, or one protected by bearer tokens when the token is
//! valid or the path public and no `Origin` came; sessions, CORS and every refusal are
//! hyper's), has no IP allowlist refusing the client, no rate or concurrency limit, and
//! on plain HTTP no HTTPS redirect and no ACME HTTP-01 path; an upstream over plain HTTP
//! without a base path, PROXY header or custom request/response headers; an upstream
//! connection to send on (at `--max-upstream-connections`, a request that finds no idle
//! bare connection and no free slot goes to hyper's path if hyper holds an idle
//! connection there, which it would reuse: [`crate::upstream::Pool::lease_raw`]). Tracing
//! sends every request to hyper (the connection checks, `server::conn::fast`). The access
//! log records fast requests through the same [`Observe`] calls as [`super::handle`]
//! makes ([`observe`]; its `listener` field from the connection), metrics count them as
//! it does (the request when its response head is ready, the upstream's answer time), and
//! upstream failures are logged and answered by the same [`super::failed`]. There is no
//! SNI rule to repeat: neither path compares the Host with the TLS server name.
//!
//! **Rewrites** (as [`super::forward`] and [`super::headers`]): `Connection` and
//! `Forwarded` dropped, every header [`crate::auth::is_client_claim`] names dropped (as
//! [`vhost::admit`] strips them), for a protected proxy the bearer `Authorization` dropped
//! and the verified identity set (as [`crate::auth::apply_identity`] does), `Host` set
//! (the target's, or the client's with `preserve_host`), `X-Forwarded-For` / `X-Real-IP`
//! from the connection, `X-Forwarded-Proto` (`http` or `https`: the listener's),
//! `X-Forwarded-Host`, this process's `Via`, `X-Request-Id` (the client's if sane, else a
//! new one; [`super::request_id`]).
//!
//! **Responses.** 1xx other than 101 are skipped (as hyper's client does); 101 is 502
//! (no upgrade was asked for). Hop-by-hop headers and those `Connection` names are
//! dropped, `X-Request-Id` set, `Date` added when missing (as hyper's server does); on
//! HTTPS the proxy's `Strict-Transport-Security`, when it has one, replaces the
//! upstream's (error answers get it too, as through [`super::handle`]). Framing: none
//! for `HEAD`, 204 and 304; `Content-Length` (one value, or equal repeats) relayed by
//! length; `Transfer-Encoding: chunked` decoded strictly and re-chunked (chunk
//! extensions and trailers are not forwarded, as through hyper); no length: read to the
//! upstream's close and chunked to the client. Refused as 502 (stricter than hyper):
//! `Content-Length` with `Transfer-Encoding`, differing lengths, a transfer coding other
//! than `chunked`, a head over 64 KiB or 100 headers. A body that breaks off (upstream
//! closes early, idle timeout, bad chunk) cuts the client connection, as through hyper.
//! An upstream connection goes back to its pool only after a complete, exactly framed
//! HTTP/1.1 response without `Connection: close`.
//!
//! **A client that leaves.** While the response head is awaited the client connection is
//! read too, as hyper's server reads it mid-message (only when nothing of a next request
//! is buffered): when the client closes, the exchange is dropped (the upstream connection
//! closes, never pooled) and, as through hyper, neither metrics nor the access log record
//! the request. Bytes that arrive instead (a pipelined request) are kept for the next
//! request ([`Buffers::take_read_ahead`]).
//!
//! **Costs.** Per request: the head parse, one pass over the headers, the normalised
//! path's check, a host lookup, a route lookup, one write upstream, one read of the
//! response (usually with its body), one write to the client (head and body together:
//! over TLS one record), flushed ([`send`]). No allocation in the steady state (the
//! connection's buffers are reused). The read timeout is one timer per connection
//! ([`Buffers`]), moved to each request's deadline: registered with tokio's timer wheel
//! once, then only re-dated (a timer per request was inserted and removed each time).
//! Header slots are left uninitialised for httparse to fill.

use std::pin::Pin;
use std::time::Instant;

use http::header::STRICT_TRANSPORT_SECURITY;
use http::uri::Scheme;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

use super::observe::Facts;
use super::{ConnInfo, Listener, Observe, ProxyError, headers, request_id};
use crate::auth::{self, Origin};
use crate::config::Snapshot;
use crate::metrics;
use crate::path;
use crate::router::NormalizedHost;
use crate::store::ConfigStore;
use crate::upstream::{ClientError, Lease, RawConn, SendProxy, Upstream};
use crate::vhost::{self, Admitted, Proxy};

/// Most request headers taken (more: hyper's path).
const MAX_HEADERS: usize = 64;
/// Most response headers accepted (hyper's client default).
const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Upstream reads of a response head ask for at least this much room.
const READ_CHUNK: usize = 16 * 1024;
/// Upstream reads of a response body ask for this much room: one read and one write per
/// 64 KiB instead of four each (hyper's read buffer grows the same way; the buffer is
/// dropped when the connection parks, so idle connections do not hold it).
const BODY_CHUNK: usize = 64 * 1024;
/// Longest header name compared against the client-claim rules (longer: hyper's path).
const MAX_NAME: usize = 128;
/// Most bytes of chunk extensions and trailers skipped per response.
const MAX_CHUNK_META: usize = 16 * 1024;
/// Room asked for when the client is read while its response is awaited.
const READ_AHEAD: usize = 1024;

/// What became of the bytes at the start of the connection's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// No complete head yet.
    Partial,
    /// Not for the fast path: nothing was written anywhere; hyper's path must serve the
    /// same bytes.
    Fallback,
    /// Answered; the request took the first `consumed` bytes.
    Served {
        consumed: usize,
        /// False when the client asked to close (`Connection: close`).
        keep_alive: bool,
    },
    /// The connection must close now (the response broke off, or the client is gone).
    Close,
}

/// Buffers one connection reuses for every request: the head written upstream (then
/// the response written to the client), what is read from the upstream, and what the
/// client sent while its response was awaited ([`client_gone`]); and the timer of the
/// response head's read timeout.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    out: Vec<u8>,
    up: Vec<u8>,
    read_ahead: Vec<u8>,
    /// The read timeout ([`exchange`]), kept for the connection's next request: moved to a
    /// later deadline it stays in tokio's timer wheel (one atomic store), where a timer
    /// per request was inserted into and removed from it under the driver's lock
    /// (bench/README.md finding 9).
    timer: Option<Pin<Box<Sleep>>>,
}

impl Buffers {
    /// Moves the bytes the client sent while its last response was awaited (the start of
    /// a pipelined request) to the end of the connection's buffer.
    pub(crate) fn take_read_ahead(&mut self, buf: &mut bytes::BytesMut) {
        if !self.read_ahead.is_empty() {
            buf.extend_from_slice(&self.read_ahead);
            self.read_ahead.clear();
        }
    }
}

/// A request head that qualified, as slices of the connection's buffer.
struct Head<'b> {
    method: Method,
    /// The normalised path, and the query as sent.
    path: std::borrow::Cow<'b, str>,
    query: Option<&'b str>,
    host: Host<'b>,
    /// The Host as sent (visible ASCII).
    host_raw: &'b [u8],
    /// The same, as text (checked once, here).
    authority: &'b str,
    request_id: Option<&'b [u8]>,
    /// The first `User-Agent` and `Mcp-Session-Id`, for the access log (found by the same
    /// pass over the headers as everything else).
    user_agent: Option<&'b [u8]>,
    mcp_session_id: Option<&'b [u8]>,
    keep_alive: bool,
    consumed: usize,
}

/// The Host in its normal form ([`NormalizedHost`]): usually a slice of the Host as sent
/// (already lower case, at most a port to strip: no copy, no second UTF-8 check), else a
/// normalised copy (kept inline, not boxed: no allocation for a Host in upper case).
#[allow(clippy::large_enum_variant)]
enum Host<'b> {
    Slice(&'b str),
    Normalized(NormalizedHost),
}

impl Host<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Slice(host) => host,
            Self::Normalized(host) => host.as_str(),
        }
    }
}

/// Serves the request whose head starts `buf`, if it qualifies (module docs); writes the
/// answer to `client`. While the response is awaited the client is read too, as hyper's
/// server reads it ([`client_gone`]); what arrives then is left in `bufs` for
/// [`Buffers::take_read_ahead`].
pub(crate) async fn serve<C: AsyncRead + AsyncWrite + Unpin>(
    store: &ConfigStore,
    conn: &ConnInfo,
    buf: &[u8],
    client: &mut C,
    bufs: &mut Buffers,
    max_head: usize,
) -> Step {
    if conn.forwarder {
        return Step::Fallback;
    }
    let started = Instant::now();
    // Left uninitialised: httparse writes the slots it fills (writing 64 empty headers
    // first was a measurable part of the request).
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Step::Partial,
        Err(_) => return Step::Fallback,
    };
    if head_len > max_head {
        return Step::Fallback;
    }
    let Some(head) = qualify(&req, head_len) else {
        return Step::Fallback;
    };
    let Some(snapshot) = store.load() else {
        return Step::Fallback;
    };
    let Some((proxy, admitted)) = admit(&snapshot, conn, &head, req.headers) else {
        return Step::Fallback;
    };
    let upstream = admitted.upstream();
    if !plain(upstream) {
        return Step::Fallback;
    }
    // As `super::phases`: every answer of a known host on the HTTPS listener carries it.
    let hsts = match conn.listener {
        Listener::Https => proxy.https().hsts(),
        Listener::Http { .. } => None,
    };
    let lease = match upstream.pool().lease_raw() {
        Ok(lease) => Ok(lease),
        // At the bound: hyper's path would reuse its idle connection, so it serves this.
        Err(_) if upstream.pool().has_idle() => return Step::Fallback,
        Err(error) => Err(error),
    };
    let generated;
    let id: &[u8] = match head.request_id {
        Some(sent) => sent,
        None => {
            generated = request_id::generate_hex();
            &generated
        }
    };
    let mut observe = observe(conn, &head, id, started, proxy, &admitted);
    // Committed: from here on this path answers.
    if admitted.claims().is_some() {
        // The token `admit_head` verified (hyper's path counts it in `check`).
        metrics::token_checked(metrics::TokenOutcome::Valid);
    }
    write_request_head(&mut bufs.out, &req, &head, conn, &admitted, id);
    let method = metrics::method_class(&head.method);
    let is_head = head.method == Method::HEAD;
    let sent = Instant::now();
    // hyper's server watches the client only while nothing of the next request is
    // buffered; so does this.
    let watch = buf.len() == head.consumed;
    let exchanged = {
        let Buffers {
            out,
            up,
            read_ahead,
            timer,
        } = &mut *bufs;
        let rules = Rewrite { is_head, hsts };
        let exchange = exchange(upstream, lease, out, up, timer, rules);
        if watch {
            tokio::select! {
                biased;
                exchanged = exchange => Some(exchanged),
                () = client_gone(&mut *client, read_ahead) => None,
            }
        } else {
            Some(exchange.await)
        }
    };
    let Some(exchanged) = exchanged else {
        // As through hyper: the exchange is dropped (the upstream connection closed, not
        // pooled), and neither metrics nor the access log record the request.
        tracing::debug!("client closed before the upstream answered");
        return Step::Close;
    };
    let mut bytes = 0;
    let outcome = match exchanged {
        Ok((upstream_conn, mut response)) => {
            // One clock reading for the upstream's answer time, the request's time to
            // its response head and the record's.
            let answered = Instant::now();
            proxy
                .metrics()
                .upstream_answered(answered.saturating_duration_since(sent));
            observe.upstream_answered_at(answered);
            let status = response.status;
            proxy.metrics().request_finished(
                method,
                status,
                answered.saturating_duration_since(started),
            );
            let mcp_session_id = response.mcp_session_id.take();
            let outcome = relay(
                upstream,
                upstream_conn,
                response,
                bufs,
                client,
                (id, head.keep_alive),
                &mut bytes,
            )
            .await;
            observe.finish_relayed(status, mcp_session_id.as_deref(), bytes);
            outcome
        }
        Err(error) => {
            let mut response = super::failed(&admitted, error);
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            let status = response.status().as_u16();
            proxy
                .metrics()
                .request_finished(method, status, started.elapsed());
            let outcome = write_answer(
                response,
                &mut bufs.out,
                client,
                id,
                head.keep_alive,
                &mut bytes,
            )
            .await;
            observe.finish_relayed(status, None, bytes);
            outcome
        }
    };
    match outcome {
        Ok(()) => Step::Served {
            consumed: head.consumed,
            keep_alive: head.keep_alive,
        },
        Err(()) => Step::Close,
    }
}

/// The request's access-log observation ([`super::observe`]), fed the same facts in the
/// same order as [`super::handle`] feeds it, read from the parsed head's slices (no
/// stand-in `Request`: building one, parsing its Host again and dropping it cost ~3.5k
/// instructions per request, bench/README.md finding 9). Header values are taken as
/// `HeaderValue::to_str` takes them (empty unless visible ASCII), the first of each
/// (found by [`qualify`]'s pass over the headers).
fn observe(
    conn: &ConnInfo,
    head: &Head<'_>,
    id: &[u8],
    started: Instant,
    proxy: &Proxy,
    admitted: &Admitted<'_>,
) -> Observe {
    if !crate::access_log::enabled() {
        return Observe::default();
    }
    let host = head.host.as_str();
    let facts = Facts {
        method: &head.method,
        version: http::Version::HTTP_11,
        host,
        path: &head.path,
        request_id: id,
        user_agent: head.user_agent.unwrap_or_default(),
        mcp_session_id: head.mcp_session_id.unwrap_or_default(),
    };
    let mut observe = Observe::start_head(conn, &facts, started);
    observe.proxy_named(proxy, host, head.query);
    observe.admitted(admitted);
    observe.upstream(admitted.upstream());
    observe
}

/// The checks on the head alone (module docs); `None` sends it to hyper's path.
fn qualify<'b>(req: &httparse::Request<'_, 'b>, consumed: usize) -> Option<Head<'b>> {
    if req.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let target = req.path?;
    if !target.starts_with('/') {
        return None;
    }
    // One pass: the target's bytes checked and its query found.
    let mut query_at = None;
    for (i, b) in target.bytes().enumerate() {
        if !is_plain_target_byte(b) {
            return None;
        }
        if b == b'?' && query_at.is_none() {
            query_at = Some(i);
        }
    }
    let (path, query) = match query_at {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    };
    let path = path::normalize(path).ok()?;
    let mut host = None;
    let mut hosts = 0;
    let mut request_id = None;
    let mut request_ids = 0;
    let mut lengths = 0;
    let mut keep_alive = true;
    let (mut user_agent, mut mcp_session_id) = (None, None);
    for header in req.headers.iter() {
        let name = header.name;
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => {
                hosts += 1;
                host = Some(header.value);
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                keep_alive &= connection_keeps_alive(header.value)?;
            }
            10 if name.eq_ignore_ascii_case("user-agent") => {
                user_agent.get_or_insert(header.value);
            }
            12 if name.eq_ignore_ascii_case("x-request-id") => {
                request_ids += 1;
                request_id = Some(header.value);
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                lengths += 1;
                if header.value != b"0" || lengths > 1 {
                    return None;
                }
            }
            14 if name.eq_ignore_ascii_case("mcp-session-id") => {
                mcp_session_id.get_or_insert(header.value);
            }
            _ if is_refused_request_header(name) => return None,
            _ => {}
        }
    }
    let host_raw = host.filter(|_| hosts == 1)?;
    let authority = std::str::from_utf8(host_raw).ok()?;
    let host = match NormalizedHost::slice_of(authority) {
        // A name and a port: visible ASCII.
        Some(host) => Host::Slice(host),
        None if host_raw.iter().all(|b| (0x20..0x7f).contains(b)) => {
            Host::Normalized(NormalizedHost::parse(authority).ok()?)
        }
        None => return None,
    };
    let request_id = match request_id {
        Some(id) if request_ids == 1 && request_id::is_sane(id) => Some(id),
        _ => None,
    };
    Some(Head {
        method,
        path,
        query,
        host,
        host_raw,
        authority,
        request_id,
        user_agent,
        mcp_session_id,
        keep_alive,
        consumed,
    })
}

/// Bytes of a request target taken as they are: visible ASCII but `"#<>\^`{|}[]`. Anything
/// else goes to hyper's path, whose URI parser decides.
fn is_plain_target_byte(b: u8) -> bool {
    matches!(b, b'!' | b'$'..=b';' | b'=' | b'?'..=b'Z' | b'_' | b'a'..=b'z' | b'~')
}

/// Whether a `Connection` value keeps the connection open (`Some(false)` for `close`);
/// `None` for any token but `keep-alive` and `close` (an upgrade, or hop-by-hop names:
/// hyper's path).
fn connection_keeps_alive(value: &[u8]) -> Option<bool> {
    let mut keep = true;
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            keep = false;
        } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(keep)
}

/// Request headers that send a request to hyper's path: bodies and upgrades, hop-by-hop
/// fields it handles, and `Via` (its loop check).
fn is_refused_request_header(name: &str) -> bool {
    // Most names are none of these lengths: one comparison instead of nine.
    if !matches!(name.len(), 2 | 3 | 6 | 7 | 10 | 14 | 16 | 17) {
        return false;
    }
    const REFUSED: [&str; 8] = [
        "transfer-encoding",
        "upgrade",
        "expect",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
        "via",
    ];
    REFUSED.iter().any(|r| r.eq_ignore_ascii_case(name))
        || name.eq_ignore_ascii_case("http2-settings")
}

/// Phases 0–3 for a qualified head: ACME paths, host, proxy, and the admission
/// ([`vhost::admit_head`]: open proxies, and protected ones for a valid bearer token);
/// `None` for anything hyper's path must answer.
fn admit<'s>(
    snapshot: &'s Snapshot,
    conn: &ConnInfo,
    head: &Head<'_>,
    headers: &[httparse::Header<'_>],
) -> Option<(&'s Proxy, Admitted<'s>)> {
    // As `super::phases`: ACME answers and redirects on plain HTTP only, and each
    // listener its own host table.
    let (hosts, secure) = match conn.listener {
        Listener::Http { .. } => {
            if crate::tls::http01_token(&head.path).is_some() {
                return None;
            }
            (snapshot.http_hosts(), false)
        }
        Listener::Https => (snapshot.https_hosts(), true),
    };
    let proxy = &**hosts.lookup_normalized(head.host.as_str())?;
    if (!secure && proxy.https().redirects_to_https())
        || proxy.limits().is_some()
        || !proxy.allows_client(conn.client)
    {
        return None;
    }
    // As hyper's path builds it (the Host as sent: visible ASCII, checked in `qualify`).
    let origin = Origin::new(secure, head.authority).with_public_port(conn.public_port);
    let admitted = vhost::admit_head(proxy, &origin, &head.method, &head.path, headers)?;
    Some((proxy, admitted))
}

/// Whether `upstream` is reached the way the fast path writes requests.
fn plain(upstream: &Upstream) -> bool {
    let settings = upstream.settings();
    settings.send_proxy == SendProxy::Off
        && settings.request_headers.is_empty()
        && settings.response_headers.is_empty()
        && *upstream.target().scheme() == Scheme::HTTP
        && !upstream.target().has_base_path()
}

/// The request head for the upstream (module docs, "Rewrites"); for a protected proxy
/// also as [`crate::auth::apply_identity`] leaves it: the bearer credential dropped unless
/// kept, the verified identity set ([`vhost::admit_head`]).
fn write_request_head(
    out: &mut Vec<u8>,
    req: &httparse::Request<'_, '_>,
    head: &Head<'_>,
    conn: &ConnInfo,
    admitted: &Admitted<'_>,
    id: &[u8],
) {
    let (proxy, upstream) = (admitted.proxy(), admitted.upstream());
    let identity = admitted.identity_headers();
    // `apply_identity` with the token verified: every `Authorization` goes when one is a
    // bearer credential, unless the proxy keeps a verified user's token. Claims mean the
    // admission verified the head's only `Authorization`, a bearer credential (it admits
    // none with two), so only a request admitted without a token needs the scan.
    let drop_authorization = match (identity, admitted.claims()) {
        (None, _) => false,
        (Some(ids), Some(_)) => !auth::keeps_token(ids, true, true),
        (Some(_), None) => req
            .headers
            .iter()
            .any(|h| is_authorization(h.name) && auth::is_bearer_bytes(h.value)),
    };
    out.clear();
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    if let Some(query) = head.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let configured = proxy.configured_identity_headers();
    let mut lower = [0u8; MAX_NAME];
    for header in req.headers.iter() {
        if dropped_request_header(header.name, configured, &mut lower)
            || drop_authorization && is_authorization(header.name)
        {
            continue;
        }
        push_header(out, header.name.as_bytes(), header.value);
    }
    let host = if upstream.settings().preserve_host {
        head.host_raw
    } else {
        upstream.target().host_header().as_bytes()
    };
    push_header(out, b"host", host);
    let client = conn.client_ip.as_bytes();
    push_header(out, b"x-forwarded-for", client);
    push_header(out, b"x-real-ip", client);
    let proto: &[u8] = match conn.listener {
        Listener::Http { .. } => b"http",
        Listener::Https => b"https",
    };
    push_header(out, b"x-forwarded-proto", proto);
    push_header(out, b"x-forwarded-host", head.host_raw);
    push_header(out, b"via", headers::via_http11().as_bytes());
    push_header(out, b"x-request-id", id);
    if let (Some(ids), Some(claims)) = (identity, admitted.claims()) {
        auth::write_identity_fields(claims, ids, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `name` is `Authorization` (any case).
fn is_authorization(name: &str) -> bool {
    crate::ascii::eq_lowercase(name.as_bytes(), b"authorization")
}

/// Whether a client header is not forwarded as sent: replaced (`Host`, `X-Request-Id`,
/// the forwarding headers), hop-by-hop (`Connection`), or a claim
/// ([`crate::auth::is_client_claim`]). A name too long to compare is dropped.
fn dropped_request_header(
    name: &str,
    configured: &[http::HeaderName],
    lower: &mut [u8; MAX_NAME],
) -> bool {
    let Some(lower) = lower.get_mut(..name.len()) else {
        return true;
    };
    for (l, b) in lower.iter_mut().zip(name.bytes()) {
        *l = b.to_ascii_lowercase();
    }
    // Header names are tokens (ASCII), so this never fails.
    let Ok(lower) = std::str::from_utf8(lower) else {
        return true;
    };
    matches!(
        lower,
        "host" | "connection" | "x-request-id" | "forwarded" | "x-real-ip"
    ) || crate::auth::is_client_claim(lower, configured)
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How the response body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// The upstream's response head, already rewritten into `Buffers::out`.
#[derive(Debug)]
struct Response {
    status: u16,
    framing: Framing,
    /// Where the body starts in `Buffers::up`.
    body_start: usize,
    /// Whether the upstream connection may carry another request once the body is read.
    reusable: bool,
    /// The response's `Mcp-Session-Id`, for the access log (only while it is on).
    mcp_session_id: Option<String>,
}

/// Resolves when the client closes its connection (or it fails) while its response is
/// awaited: hyper's server reads an idle client mid-message for exactly this, and then
/// drops the request. Bytes that come instead (a pipelined request) are kept in
/// `read_ahead` and the watch ends without resolving, as hyper's does.
async fn client_gone<R: AsyncRead + Unpin>(client: &mut R, read_ahead: &mut Vec<u8>) {
    read_ahead.reserve(READ_AHEAD);
    match client.read_buf(read_ahead).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Sends the request head in `out` on the leased connection and reads the response head
/// into `up` under the read timeout (`timer`, the connection's, moved to this request's
/// deadline); the rewritten client head is left in `out`.
async fn exchange(
    upstream: &Upstream,
    lease: Result<Lease, ClientError>,
    out: &mut Vec<u8>,
    up: &mut Vec<u8>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    rules: Rewrite<'_>,
) -> Result<(RawConn, Response), ProxyError> {
    let pool = upstream.pool();
    let mut conn = match lease.map_err(ProxyError::from_client)? {
        Lease::Idle(conn) => conn,
        // Boxed: the connect future is large and rare.
        Lease::New(slot) => Box::pin(pool.connect_raw(slot))
            .await
            .map_err(ProxyError::from_client)?,
    };
    while let Err(error) = conn.stream.write_all(out).await {
        if !conn.reused {
            return Err(ProxyError::Upstream(ClientError::Io(error)));
        }
        // The upstream closed the idle connection meanwhile: once more on a new one, in
        // its slot of the bound.
        conn = Box::pin(pool.connect_raw(conn.into_slot()))
            .await
            .map_err(ProxyError::from_client)?;
    }
    let deadline = tokio::time::Instant::now() + upstream.settings().read_timeout;
    let timer = match timer {
        Some(timer) => {
            // Later than the last request's deadline, as a rule: then tokio only notes
            // the new one (an earlier one re-registers the timer).
            timer.as_mut().reset(deadline);
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    up.clear();
    loop {
        if !up.is_empty() {
            match parse_response(up, out, rules) {
                Ok(Some(Parsed::Informational(n))) => {
                    // Dropped, so endless interim answers hold no memory (the read
                    // timeout still bounds them).
                    up.drain(..n);
                    continue;
                }
                Ok(Some(Parsed::Final(response))) => return Ok((conn, response)),
                Ok(None) => {
                    if up.len() >= MAX_RESPONSE_HEAD {
                        return Err(malformed("response head too large"));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        up.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            read = conn.stream.read_buf(up) => read,
            () = timer.as_mut() => return Err(ProxyError::ResponseTimeout),
        };
        match read {
            Ok(0) => return Err(malformed("connection closed before a response")),
            Ok(_) => {}
            Err(error) => return Err(ProxyError::Upstream(ClientError::Io(error))),
        }
    }
}

fn malformed(what: &'static str) -> ProxyError {
    ProxyError::Upstream(ClientError::Malformed(what))
}

enum Parsed {
    /// A 1xx head of this many bytes, skipped.
    Informational(usize),
    Final(Response),
}

/// What the client's response head depends on besides the upstream's head.
#[derive(Clone, Copy, Debug)]
struct Rewrite<'a> {
    /// The request was `HEAD`: no body, whatever the head says.
    is_head: bool,
    /// The proxy's `Strict-Transport-Security`, on the HTTPS listener when configured:
    /// replaces any the upstream sent (as `super::phases` inserts it).
    hsts: Option<&'a HeaderValue>,
}

/// Parses one response head from `bytes`; `Ok(None)` while incomplete. A final head is
/// rewritten for the client into `out` (without `X-Request-Id` and `Connection`, which
/// [`relay`] adds, nor the blank line).
fn parse_response(
    bytes: &[u8],
    out: &mut Vec<u8>,
    Rewrite { is_head, hsts }: Rewrite<'_>,
) -> Result<Option<Parsed>, ProxyError> {
    // Left uninitialised: httparse writes the slots it fills (writing 100 empty headers
    // first was a measurable part of the response).
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, bytes, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(malformed("unparsable head")),
    };
    let code = resp.code.unwrap_or(0);
    match code {
        101 => return Err(ProxyError::UnexpectedUpgrade),
        100..=199 => return Ok(Some(Parsed::Informational(n))),
        _ => {}
    }
    let status = StatusCode::from_u16(code).map_err(|_| malformed("bad status"))?;
    let mut reusable = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encodings = 0;
    let mut connection_names = false;
    let mut has_date = false;
    let mut mcp_session_id = None;
    // One pass over the headers, each name compared only with those of its length: the
    // framing and `Connection`, and which headers are not relayed (bit i for header i;
    // at most MAX_RESPONSE_HEADERS = 100 of them): hop-by-hop ones, `X-Request-Id`
    // (replaced) and, when the proxy sets its own, `Strict-Transport-Security`.
    let mut dropped: u128 = 0;
    for (i, header) in resp.headers.iter().enumerate() {
        let name = header.name;
        let drop = match name.len() {
            2 | 7 | 16 => is_hop_by_hop(name),
            4 => {
                has_date |= name.eq_ignore_ascii_case("date");
                false
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        reusable = false;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        connection_names = true;
                    }
                }
                true
            }
            10 => is_hop_by_hop(name),
            12 => name.eq_ignore_ascii_case("x-request-id"),
            14 if name.eq_ignore_ascii_case("content-length") => {
                let value =
                    parse_length(header.value).ok_or_else(|| malformed("bad content-length"))?;
                if length.is_some_and(|l| l != value) {
                    return Err(malformed("conflicting content-length"));
                }
                length = Some(value);
                false
            }
            14 => {
                if name.eq_ignore_ascii_case("mcp-session-id")
                    && mcp_session_id.is_none()
                    && crate::access_log::enabled()
                {
                    mcp_session_id = std::str::from_utf8(header.value).ok().map(str::to_owned);
                }
                false
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                transfer_encodings += 1;
                chunked = header.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                if !chunked || transfer_encodings > 1 {
                    return Err(malformed("unsupported transfer coding"));
                }
                true
            }
            25 => hsts.is_some() && name.eq_ignore_ascii_case("strict-transport-security"),
            _ => false,
        };
        dropped |= u128::from(drop) << i;
    }
    if chunked && length.is_some() {
        return Err(malformed("content-length with transfer-encoding"));
    }
    let framing = if is_head || code == 204 || code == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        reusable = false;
        Framing::Close
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (i, header) in resp.headers.iter().enumerate() {
        let name = header.name;
        if (dropped >> i) & 1 == 1 || connection_names && listed_in_connection(name, resp.headers) {
            continue;
        }
        push_header(out, name.as_bytes(), header.value);
    }
    if let Some(hsts) = hsts {
        push_header(out, b"strict-transport-security", hsts.as_bytes());
    }
    if !has_date {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        push_header(out, b"date", date.as_bytes());
    }
    if matches!(framing, Framing::Chunked | Framing::Close) {
        push_header(out, b"transfer-encoding", b"chunked");
    }
    Ok(Some(Parsed::Final(Response {
        status: code,
        framing,
        body_start: n,
        reusable,
        mcp_session_id,
    })))
}

/// `Content-Length`: 1–19 ASCII digits.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn is_hop_by_hop(name: &str) -> bool {
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether some `Connection` header of the response names `name`.
fn listed_in_connection(name: &str, headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

/// Writes the rewritten head and relays the body; gives the upstream connection back
/// when the response was complete and exactly framed. `Err` when the client connection
/// must close (the body broke off, or the client is gone).
async fn relay<W: AsyncWrite + Unpin>(
    upstream: &Upstream,
    mut conn: RawConn,
    response: Response,
    bufs: &mut Buffers,
    client: &mut W,
    (id, keep_alive): (&[u8], bool),
    sent: &mut u64,
) -> Result<(), ()> {
    let Buffers { out, up, .. } = bufs;
    push_header(out, b"x-request-id", id);
    if !keep_alive {
        push_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    let idle = upstream.settings().idle_timeout;
    let mut start = response.body_start;
    let mut reusable = response.reusable;
    match response.framing {
        Framing::None => {
            reusable &= up.len() == start;
        }
        Framing::Length(mut left) => {
            // The head and what came with it in one write; the rest as it arrives.
            let take = ((up.len() - start) as u64).min(left) as usize;
            out.extend_from_slice(&up[start..start + take]);
            *sent += take as u64;
            left -= take as u64;
            reusable &= left > 0 || start + take == up.len();
            while left > 0 {
                flush(client, out).await?;
                refill(&mut conn, up, idle).await?;
                let take = (up.len() as u64).min(left) as usize;
                send(client, &up[..take]).await?;
                *sent += take as u64;
                left -= take as u64;
                reusable &= left > 0 || take == up.len();
            }
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            loop {
                let used = decoder.decode(&up[start..], out);
                *sent = decoder.data;
                let used =
                    used.map_err(|()| tracing::debug!("upstream sent a malformed chunked body"))?;
                if decoder.done() {
                    out.extend_from_slice(b"0\r\n\r\n");
                    reusable &= start + used == up.len();
                    break;
                }
                flush(client, out).await?;
                start = refill(&mut conn, up, idle).await?;
            }
        }
        Framing::Close => loop {
            let data = &up[start..];
            if !data.is_empty() {
                chunk(out, data);
                *sent += data.len() as u64;
            }
            flush(client, out).await?;
            up.clear();
            up.reserve(BODY_CHUNK);
            match tokio::time::timeout(idle, conn.stream.read_buf(up)).await {
                Ok(Ok(0)) => {
                    out.extend_from_slice(b"0\r\n\r\n");
                    break;
                }
                Ok(Ok(_)) => start = 0,
                Ok(Err(_)) | Err(_) => return Err(()),
            }
        },
    }
    flush(client, out).await?;
    if reusable {
        upstream.pool().put_raw(conn);
    }
    Ok(())
}

/// Reads more of the body into `up` (emptied first) within the idle timeout; `Err` when
/// the upstream closed, failed or fell silent mid-body.
async fn refill(
    conn: &mut RawConn,
    up: &mut Vec<u8>,
    idle: std::time::Duration,
) -> Result<usize, ()> {
    up.clear();
    up.reserve(BODY_CHUNK);
    match tokio::time::timeout(idle, conn.stream.read_buf(up)).await {
        Ok(Ok(0)) => {
            tracing::debug!("upstream closed mid-body");
            Err(())
        }
        Ok(Ok(_)) => Ok(0),
        Ok(Err(error)) => {
            tracing::debug!(%error, "upstream read failed mid-body");
            Err(())
        }
        Err(_) => {
            tracing::debug!("upstream body idle timeout");
            Err(())
        }
    }
}

/// Sends what `out` holds to the client ([`send`]) and empties it.
async fn flush<W: AsyncWrite + Unpin>(client: &mut W, out: &mut Vec<u8>) -> Result<(), ()> {
    if out.is_empty() {
        return Ok(());
    }
    send(client, out).await?;
    out.clear();
    Ok(())
}

/// Writes `bytes` to the client and flushes them, as hyper's server flushes after each
/// write: over TLS, `write_all` may return with records still in rustls' buffer (the
/// socket was full), and only a flush sends them before this path waits on the upstream
/// or on the client's next request. A write of up to 16 KiB is one TLS record and,
/// usually, one `writev`; on a TCP stream the flush does nothing.
async fn send<W: AsyncWrite + Unpin>(client: &mut W, bytes: &[u8]) -> Result<(), ()> {
    client.write_all(bytes).await.map_err(|_| ())?;
    client.flush().await.map_err(|_| ())
}

/// Appends `data` as one chunk.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    let mut size = [0u8; 16];
    let mut n = data.len();
    let mut i = size.len();
    loop {
        i -= 1;
        size[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&size[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A strict `chunked` decoder (RFC 9112 §7.1) that re-chunks the data it finds;
/// extensions and trailers are skipped (bounded by [`MAX_CHUNK_META`]).
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    meta: usize,
    /// Data bytes decoded so far.
    data: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes `input` until it is used up or the body ended; returns the bytes used.
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            if self.state == Data {
                let take = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                chunk(out, &input[i..i + take]);
                self.data += take as u64;
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(());
                    }
                    self.size = self.size * 16 + u64::from((b as char).to_digit(16).ok_or(())?);
                    Size
                }
                (Size, b';' | b' ' | b'\t') if self.digits > 0 => Extension,
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return Err(()),
                (Extension, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err(());
                    }
                    Extension
                }
                (SizeLf, b'\n') if self.size == 0 => TrailerStart,
                (SizeLf, b'\n') => Data,
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => {
                    self.digits = 0;
                    Size
                }
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | Trailer, b'\n') => return Err(()),
                (TrailerStart | Trailer, b) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err(());
                    }
                    if b == b'\r' { TrailerLf } else { Trailer }
                }
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => Done,
                _ => return Err(()),
            };
        }
        Ok(i)
    }
}

/// Writes an answer of the full path (an error) to the client, with the request id.
async fn write_answer<W: AsyncWrite + Unpin>(
    response: http::Response<crate::body::ProxyBody>,
    out: &mut Vec<u8>,
    client: &mut W,
    id: &[u8],
    keep_alive: bool,
    sent: &mut u64,
) -> Result<(), ()> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| ())?.to_bytes();
    *sent = body.len() as u64;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    push_header(out, b"x-request-id", id);
    push_header(out, b"content-length", body.len().to_string().as_bytes());
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    push_header(out, b"date", date.as_bytes());
    if !keep_alive {
        push_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    flush(client, out).await
}

#[cfg(test)]
mod tests;
