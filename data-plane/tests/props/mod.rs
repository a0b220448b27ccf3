//! Property checks shared by the proptests (`tests/properties.rs`) and the fuzz targets
//! (`fuzz/`): each takes arbitrary bytes and panics when the property it states is broken.
//!
//! - [`check_path`]: request path normalisation.
//! - [`check_host`]: Host normalisation and the host table.
//! - [`Edge`]: the whole request path (`request::handle`) in front of a real loopback
//!   backend: a request the policy refused is never forwarded, whatever its bytes.
//! - [`check_snapshot`]: snapshot decoding and compilation.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_data_plane::config::Snapshot;
use portcullis_data_plane::path::{self, PathError};
use portcullis_data_plane::request::{self, ConnInfo, Listener};
use portcullis_data_plane::router::NormalizedHost;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_proto::v1 as pb;
use prost::Message;

// === path ===

/// `path::normalize` on `input` (as text when it is UTF-8; the request line is ASCII):
/// - never panics;
/// - an accepted path's normal form is a fixed point, starts with `/`, has no `//`, no `.`
///   or `..` segment, no `\`, and every escape in it is `%` + two upper-case hex digits
///   of a byte that is neither unreserved nor `/`, `\` or NUL;
/// - fully percent-decoded, it is what resolving the fully decoded input as a POSIX path
///   gives (`posixpath.normpath(unquote(p))`, trailing slash aside): the proxy and an
///   upstream that decodes everything see the same path;
/// - a refusal names something the input really contains.
pub fn check_path(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match path::normalize(text) {
        Ok(out) => check_normal_form(text, &out),
        Err(error) => check_refusal(text, error),
    }
}

fn check_normal_form(input: &str, out: &str) {
    assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    assert!(!out.contains("//"), "{input:?} -> {out:?}");
    assert!(!out.contains('\\'), "{input:?} -> {out:?}");
    for segment in out.split('/').skip(1) {
        assert!(segment != "." && segment != "..", "{input:?} -> {out:?}");
    }
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let digits = bytes.get(i + 1..i + 3).unwrap_or_default();
        assert!(
            digits.len() == 2
                && digits
                    .iter()
                    .all(|d| matches!(d, b'0'..=b'9' | b'A'..=b'F')),
            "{input:?} -> {out:?}: escape at {i}"
        );
        let c = u8::from_str_radix(std::str::from_utf8(digits).unwrap(), 16).unwrap();
        assert!(
            !(c == 0 || c == b'/' || c == b'\\' || unreserved(c)),
            "{input:?} -> {out:?}: escape %{c:02X} kept"
        );
    }
    match path::normalize(out) {
        Ok(again) => assert_eq!(again, out, "not a fixed point: {input:?}"),
        Err(e) => panic!("{input:?} -> {out:?} refused on the second pass: {e}"),
    }
    let decoded_out = decode_all(out);
    let resolved = normpath(&decode_all(input));
    assert_eq!(
        normpath(&decoded_out),
        resolved,
        "{input:?} -> {out:?}: decoded, the upstream resolves another path"
    );
    // The normal form is already resolved: decoding leaves no dot segment to resolve.
    let decoded_trimmed = match decoded_out.strip_suffix(b"/") {
        Some(t) if !t.is_empty() => t.to_vec(),
        _ => decoded_out.clone(),
    };
    assert_eq!(decoded_trimmed, resolved, "{input:?} -> {out:?}");
}

fn check_refusal(input: &str, error: PathError) {
    let lower = input.to_ascii_lowercase();
    let holds = match error {
        PathError::NotAbsolute => !input.starts_with('/'),
        PathError::BadEscape => input.match_indices('%').any(|(i, _)| {
            !input
                .as_bytes()
                .get(i + 1..i + 3)
                .is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit))
        }),
        PathError::Separator => {
            input.contains('\\') || lower.contains("%2f") || lower.contains("%5c")
        }
        PathError::Nul => lower.contains("%00"),
        PathError::DotParameters => decode_unreserved(input)
            .split('/')
            .any(|s| s.starts_with(".;") || s.starts_with("..;")),
    };
    assert!(holds, "{input:?} refused as {error:?}");
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(d: u8) -> Option<u8> {
    char::from(d).to_digit(16).map(|v| v as u8)
}

/// Every `%XX` decoded (what an upstream that decodes everything sees).
fn decode_all(p: &str) -> Vec<u8> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex_value),
                b.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Only the unreserved escapes decoded (for the dot-parameter check).
fn decode_unreserved(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex_value),
                b.get(i + 2).copied().and_then(hex_value),
            )
            && unreserved(hi << 4 | lo)
        {
            out.push(char::from(hi << 4 | lo));
            i += 3;
            continue;
        }
        let len = p[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&p[i..i + len]);
        i += len;
    }
    out
}

/// `posixpath.normpath` for an absolute path: `//` merged, `.` dropped, `..` resolved
/// (never above the root), no trailing slash.
fn normpath(p: &[u8]) -> Vec<u8> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for segment in p.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = Vec::new();
    for s in &kept {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

// === host ===

/// A snapshot with an exact name, a wildcard and a more specific wildcard, to look
/// arbitrary Host values up in.
pub fn host_snapshot() -> Snapshot {
    let proxy = |hostname: &str| pb::ProxyTarget {
        hostname: hostname.into(),
        target_url: "http://127.0.0.1:9".into(),
        enabled: true,
        enable_http: true,
        ..Default::default()
    };
    let wire = pb::ConfigSnapshot {
        version: 1,
        proxies: vec![
            proxy("app.example.com"),
            proxy("*.example.com"),
            proxy("*.b.example.com"),
        ],
        ..Default::default()
    };
    Snapshot::compile(&wire, &ClientCache::new()).unwrap()
}

/// Host normalisation and lookup on arbitrary bytes never panic; a normalised host is
/// lower-case, at most 253 bytes, normalises to itself, and finds exactly the proxy the
/// wildcard rules name (exact, then the longest `*.` suffix with at least one label in
/// front).
pub fn check_host(snapshot: &Snapshot, input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let hosts = snapshot.http_hosts();
    let found = hosts.lookup(text);
    let Ok(name) = NormalizedHost::parse(text) else {
        assert!(found.is_err(), "{text:?}");
        return;
    };
    let name = name.as_str();
    assert!(name.len() <= 253, "{text:?} -> {name:?}");
    assert!(
        !name.bytes().any(|b| b.is_ascii_uppercase()),
        "{text:?} -> {name:?}"
    );
    let again = NormalizedHost::parse(name).unwrap_or_else(|e| panic!("{text:?} -> {name:?}: {e}"));
    assert_eq!(again.as_str(), name, "{text:?}");
    let want = if name == "app.example.com" {
        Some("app.example.com")
    } else if name.len() > ".b.example.com".len() && name.ends_with(".b.example.com") {
        Some("*.b.example.com")
    } else if name.len() > ".example.com".len() && name.ends_with(".example.com") {
        Some("*.example.com")
    } else {
        None
    };
    let got = found
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .map(|p| p.hostname());
    assert_eq!(got, want, "{text:?} -> {name:?}");
}

// === the whole request path ===

/// What the backend received: path and query, and whether an `Authorization: Bearer`
/// header came (other schemes are the upstream's own and pass on public paths).
#[derive(Debug, Clone)]
pub struct Received {
    pub target: String,
    pub bearer: bool,
}

/// The data plane's request path (`request::handle`, every phase) for `api.example.com`, a
/// protected proxy (forward mode, public path `/health`) with a public prefix route
/// `/pub`, a protected prefix route `/pubx` and the proxy's target, all to one loopback
/// backend that logs what it receives.
pub struct Edge {
    runtime: tokio::runtime::Runtime,
    store: ConfigStore,
    conn: ConnInfo,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests forwarded so far (to see that a run exercised the forwarding side too).
    forwarded: Cell<usize>,
}

pub const HOST_NAME: &str = "api.example.com";
const ISSUER: &str = "https://auth.example.com";

impl Edge {
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let backend = runtime.block_on(backend(received.clone()));
        let target = format!("http://{backend}");
        let route = |id: &str, prefix: &str, public: bool| pb::Route {
            id: id.into(),
            priority: 10,
            match_kind: pb::PathMatchKind::Prefix as i32,
            path_pattern: prefix.into(),
            target_kind: pb::RouteTargetKind::Url as i32,
            target_value: target.clone(),
            proxy_hostnames: vec![HOST_NAME.into()],
            enabled: true,
            public,
            ..Default::default()
        };
        let wire = pb::ConfigSnapshot {
            version: 1,
            proxies: vec![pb::ProxyTarget {
                hostname: HOST_NAME.into(),
                target_url: target.clone(),
                enabled: true,
                enable_http: true,
                auth: Some(pb::ProxyAuthPolicy {
                    enabled: true,
                    mode: "forward".into(),
                    auth_host: "auth.example.com".into(),
                    public_paths: vec!["/health".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            routes: vec![route("pub", "/pub", true), route("pubx", "/pubx", false)],
            jwks_json: jwks(),
            oauth_issuer: ISSUER.into(),
            ..Default::default()
        };
        let store = ConfigStore::default();
        let snapshot = Snapshot::compile(&wire, &ClientCache::new()).unwrap();
        drop(store.publish(Arc::new(snapshot)));
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        Self {
            runtime,
            store,
            conn: ConnInfo::new(peer, Listener::Http { https_port: 443 }),
            received,
            forwarded: Cell::new(0),
        }
    }

    /// Sends one request (`target` as the request target, `host` as Host, `authorization`
    /// as the `Authorization` header when given) through `request::handle`. Inputs that are
    /// not a valid request head (hyper would refuse them before the proxy) are skipped.
    ///
    /// No valid token can be made from these inputs (the JWKS key's private half is never
    /// created), so: whatever the backend received is at a public path, `/pub` or `/health`
    /// or below them, exactly the normal form of the path sent, with its query as sent,
    /// without a bearer `Authorization` header; and every request whose normal form is inside
    /// `/pub` is forwarded.
    pub fn check(&self, method: &[u8], target: &[u8], host: &[u8], authorization: Option<&[u8]>) {
        let Ok(uri) = Uri::try_from(target) else {
            return;
        };
        let Ok(method) = Method::from_bytes(method) else {
            return;
        };
        if method == Method::CONNECT {
            return;
        }
        let Ok(host) = HeaderValue::from_bytes(host) else {
            return;
        };
        let mut req =
            Request::new(Empty::<Bytes>::new().map_err(|never: Infallible| match never {}));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert(HOST, host);
        if let Some(value) = authorization {
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return;
            };
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let response = self
            .runtime
            .block_on(request::handle(&self.store, &self.conn, req));
        let status = response.status();
        let from_backend = response.headers().contains_key("x-backend");
        drop(response);
        let received = std::mem::take(&mut *self.received.lock().unwrap());
        assert!(received.len() <= 1, "{uri}: {received:?}");
        assert_eq!(from_backend, !received.is_empty(), "{uri}: {status}");
        let normal = path::normalize(uri.path()).ok();
        if let Some(got) = received.first() {
            self.forwarded.set(self.forwarded.get() + 1);
            let normal = normal
                .as_deref()
                .unwrap_or_else(|| panic!("{uri}: refused path forwarded as {got:?}"));
            let sent = match uri.query() {
                Some(q) => format!("{normal}?{q}"),
                None => normal.to_owned(),
            };
            assert_eq!(got.target, sent, "{uri}: forwarded as another path");
            assert!(
                public(normal),
                "{method} {uri} (normal form {normal}, {status}) reached the backend without a valid token"
            );
            // And as an upstream that decodes every escape and resolves dot segments
            // itself sees it (not trusting the proxy's own normal form).
            let resolved = String::from_utf8_lossy(&normpath(&decode_all(normal))).into_owned();
            assert!(
                public(&resolved),
                "{method} {uri} reached the backend as {normal}, which resolves to {resolved}"
            );
            assert!(!got.bearer, "{uri}: a bearer token was forwarded");
            assert_eq!(status, StatusCode::OK, "{uri}");
        } else if let Some(normal) = normal.as_deref() {
            let known_host = status != StatusCode::NOT_FOUND && status != StatusCode::BAD_REQUEST;
            if known_host && under(normal, "/pub") && method != Method::OPTIONS {
                panic!("{method} {uri}: public path {normal} was not forwarded ({status})");
            }
        }
    }
}

impl Edge {
    /// How many requests reached the backend so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.get()
    }
}

impl Default for Edge {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a normalised path may be served without a token here.
fn public(path: &str) -> bool {
    under(path, "/pub") || under(path, "/health")
}

/// `path` is `prefix` or below it at a segment boundary.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A JWKS with one ES256 public key whose private half is dropped at once.
fn jwks() -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(KID.into());
    serde_json::json!({ "keys": [jwk] }).to_string()
}

/// The `kid` of the snapshot's only key (for generating plausible forged tokens).
pub const KID: &str = "es-1";

/// The issuer tokens must name.
pub const TOKEN_ISSUER: &str = ISSUER;

/// A hyper backend on 127.0.0.1:0 answering 200 with `x-backend: 1` and logging each
/// request.
async fn backend(log: Arc<Mutex<Vec<Received>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(Received {
                            target: req
                                .uri()
                                .path_and_query()
                                .map(|pq| pq.as_str().to_owned())
                                .unwrap_or_default(),
                            // The scheme as a lenient upstream reads it: the first
                            // word, whitespace around it ignored.
                            bearer: req.headers().get_all(AUTHORIZATION).iter().any(|v| {
                                let mut words = v
                                    .as_bytes()
                                    .split(|b| matches!(b, b' ' | b'\t'))
                                    .filter(|w| !w.is_empty());
                                words
                                    .next()
                                    .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
                            }),
                        });
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        response
                            .headers_mut()
                            .insert("x-backend", HeaderValue::from_static("1"));
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// === bearer tokens ===

/// `Verifier::verify` on arbitrary text never panics and never accepts (no private key
/// for the snapshot's JWKS exists).
pub fn check_verify(verifier: &portcullis_data_plane::auth::Verifier, token: &[u8]) {
    let Ok(token) = std::str::from_utf8(token) else {
        return;
    };
    assert!(verifier.verify(token).is_err(), "{token:?} verified");
}

/// A verifier for a JWKS with one key whose private half no one has.
pub fn verifier() -> portcullis_data_plane::auth::Verifier {
    let wire = pb::ConfigSnapshot {
        jwks_json: jwks(),
        oauth_issuer: ISSUER.into(),
        ..Default::default()
    };
    portcullis_data_plane::auth::Verifier::compile(&wire).unwrap()
}

// === snapshots ===

/// Arbitrary bytes decoded as a snapshot and compiled: errors are fine, panics are not.
pub fn check_snapshot(clients: &ClientCache, input: &[u8]) {
    let Ok(wire) = pb::ConfigSnapshot::decode(input) else {
        return;
    };
    let _ = Snapshot::compile(&wire, clients);
}

/// A valid snapshot using most fields, encoded: the seed that decoding mutations start
/// from.
pub fn snapshot_seed() -> Vec<u8> {
    let route = |id: &str, kind: pb::PathMatchKind, pattern: &str| pb::Route {
        id: id.into(),
        priority: 10,
        match_kind: kind as i32,
        path_pattern: pattern.into(),
        target_kind: pb::RouteTargetKind::Url as i32,
        target_value: "http://127.0.0.1:8080".into(),
        proxy_hostnames: vec!["app.example.com".into()],
        methods: vec!["GET".into()],
        enabled: true,
        ..Default::default()
    };
    pb::ConfigSnapshot {
        version: 7,
        proxies: vec![
            pb::ProxyTarget {
                hostname: "app.example.com".into(),
                target_url: "http://127.0.0.1:8080/base".into(),
                enabled: true,
                enable_http: true,
                auth: Some(pb::ProxyAuthPolicy {
                    enabled: true,
                    mode: "forward".into(),
                    auth_host: "auth.example.com".into(),
                    required_scopes: vec!["mcp".into()],
                    public_paths: vec!["/health".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            pb::ProxyTarget {
                hostname: "*.example.org".into(),
                target_url: "https://backend.example.org".into(),
                enabled: true,
                enable_http: true,
                ..Default::default()
            },
        ],
        routes: vec![
            route("a", pb::PathMatchKind::Prefix, "/api"),
            route("b", pb::PathMatchKind::Exact, "/status"),
            route("c", pb::PathMatchKind::Regex, "^/v[0-9]+/items$"),
        ],
        jwks_json: jwks(),
        oauth_issuer: ISSUER.into(),
        ..Default::default()
    }
    .encode_to_vec()
}
