//! The HTTP/1.1 fast path (`--h1-fast-path`) end to end: a data plane with it and one
//! without, fed the same configuration, a scripted upstream that records every request
//! head as it arrives (header case included: hyper lowercases names, the fast path
//! forwards them as sent, which tells the two paths apart) and raw client sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_tests::{ControlPlane, DataPlane, eventually, http_client};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers by path with fixed bytes (see [`script`]).
struct Scripted {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    /// Connections the proxy closed while `/silent` was unanswered.
    abandoned: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The response for a request path, and whether the connection closes after it.
fn script(path: &str) -> (Vec<u8>, bool) {
    let fixed = |s: &str| (s.as_bytes().to_vec(), false);
    match path {
        "/head" => fixed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        "/204" => fixed("HTTP/1.1 204 No Content\r\n\r\n"),
        "/sts" => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nStrict-Transport-Security: max-age=1\r\n\r\nok",
        ),
        "/304" => fixed("HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"),
        "/1xx" => fixed(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        "/chunked" => fixed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        ),
        "/eof" => (b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec(), true),
        "/cut" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..".to_vec(),
            true,
        ),
        "/clte" => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        "/twolengths" => {
            fixed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        }
        "/101" => {
            fixed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")
        }
        "/big" => {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b'x', 300_000));
            (r, false)
        }
        _ => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nX-Kept: k\r\n\r\nhello",
        ),
    }
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let (log, count, gone) = (heads.clone(), connections.clone(), abandoned.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_scripted(stream, log.clone(), gone.clone()));
            }
        });
        Self {
            url,
            heads,
            connections,
            abandoned,
            task,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads lock").clone()
    }

    fn last_head(&self) -> String {
        self.heads().pop().expect("the upstream got a request")
    }
}

async fn serve_scripted(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<String>>>,
    abandoned: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        let length = header(&head, "content-length").map_or(0, |v| v.parse().unwrap_or(0));
        while buf.len() < end + 4 + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + length);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let path = path.split('?').next().unwrap_or("/").to_owned();
        log.lock().expect("heads lock").push(head);
        match path.as_str() {
            // Never answered: counts the proxy closing the connection instead.
            "/silent" => {
                let mut rest = [0u8; 64];
                if matches!(stream.read(&mut rest).await, Ok(0) | Err(_)) {
                    abandoned.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
            _ => {}
        }
        let (response, close) = script(&path);
        if stream.write_all(&response).await.is_err() || close {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first value of `name` in a head (case-insensitive name).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Header names of a head as sent (case kept), in order.
fn names(head: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
        .collect()
}

/// One response read from a client socket: head, body (de-chunked), and whether the
/// body was chunked. `None` when the connection closed before a complete response.
async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Option<(String, Vec<u8>, bool)> {
    async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }
    let (head, status) = loop {
        let end = loop {
            if let Some(end) = find(buf, b"\r\n\r\n") {
                break end;
            }
            if !fill(stream, buf).await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        buf.drain(..end + 4);
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        // Interim answers (100 Continue to `Expect`) are skipped, as clients do.
        if status >= 200 {
            break (head, status);
        }
    };
    if head_request || status == 204 || status == 304 {
        return Some((head, Vec::new(), false));
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(at) = find(buf, b"\r\n") {
                    break at;
                }
                if !fill(stream, buf).await {
                    return None;
                }
            };
            let size_text = String::from_utf8_lossy(&buf[..line]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            while buf.len() < line + 2 + size + 2 {
                if !fill(stream, buf).await {
                    return None;
                }
            }
            body.extend_from_slice(&buf[line + 2..line + 2 + size]);
            buf.drain(..line + 2 + size + 2);
            if size == 0 {
                return Some((head, body, true));
            }
        }
    }
    let length: usize = header(&head, "content-length")
        .map(|v| v.parse().expect("a length"))
        .unwrap_or(0);
    while buf.len() < length {
        if !fill(stream, buf).await {
            return None;
        }
    }
    let body = buf.drain(..length).collect();
    Some((head, body, false))
}

struct Pair {
    cp: ControlPlane,
    fast: DataPlane,
    slow: DataPlane,
    upstream: Scripted,
}

/// Both data planes (one with `--h1-fast-path`) with `app.test` → the scripted upstream,
/// and `keep.test` (`--preserve-host`).
async fn pair(extra: &[&str]) -> Pair {
    pair_logging("off", extra).await
}

/// [`pair`] with `--access-log SINKS` on both.
async fn pair_logging(sinks: &str, extra: &[&str]) -> Pair {
    start_pair(sinks, extra, false).await
}

/// [`pair_logging`], both data planes with an HTTPS listener too when `https`.
async fn start_pair(sinks: &str, extra: &[&str], https: bool) -> Pair {
    let cp = ControlPlane::start().await;
    let mut fast_args = vec!["--access-log", sinks];
    fast_args.extend_from_slice(extra);
    let mut slow_args = fast_args.clone();
    // On by default (`--h1-fast-path` alone also says on).
    fast_args.push("--h1-fast-path");
    slow_args.extend_from_slice(&["--h1-fast-path", "false"]);
    let (fast, slow) = if https {
        (
            DataPlane::start_https_args(&cp, "dp-fast", &fast_args).await,
            DataPlane::start_https_args(&cp, "dp-slow", &slow_args).await,
        )
    } else {
        (
            DataPlane::start_args(&cp, "dp-fast", &fast_args).await,
            DataPlane::start_args(&cp, "dp-slow", &slow_args).await,
        )
    };
    let upstream = Scripted::start().await;
    cp.cli_ok(&["proxy", "create", "app.test", &upstream.url]);
    cp.cli_ok(&[
        "proxy",
        "create",
        "keep.test",
        &upstream.url,
        "--preserve-host",
    ]);
    let v = cp.version().await;
    cp.wait_applied(&fast.node_id, v).await;
    cp.wait_applied(&slow.node_id, v).await;
    Pair {
        cp,
        fast,
        slow,
        upstream,
    }
}

async fn connect(dp: &DataPlane) -> TcpStream {
    TcpStream::connect(dp.http.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Sends `request` on a new connection and reads one response (or `None`).
async fn exchange(dp: &DataPlane, request: &[u8]) -> Option<(String, Vec<u8>, bool)> {
    let mut s = connect(dp).await;
    s.write_all(request).await.expect("write");
    read_response(&mut s, &mut Vec::new(), request.starts_with(b"HEAD")).await
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const FORGED: &str = "GET /a/./b/../c%61//d?x=1 HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX-Custom-Case: 1\r\nAccept: */*\r\nConnection: keep-alive\r\nX-Request-Id: abc-1\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Forwarded-User: admin\r\nX-Auth-Request-Email: a@b\r\nX-Original-URL: /admin\r\nForwarded: for=6.6.6.6\r\nAuthorization: Basic eDp5\r\nCookie: c=1\r\n\r\n";

#[tokio::test]
async fn requests_are_forwarded_as_bytes_with_the_same_rewrites_as_hyper() {
    let p = pair(&[]).await;
    let mut seen = Vec::new();
    for dp in [&p.fast, &p.slow] {
        let (head, body, _) = exchange(dp, FORGED.as_bytes()).await.expect("answered");
        assert_eq!(status(&head), 200, "{head}");
        assert_eq!(body, b"hello");
        // Hop-by-hop and the Connection-named header gone; the request id is ours.
        assert_eq!(header(&head, "x-request-id"), Some("abc-1"), "{head}");
        assert_eq!(header(&head, "x-hop"), None, "{head}");
        assert_eq!(header(&head, "keep-alive"), None, "{head}");
        assert_eq!(header(&head, "connection"), None, "{head}");
        assert_eq!(header(&head, "x-kept"), Some("k"));
        assert!(header(&head, "date").is_some(), "{head}");
        seen.push(p.upstream.last_head());
    }
    let (fast, slow) = (&seen[0], &seen[1]);
    // The fast path forwarded it (names as sent), hyper did not (lowercase).
    assert!(names(fast).contains(&"X-Custom-Case".to_owned()), "{fast}");
    assert!(names(slow).contains(&"x-custom-case".to_owned()), "{slow}");
    assert!(fast.starts_with("GET /a/ca/d?x=1 HTTP/1.1\r\n"), "{fast}");
    assert!(slow.starts_with("GET /a/ca/d?x=1 HTTP/1.1\r\n"), "{slow}");
    // The same headers with the same values, whatever their order and case.
    assert_eq!(field_set(fast), field_set(slow));
    let upstream_host = p.upstream.url.trim_start_matches("http://");
    assert_eq!(header(fast, "host"), Some(upstream_host));
    assert_eq!(header(fast, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(fast, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(header(fast, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(fast, "x-forwarded-host"), Some("app.test"));
    assert!(header(fast, "via").is_some_and(|v| v.starts_with("1.1 portcullis-")));
    for forged in [
        "x-forwarded-user",
        "x-auth-request-email",
        "x-original-url",
        "forwarded",
    ] {
        assert_eq!(header(fast, forged), None, "{forged}: {fast}");
    }
    assert_eq!(header(fast, "authorization"), Some("Basic eDp5"));

    // preserve_host: the client's Host goes upstream.
    exchange(
        &p.fast,
        b"GET / HTTP/1.1\r\nHost: keep.test\r\nX-Fast: 1\r\n\r\n",
    )
    .await
    .expect("answered");
    let head = p.upstream.last_head();
    assert!(names(&head).contains(&"X-Fast".to_owned()), "{head}");
    assert_eq!(header(&head, "host"), Some("keep.test"));

    // No id or an insane one: a new one, the same up and down.
    let (head, ..) = exchange(
        &p.fast,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX-Request-Id: a b\r\n\r\n",
    )
    .await
    .expect("answered");
    let id = header(&head, "x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(header(&p.upstream.last_head(), "x-request-id"), Some(&*id));
}

#[tokio::test]
async fn keep_alive_pipelining_and_every_response_framing() {
    let p = pair(&[]).await;
    let before = p.upstream.connections.load(Ordering::SeqCst);
    let mut s = connect(&p.fast).await;
    let mut buf = Vec::new();
    // Pipelined: three requests in one write, answered in order.
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\nHEAD /head HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\nGET /chunked HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    let (h, b, _) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!((status(&h), &b[..]), (200, &b"hello"[..]));
    let (h, b, _) = read_response(&mut s, &mut buf, true).await.unwrap();
    assert_eq!(status(&h), 200);
    assert_eq!(
        header(&h, "content-length"),
        Some("100"),
        "HEAD keeps the length: {h}"
    );
    assert!(b.is_empty());
    let (h, b, chunked) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(
        (status(&h), &b[..], chunked),
        (200, &b"hello world"[..], true)
    );
    assert_eq!(header(&h, "x-t"), None, "trailers are not forwarded");
    for (path, code, body) in [
        ("/204", 204, &b""[..]),
        ("/304", 304, b""),
        ("/1xx", 200, b"ok"),
    ] {
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let (h, b, _) = read_response(&mut s, &mut buf, false).await.unwrap();
        assert_eq!((status(&h), &b[..]), (code, body), "{path}: {h}");
        assert_eq!(header(&h, "link"), None, "1xx heads are not relayed: {h}");
    }
    // A body larger than any buffer, relayed as it arrives.
    s.write_all(b"GET /big HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    let (h, b, _) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!((status(&h), b.len()), (200, 300_000));
    assert!(b.iter().all(|&c| c == b'x'));
    // All of it on one upstream connection, every request through the fast path.
    assert_eq!(p.upstream.connections.load(Ordering::SeqCst) - before, 1);
    let heads = p.upstream.heads();
    assert_eq!(heads.len(), 7);
    assert!(
        heads.iter().all(|h| h.contains("\r\nX-Case: 1")),
        "fast path only: {heads:?}"
    );

    // Connection: close is honoured: answered with `connection: close`, then closed.
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (h, ..) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(header(&h, "connection"), Some("close"), "{h}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn upstream_bodies_that_end_by_close_or_break_off_and_bad_framing() {
    let p = pair(&[]).await;
    let mut s = connect(&p.fast).await;
    let mut buf = Vec::new();
    // No length: relayed until the upstream closes, chunked to the client, which stays.
    s.write_all(b"GET /eof HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    let (h, b, chunked) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(
        (status(&h), &b[..], chunked),
        (200, &b"until close"[..], true)
    );
    // Ambiguous or upgrading answers: 502, and the connection serves on.
    for path in ["/clte", "/twolengths", "/101"] {
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let (h, ..) = read_response(&mut s, &mut buf, false).await.unwrap();
        assert_eq!(status(&h), 502, "{path}: {h}");
        assert!(header(&h, "x-request-id").is_some());
    }
    // The upstream closes mid-body: the client connection is cut, never completed.
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s, &mut buf, false).await.is_none());
    // hyper does the same.
    assert!(
        exchange(
            &p.slow,
            b"GET /cut HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n"
        )
        .await
        .is_none()
    );
    let heads = p.upstream.heads();
    assert!(
        heads.iter().take(5).all(|h| h.contains("\r\nX-Case: 1")),
        "fast path: {heads:?}"
    );
}

#[tokio::test]
async fn requests_the_fast_path_does_not_take_get_the_same_answers_as_before() {
    let p = pair(&["--max-request-header-bytes", "4096"]).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let many: String = (0..70).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n{many}\r\n");
    let cases: Vec<(&str, Option<u16>, Vec<u8>)> = vec![
        ("conflicting lengths", Some(400), b"POST / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec()),
        ("length and chunked", None, b"POST / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("bad header name", Some(400), b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nBad Name: x\r\n\r\n".to_vec()),
        ("bad header value", Some(400), b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX: a\x01b\r\n\r\n".to_vec()),
        ("obs-fold", None, b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX: a\r\n b\r\n\r\n".to_vec()),
        ("oversized head", Some(431), big.into_bytes()),
        ("70 headers", Some(200), many.into_bytes()),
        ("no host", Some(400), b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("two hosts", Some(400), b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("unknown host", Some(404), b"GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n".to_vec()),
        ("encoded slash", Some(400), b"GET /a%2Fb HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("dot-dot-semicolon", Some(400), b"GET /a/..;/b HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("loop", Some(508), b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nVia: 1.1 a, 1.1 b, 1.1 c, 1.1 d, 1.1 e, 1.1 f, 1.1 g, 1.1 h, 1.1 i, 1.1 j, 1.1 k, 1.1 l, 1.1 m, 1.1 n, 1.1 o, 1.1 p, 1.1 q\r\n\r\n".to_vec()),
        ("connect", None, b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("HTTP/1.0", Some(200), b"GET /ok HTTP/1.0\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("body", Some(200), b"POST /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("expect", None, b"POST /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("absolute form", Some(200), b"GET http://app.test/ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_vec()),
    ];
    for (what, expected, request) in &cases {
        let before = p.upstream.heads().len();
        let fast = exchange(&p.fast, request)
            .await
            .map(|(h, b, _)| (status(&h), b));
        let forwarded_fast = p.upstream.heads().len() - before;
        let slow = exchange(&p.slow, request)
            .await
            .map(|(h, b, _)| (status(&h), b));
        let forwarded_slow = p.upstream.heads().len() - before - forwarded_fast;
        assert_eq!(fast, slow, "{what}");
        if let Some(expected) = expected {
            assert_eq!(fast.as_ref().map(|f| f.0), Some(*expected), "{what}");
        }
        assert_eq!(forwarded_fast, forwarded_slow, "{what}");
        if let Some(head) = p.upstream.heads().get(before) {
            // Whatever was forwarded went through hyper (lowercase names).
            assert!(head.contains("\r\nx-case: 1"), "{what}: {head}");
        }
    }

    // A fast request, then one it does not take, pipelined: both answered, in order.
    let mut s = connect(&p.fast).await;
    let mut buf = Vec::new();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\nGET /%zz HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\nGET /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    let (h, ..) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(status(&h), 200);
    let (h, ..) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(status(&h), 400);
    let (h, ..) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(status(&h), 200);
}

/// The stored access-log record with request id `id`, once it has arrived.
async fn record(cp: &ControlPlane, id: &str) -> Value {
    eventually(Duration::from_secs(20), "record stored", || async move {
        let page: Value = http_client()
            .get(format!("{}/api/v1/logs?request_id={id}", cp.http))
            .bearer_auth(&cp.admin_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        page["items"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
}

#[tokio::test]
async fn fast_requests_are_in_the_access_log_as_hyper_path_ones_are() {
    let p = pair_logging("control-plane", &[]).await;
    for (path, status, bytes) in [
        ("/chunked", 200, 11),
        ("/ok", 200, 5),
        ("/twolengths", 502, 41),
    ] {
        let mut ids = Vec::new();
        for (dp, which) in [(&p.fast, "fast"), (&p.slow, "slow")] {
            let id = format!("{which}{}", path.replace('/', "-"));
            let request = format!(
                "GET {path}/../{path}?q=1 HTTP/1.1\r\nHost: App.Test:80\r\nX-Case: 1\r\nUser-Agent: probe/1\r\nMcp-Session-Id: mcp-1\r\nUser-Agent: second/1\r\nX-Request-Id: {id}\r\n\r\n"
            );
            let (head, ..) = exchange(dp, request.as_bytes()).await.expect("answered");
            assert_eq!(self::status(&head), status, "{which} {path}: {head}");
            ids.push(id);
        }
        // The fast one went the fast way.
        let heads = p.upstream.heads();
        assert!(
            heads.iter().any(|h| h.contains("\r\nX-Case: 1")),
            "{path}: {heads:?}"
        );
        let fast = record(&p.cp, &ids[0]).await;
        let slow = record(&p.cp, &ids[1]).await;
        assert_same_record(&fast, &slow, path);
        assert_eq!(fast["status"], status);
        assert_eq!(fast["path"], path);
        assert_eq!(fast["response_body_bytes"], bytes, "{fast}");
        assert_eq!(fast["user_agent"], "probe/1");
        assert_eq!(fast["host"], "app.test");
        assert_eq!(fast["mcp_session_id"], "mcp-1");
        assert_eq!(fast["request_id"], ids[0].as_str());
        assert_eq!(fast["node_id"], "dp-fast");
    }
}

/// The stored access-log record with request id `id`, if there is one now.
async fn record_now(cp: &ControlPlane, id: &str) -> Option<Value> {
    let page: Value = http_client()
        .get(format!("{}/api/v1/logs?request_id={id}", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    page["items"].as_array().and_then(|a| a.first()).cloned()
}

#[tokio::test]
async fn a_client_that_closes_while_the_upstream_is_silent_abandons_the_request() {
    let p = pair_logging("control-plane", &[]).await;
    for (dp, which) in [(&p.fast, "fast"), (&p.slow, "slow")] {
        let before = p.upstream.abandoned.load(Ordering::SeqCst);
        let heads = p.upstream.heads().len();
        let mut s = connect(dp).await;
        s.write_all(
            format!("GET /silent HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX-Request-Id: gone-{which}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        eventually(Duration::from_secs(10), "request forwarded", || async {
            (p.upstream.heads().len() > heads).then_some(())
        })
        .await;
        drop(s);
        // The upstream request is abandoned: its connection closed, never pooled (the
        // upstream's read timeout is far longer than this wait).
        eventually(
            Duration::from_secs(5),
            "upstream connection closed",
            || async { (p.upstream.abandoned.load(Ordering::SeqCst) > before).then_some(()) },
        )
        .await;
    }
    // The fast data plane forwarded it itself (names as sent).
    let heads = p.upstream.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("gone-fast") && h.contains("\r\nX-Case: 1")),
        "{heads:?}"
    );
    // The access log records it as hyper's path does: a later request's record has
    // arrived, the abandoned one's the same way on both.
    for which in ["fast", "slow"] {
        let dp = if which == "fast" { &p.fast } else { &p.slow };
        let next = format!("after-{which}");
        let request = format!(
            "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\nX-Request-Id: {next}\r\n\r\n"
        );
        exchange(dp, request.as_bytes()).await.expect("answered");
        record(&p.cp, &next).await;
    }
    let fast = record_now(&p.cp, "gone-fast").await;
    let slow = record_now(&p.cp, "gone-slow").await;
    assert_eq!(fast.is_some(), slow.is_some(), "{fast:?} / {slow:?}");
    if let (Some(fast), Some(slow)) = (fast, slow) {
        for field in ["status", "upstream", "response_body_bytes"] {
            assert_eq!(fast[field], slow[field], "{field}");
        }
    }

    // A request sent while the previous response is awaited is read then, and served
    // after it, in order (the watch keeps what it read).
    let mut s = connect(&p.fast).await;
    let mut buf = Vec::new();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"GET /chunked HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n")
        .await
        .unwrap();
    let (h, b, _) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!((status(&h), &b[..]), (200, &b"hello"[..]));
    let (h, b, _) = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!((status(&h), &b[..]), (200, &b"hello world"[..]));
}

#[tokio::test]
async fn at_the_upstream_connection_bound_fast_requests_succeed_where_hyper_would() {
    let p = pair(&["--max-upstream-connections", "1"]).await;
    let second = Scripted::start().await;
    p.cp.cli_ok(&["proxy", "create", "two.test", &second.url]);
    let v = p.cp.version().await;
    p.cp.wait_applied(&p.fast.node_id, v).await;
    p.cp.wait_applied(&p.slow.node_id, v).await;
    let hyper_only =
        |host: &str| format!("GET /ok HTTP/1.0\r\nHost: {host}\r\nX-Case: 1\r\n\r\n").into_bytes();
    let fast =
        |host: &str| format!("GET /ok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\n\r\n").into_bytes();
    for dp in [&p.fast, &p.slow] {
        // hyper's idle connection holds the only slot; a fast request still succeeds.
        for request in [hyper_only("app.test"), fast("app.test"), fast("app.test")] {
            let (h, b, _) = exchange(dp, &request).await.expect("answered");
            assert_eq!((status(&h), &b[..]), (200, &b"hello"[..]), "{}", dp.node_id);
        }
        // A bare idle connection holds it; hyper's path still succeeds, and so do fast
        // requests after it.
        for request in [
            fast("two.test"),
            hyper_only("two.test"),
            fast("two.test"),
            hyper_only("two.test"),
        ] {
            let (h, b, _) = exchange(dp, &request).await.expect("answered");
            assert_eq!((status(&h), &b[..]), (200, &b"hello"[..]), "{}", dp.node_id);
        }
    }
    // On the fast data plane the first went the fast way, the next through hyper in the
    // bare connection's slot.
    let heads = second.heads();
    assert!(
        heads[0].contains("\r\nX-Case: 1"),
        "fast path first: {heads:?}"
    );
    assert!(
        heads[1].contains("\r\nx-case: 1"),
        "then hyper's: {heads:?}"
    );
}

/// The upstream head's header fields as a sorted set, names lowercased, `Via` without its
/// per-process pseudonym.
fn field_set(head: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .map(|(n, v)| match n.as_str() {
            "via" => (n, v.split('-').next().unwrap_or_default().to_owned()),
            _ => (n, v),
        })
        .collect();
    v.sort();
    v
}

/// A control plane with a GitHub login, both data planes (with an HTTPS listener when
/// `https`), and `host` → a scripted upstream, protected in `forward` mode (scope `mcp`;
/// served on HTTPS too when `https`, which needs a `.localhost` name for its certificate),
/// with a valid access token for `https://{host}`.
struct Protected {
    cp: ControlPlane,
    fast: DataPlane,
    slow: DataPlane,
    upstream: Scripted,
    token: String,
    _github: portcullis_tests::github::GithubServer,
}

async fn protected(host: &str, https: bool) -> Protected {
    const REDIRECT: &str = "http://127.0.0.1:53998/callback";
    let cp = ControlPlane::start().await;
    let github =
        portcullis_tests::browser::github_login(&cp, vec![portcullis_tests::browser::alice()])
            .await;
    let client: Value = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &serde_json::json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"], "client_name": "Fast path test"}),
        )
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = client["client_id"].as_str().expect("client_id");
    let start = |node: &'static str, flag: &'static str| {
        let cp = &cp;
        async move {
            let args = ["--access-log", "off", "--h1-fast-path", flag];
            if https {
                DataPlane::start_https_args(cp, node, &args).await
            } else {
                DataPlane::start_args(cp, node, &args).await
            }
        }
    };
    let fast = start("dp-fast", "true").await;
    let slow = start("dp-slow", "false").await;
    let upstream = Scripted::start().await;
    let mut create = vec!["proxy", "create", host, &upstream.url];
    if https {
        create.push("--https");
    }
    cp.cli_ok(&create);
    cp.enable_forward_auth(host, "auth.example.com", Some("mcp"));
    let token = portcullis_tests::browser::access_token(
        &cp,
        &format!("{}/authorize", cp.http),
        &format!("{}/token", cp.http),
        client_id,
        REDIRECT,
        &format!("https://{host}"),
    )
    .await;
    let v = cp.version().await;
    cp.wait_applied(&fast.node_id, v).await;
    cp.wait_applied(&slow.node_id, v).await;
    Protected {
        cp,
        fast,
        slow,
        upstream,
        token,
        _github: github,
    }
}

#[tokio::test]
async fn protected_proxies_admit_valid_tokens_on_the_fast_path_and_refuse_as_before() {
    let p = protected("api.example.com", false).await;
    let (fast, slow, upstream, token) = (&p.fast, &p.slow, &p.upstream, &p.token);

    // A valid token: forwarded by the fast path (names as sent) with the same fields as
    // hyper's path forwards: identity set, forged identity and the token gone.
    let admitted = format!(
        "GET /ok HTTP/1.1\r\nHost: api.example.com\r\nX-Case: 1\r\nAuthorization: Bearer {token}\r\nX-Forwarded-User: mallory\r\nX-Auth-User: mallory\r\nX-Request-Id: jwt-1\r\n\r\n"
    );
    let mut seen = Vec::new();
    for dp in [fast, slow] {
        let (head, body, _) = exchange(dp, admitted.as_bytes()).await.expect("answered");
        assert_eq!((status(&head), &body[..]), (200, &b"hello"[..]), "{head}");
        seen.push(upstream.last_head());
    }
    let (f, s) = (&seen[0], &seen[1]);
    assert!(f.contains("\r\nX-Case: 1"), "fast path: {f}");
    assert!(s.contains("\r\nx-case: 1"), "hyper's path: {s}");
    assert_eq!(field_set(f), field_set(s));
    assert_eq!(header(f, "authorization"), None, "{f}");
    assert_eq!(header(f, "x-forwarded-user"), Some("alice"), "{f}");
    assert_eq!(header(f, "x-auth-user"), Some("alice"), "{f}");
    assert!(header(f, "x-auth-subject").is_some_and(|s| s.starts_with("github:")));
    assert_eq!(f.matches("alice").count(), s.matches("alice").count());
    // Again on the fast path: the cached token and its prebuilt identity lines.
    exchange(fast, admitted.as_bytes()).await.expect("answered");
    assert_eq!(field_set(&upstream.last_head()), field_set(f));

    // Everything else: the same answers from both, and nothing the fast path forwarded.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no token", b"GET /ok HTTP/1.1\r\nHost: api.example.com\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("bad token", b"GET /ok HTTP/1.1\r\nHost: api.example.com\r\nX-Case: 1\r\nAuthorization: Bearer a.b.c\r\n\r\n".to_vec()),
        ("two authorizations", format!("GET /ok HTTP/1.1\r\nHost: api.example.com\r\nX-Case: 1\r\nAuthorization: Bearer {token}\r\nAuthorization: Basic eDp5\r\n\r\n").into_bytes()),
        ("metadata", b"GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: api.example.com\r\nX-Case: 1\r\n\r\n".to_vec()),
        ("origin", format!("GET /ok HTTP/1.1\r\nHost: api.example.com\r\nX-Case: 1\r\nOrigin: https://evil.example\r\nAuthorization: Bearer {token}\r\n\r\n").into_bytes()),
    ];
    for (what, request) in &cases {
        let before = upstream.heads().len();
        let (fh, fb, _) = exchange(fast, request).await.expect("answered");
        let (sh, sb, _) = exchange(slow, request).await.expect("answered");
        assert_eq!(
            (status(&fh), &fb),
            (status(&sh), &sb),
            "{what}: {fh} / {sh}"
        );
        assert_eq!(
            header(&fh, "www-authenticate"),
            header(&sh, "www-authenticate"),
            "{what}"
        );
        for head in &upstream.heads()[before..] {
            assert!(
                head.contains("\r\nx-case: 1"),
                "{what}: only hyper's path: {head}"
            );
        }
    }

    // Renamed identity headers and `--forward-token`: honoured alike by both paths.
    p.cp.enable_forward_auth_with(
        "api.example.com",
        "auth.example.com",
        &[
            "--scope",
            "mcp",
            "--forward-token",
            "--identity-header",
            "user=X-Remote-User",
        ],
    );
    let v = p.cp.version().await;
    p.cp.wait_applied(&fast.node_id, v).await;
    p.cp.wait_applied(&slow.node_id, v).await;
    let forged = admitted.replace("X-Request-Id", "X-Remote-User: mallory\r\nX-Request-Id");
    let mut seen = Vec::new();
    for dp in [fast, fast, slow] {
        let (head, _, _) = exchange(dp, forged.as_bytes()).await.expect("answered");
        assert_eq!(status(&head), 200, "{head}");
        seen.push(upstream.last_head());
    }
    let (f, f2, s) = (&seen[0], &seen[1], &seen[2]);
    assert!(
        f.contains("\r\nX-Case: 1") && f2.contains("\r\nX-Case: 1"),
        "fast path: {f}"
    );
    assert!(s.contains("\r\nx-case: 1"), "hyper's path: {s}");
    assert_eq!(field_set(f), field_set(s));
    assert_eq!(field_set(f2), field_set(s));
    assert_eq!(header(f, "x-remote-user"), Some("alice"), "{f}");
    assert_eq!(f.matches("mallory").count(), 0, "{f}");
    assert_eq!(header(f, "x-auth-user"), None, "{f}");
    assert_eq!(header(f, "x-forwarded-user"), Some("alice"), "{f}");
    assert_eq!(
        header(f, "authorization"),
        Some(format!("Bearer {token}").as_str()),
        "{f}"
    );
}

// === HTTPS ===

/// Served on both listeners, HTTPS redirect on plain HTTP, HSTS for 600 s.
const APP_TLS: &str = "app.localhost";
/// Served on both listeners, neither redirect nor HSTS.
const OPEN_TLS: &str = "open.localhost";
const HTTP11: &[&[u8]] = &[b"http/1.1"];

/// The certificate chain the control plane made for a `.localhost` proxy created with
/// `--https` (self-signed).
fn certificate_pem(cp: &ControlPlane, host: &str) -> String {
    let cert: Value = serde_json::from_str(&cp.cli_ok(&["cert", "show", host, "--output", "json"]))
        .expect("json");
    cert["cert_chain_pem"]
        .as_str()
        .expect("a certificate")
        .to_owned()
}

/// [`start_pair`] with HTTPS listeners and access logs shipped to the control plane,
/// plus [`APP_TLS`] and [`OPEN_TLS`] → the scripted upstream; and their certificates.
async fn tls_pair() -> (Pair, Vec<String>) {
    let p = start_pair("control-plane", &[], true).await;
    let url = p.upstream.url.as_str();
    p.cp.cli_ok(&[
        "proxy",
        "create",
        APP_TLS,
        url,
        "--https",
        "--redirect-https",
        "--hsts-max-age",
        "600",
    ]);
    p.cp.cli_ok(&["proxy", "create", OPEN_TLS, url, "--https"]);
    let v = p.cp.version().await;
    p.cp.wait_applied(&p.fast.node_id, v).await;
    p.cp.wait_applied(&p.slow.node_id, v).await;
    let pems = vec![
        certificate_pem(&p.cp, APP_TLS),
        certificate_pem(&p.cp, OPEN_TLS),
    ];
    (p, pems)
}

/// A TLS connection to `dp`'s HTTPS listener with SNI `host`, offering `alpn` (nothing
/// when empty) and trusting only `pems`.
async fn connect_tls(
    dp: &DataPlane,
    pems: &[String],
    host: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("a root");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(dp.https_addr().expect("an HTTPS listener"))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.to_owned()).expect("name"), tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), alpn.first().copied());
    tls
}

/// [`exchange`] over TLS (ALPN `http/1.1`, SNI `host`).
async fn exchange_tls(
    dp: &DataPlane,
    pems: &[String],
    host: &str,
    request: &[u8],
) -> Option<(String, Vec<u8>, bool)> {
    let mut s = connect_tls(dp, pems, host, HTTP11).await;
    s.write_all(request).await.expect("write");
    read_response(&mut s, &mut Vec::new(), request.starts_with(b"HEAD")).await
}

/// The `Strict-Transport-Security` values of a response head.
fn hsts(head: &str) -> Vec<&str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case("strict-transport-security"))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test]
async fn https_requests_take_the_fast_path_with_the_https_listeners_rules() {
    let (p, pems) = tls_pair().await;
    // Forged forwarding headers, `X-Forwarded-Proto: http` among them.
    let forged = FORGED
        .replace("app.test", APP_TLS)
        .replace("X-Forwarded-Proto: https", "X-Forwarded-Proto: http");
    let mut seen = Vec::new();
    let mut sts = Vec::new();
    for dp in [&p.fast, &p.slow] {
        let (head, body, _) = exchange_tls(dp, &pems, APP_TLS, forged.as_bytes())
            .await
            .expect("answered");
        assert_eq!((status(&head), &body[..]), (200, &b"hello"[..]), "{head}");
        assert_eq!(header(&head, "x-request-id"), Some("abc-1"), "{head}");
        assert_eq!(header(&head, "x-hop"), None, "{head}");
        sts.push(hsts(&head).join(" | "));
        seen.push(p.upstream.last_head());
    }
    // The proxy's HSTS, once, the same from both paths.
    assert!(sts[0].starts_with("max-age=600"), "{sts:?}");
    assert!(!sts[0].contains('|'), "{sts:?}");
    assert_eq!(sts[0], sts[1]);
    let (fast, slow) = (&seen[0], &seen[1]);
    // The fast path forwarded it (names as sent), hyper did not (lowercase).
    assert!(names(fast).contains(&"X-Custom-Case".to_owned()), "{fast}");
    assert!(names(slow).contains(&"x-custom-case".to_owned()), "{slow}");
    assert!(fast.starts_with("GET /a/ca/d?x=1 HTTP/1.1\r\n"), "{fast}");
    assert_eq!(field_set(fast), field_set(slow));
    let upstream_host = p.upstream.url.trim_start_matches("http://");
    assert_eq!(header(fast, "host"), Some(upstream_host));
    assert_eq!(header(fast, "x-forwarded-proto"), Some("https"), "{fast}");
    assert_eq!(header(fast, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(fast, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(header(fast, "x-forwarded-host"), Some(APP_TLS));
    assert!(header(fast, "via").is_some_and(|v| v.starts_with("1.1 portcullis-")));
    for forged in ["x-forwarded-user", "x-original-url", "forwarded"] {
        assert_eq!(header(fast, forged), None, "{forged}: {fast}");
    }

    // Keep-alive and pipelined on one TLS connection, every framing, a body of many
    // records, the upstream's HSTS replaced, and an error answer: the same answers from
    // both data planes, each with the proxy's HSTS once.
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {APP_TLS}\r\nX-Case: 1\r\n\r\n");
    let mut answers = Vec::new();
    for dp in [&p.fast, &p.slow] {
        let before = p.upstream.heads().len();
        let mut s = connect_tls(dp, &pems, APP_TLS, HTTP11).await;
        let mut buf = Vec::new();
        let pipelined = format!(
            "{}HEAD /head HTTP/1.1\r\nHost: {APP_TLS}\r\nX-Case: 1\r\n\r\n{}",
            get("/ok"),
            get("/chunked")
        );
        s.write_all(pipelined.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        for head_request in [false, true, false] {
            got.push(read_response(&mut s, &mut buf, head_request).await.unwrap());
        }
        for path in ["/204", "/1xx", "/sts", "/eof", "/twolengths", "/big", "/ok"] {
            s.write_all(get(path).as_bytes()).await.unwrap();
            got.push(read_response(&mut s, &mut buf, false).await.unwrap());
        }
        let got: Vec<(u16, Vec<u8>, bool, String)> = got
            .into_iter()
            .map(|(h, b, chunked)| (status(&h), b, chunked, hsts(&h).join(" | ")))
            .collect();
        let heads = p.upstream.heads()[before..].to_vec();
        answers.push((got, heads));
    }
    let ((fast, fast_heads), (slow, slow_heads)) = (&answers[0], &answers[1]);
    assert_eq!(fast, slow);
    let statuses: Vec<u16> = fast.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 200, 204, 200, 200, 200, 502, 200, 200]);
    assert_eq!(fast[2].1, b"hello world");
    assert_eq!(fast[8].1.len(), 300_000);
    assert!(fast.iter().all(|a| a.3 == sts[0]), "{fast:?}");
    assert_eq!(fast_heads.len(), 10);
    assert!(
        fast_heads.iter().all(|h| h.contains("\r\nX-Case: 1")),
        "fast path only: {fast_heads:?}"
    );
    assert!(
        slow_heads.iter().all(|h| h.contains("\r\nx-case: 1")),
        "hyper's path only: {slow_heads:?}"
    );

    // No ALPN: HTTP/1.1 detected, the fast path all the same.
    let mut s = connect_tls(&p.fast, &pems, APP_TLS, &[]).await;
    s.write_all(get("/ok").as_bytes()).await.unwrap();
    let (h, b, _) = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(
        (status(&h), &b[..], hsts(&h)),
        (200, &b"hello"[..], vec![&*sts[0]])
    );
    assert!(p.upstream.last_head().contains("\r\nX-Case: 1"));

    // Without HSTS configured the upstream's is relayed, as hyper's path does.
    for (dp, case) in [(&p.fast, "X-Case: 1"), (&p.slow, "x-case: 1")] {
        let request = format!("GET /sts HTTP/1.1\r\nHost: {OPEN_TLS}\r\nX-Case: 1\r\n\r\n");
        let (h, ..) = exchange_tls(dp, &pems, OPEN_TLS, request.as_bytes())
            .await
            .expect("answered");
        assert_eq!(hsts(&h), ["max-age=1"], "{h}");
        let head = p.upstream.last_head();
        assert!(head.contains(case), "{head}");
    }

    // Plain HTTP to the same host: redirected by both (hyper's path), nothing forwarded.
    let before = p.upstream.heads().len();
    for dp in [&p.fast, &p.slow] {
        let request = format!("GET /ok HTTP/1.1\r\nHost: {APP_TLS}\r\nX-Case: 1\r\n\r\n");
        let (h, ..) = exchange(dp, request.as_bytes()).await.expect("answered");
        assert_eq!(status(&h), 308, "{h}");
        assert!(hsts(&h).is_empty(), "{h}");
    }
    assert_eq!(p.upstream.heads().len(), before);

    // The access log says `https` for both, and the same as hyper's path otherwise.
    for which in ["fast", "slow"] {
        let dp = if which == "fast" { &p.fast } else { &p.slow };
        let request = format!(
            "GET /ok?q=1 HTTP/1.1\r\nHost: {APP_TLS}\r\nX-Case: 1\r\nUser-Agent: probe/1\r\nX-Request-Id: tls-{which}\r\n\r\n"
        );
        exchange_tls(dp, &pems, APP_TLS, request.as_bytes())
            .await
            .expect("answered");
    }
    assert!(
        p.upstream
            .heads()
            .iter()
            .any(|h| h.contains("tls-fast") && h.contains("\r\nX-Case: 1"))
    );
    let fast = record(&p.cp, "tls-fast").await;
    let slow = record(&p.cp, "tls-slow").await;
    assert_eq!(fast["listener"], "https", "{fast}");
    assert_same_record(&fast, &slow, "tls");
}

/// The access-log fields a request's record has alike whichever path served it (all but
/// the time, durations and ids).
const SAME_ON_BOTH_PATHS: [&str; 16] = [
    "method",
    "host",
    "path",
    "query",
    "status",
    "http_version",
    "listener",
    "client_ip",
    "user_agent",
    "mcp_session_id",
    "upstream",
    "proxy",
    "route",
    "auth",
    "request_body_bytes",
    "response_body_bytes",
];

/// Asserts the records of the same request served by the fast path and by hyper's agree
/// on [`SAME_ON_BOTH_PATHS`].
fn assert_same_record(fast: &Value, slow: &Value, case: &str) {
    for field in SAME_ON_BOTH_PATHS {
        assert_eq!(fast[field], slow[field], "{case} {field}: {fast} / {slow}");
    }
}

/// Status, body and HSTS of the answer to `request` over TLS to [`APP_TLS`].
async fn answer_tls(
    dp: &DataPlane,
    pems: &[String],
    request: &str,
) -> Option<(u16, Vec<u8>, String)> {
    exchange_tls(dp, pems, APP_TLS, request.as_bytes())
        .await
        .map(|(h, b, _)| (status(&h), b, hsts(&h).join(" | ")))
}

#[tokio::test]
async fn https_requests_the_fast_path_does_not_take_get_the_same_answers_as_before() {
    let (p, pems) = tls_pair().await;
    let host = APP_TLS;
    let cases: Vec<(&str, Option<u16>, String)> = vec![
        (
            "body",
            Some(200),
            format!(
                "POST /ok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\nContent-Length: 3\r\n\r\nabc"
            ),
        ),
        (
            "upgrade",
            None,
            format!(
                "GET /ok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        ),
        (
            "expect",
            None,
            format!(
                "POST /ok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
            ),
        ),
        (
            "HTTP/1.0",
            Some(200),
            format!("GET /ok HTTP/1.0\r\nHost: {host}\r\nX-Case: 1\r\n\r\n"),
        ),
        (
            "unknown host",
            Some(404),
            "GET /ok HTTP/1.1\r\nHost: nope.localhost\r\nX-Case: 1\r\n\r\n".to_owned(),
        ),
        // Served on plain HTTP only: not in the HTTPS listener's host table.
        (
            "plain-HTTP host",
            Some(404),
            "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Case: 1\r\n\r\n".to_owned(),
        ),
        (
            "two hosts",
            Some(400),
            format!("GET /ok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\nHost: {host}\r\n\r\n"),
        ),
        (
            "encoded slash",
            Some(400),
            format!("GET /a%2Fb HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\n\r\n"),
        ),
        (
            "loop",
            Some(508),
            format!(
                "GET /ok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\nVia: 1.1 a, 1.1 b, 1.1 c, 1.1 d, 1.1 e, 1.1 f, 1.1 g, 1.1 h, 1.1 i, 1.1 j, 1.1 k, 1.1 l, 1.1 m, 1.1 n, 1.1 o, 1.1 p, 1.1 q\r\n\r\n"
            ),
        ),
    ];
    for (what, expected, request) in &cases {
        let before = p.upstream.heads().len();
        let fast = answer_tls(&p.fast, &pems, request).await;
        let forwarded_fast = p.upstream.heads().len() - before;
        let slow = answer_tls(&p.slow, &pems, request).await;
        let forwarded_slow = p.upstream.heads().len() - before - forwarded_fast;
        assert_eq!(fast, slow, "{what}");
        if let Some(expected) = expected {
            assert_eq!(fast.as_ref().map(|f| f.0), Some(*expected), "{what}");
        }
        assert_eq!(forwarded_fast, forwarded_slow, "{what}");
        for head in &p.upstream.heads()[before..] {
            assert!(
                head.contains("\r\nx-case: 1"),
                "{what}: only hyper's path: {head}"
            );
        }
    }

    // The ACME HTTP-01 path is the data plane's on plain HTTP only: over TLS it is
    // forwarded, by the fast path; on plain HTTP both answer it (404: no such token).
    let acme = format!(
        "GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: {host}\r\nX-Case: 1\r\n\r\n"
    );
    for dp in [&p.fast, &p.slow] {
        let (h, b, _) = exchange_tls(dp, &pems, host, acme.as_bytes())
            .await
            .expect("answered");
        assert_eq!((status(&h), &b[..]), (200, &b"hello"[..]), "{h}");
        let (h, ..) = exchange(dp, acme.as_bytes()).await.expect("answered");
        assert_eq!(status(&h), 404, "{h}");
    }
    let heads = p.upstream.heads();
    let acme_heads: Vec<&String> = heads
        .iter()
        .filter(|h| h.contains("acme-challenge"))
        .collect();
    assert_eq!(acme_heads.len(), 2, "{acme_heads:?}");
    assert!(
        acme_heads[0].contains("\r\nX-Case: 1"),
        "fast path: {}",
        acme_heads[0]
    );

    // HTTP/2 by ALPN: hyper's path on both, with the HTTPS rules.
    for dp in [&p.fast, &p.slow] {
        let addr = dp.https_addr().expect("an HTTPS listener");
        let client = reqwest::Client::builder()
            .tls_certs_only(
                pems.iter()
                    .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem")),
            )
            .resolve(host, addr)
            .no_proxy()
            .build()
            .expect("client");
        let response = client
            .get(format!("https://{host}:{}/ok", addr.port()))
            .header("x-case", "1")
            .send()
            .await
            .expect("h2 request");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let sts = response
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(sts.starts_with("max-age=600"), "{sts}");
        assert_eq!(response.text().await.expect("body"), "hello");
        let head = p.upstream.last_head();
        assert!(head.contains("\r\nx-case: 1"), "hyper's path: {head}");
        assert_eq!(header(&head, "x-forwarded-proto"), Some("https"));
    }
}

#[tokio::test]
async fn https_requests_to_protected_proxies_take_the_fast_path_with_the_identity() {
    const HOST: &str = "api.localhost";
    let p = protected(HOST, true).await;
    let pems = [certificate_pem(&p.cp, HOST)];
    let admitted = format!(
        "GET /ok HTTP/1.1\r\nHost: {HOST}\r\nX-Case: 1\r\nAuthorization: Bearer {}\r\nX-Forwarded-User: mallory\r\nX-Auth-User: mallory\r\nX-Request-Id: jwt-tls\r\n\r\n",
        p.token
    );
    let mut seen = Vec::new();
    for dp in [&p.fast, &p.slow] {
        let (head, body, _) = exchange_tls(dp, &pems, HOST, admitted.as_bytes())
            .await
            .expect("answered");
        assert_eq!((status(&head), &body[..]), (200, &b"hello"[..]), "{head}");
        seen.push(p.upstream.last_head());
    }
    let (f, s) = (&seen[0], &seen[1]);
    assert!(f.contains("\r\nX-Case: 1"), "fast path: {f}");
    assert!(s.contains("\r\nx-case: 1"), "hyper's path: {s}");
    assert_eq!(field_set(f), field_set(s));
    assert_eq!(header(f, "authorization"), None, "{f}");
    assert_eq!(header(f, "x-forwarded-user"), Some("alice"), "{f}");
    assert_eq!(header(f, "x-auth-user"), Some("alice"), "{f}");
    assert!(header(f, "x-auth-subject").is_some_and(|s| s.starts_with("github:")));
    assert_eq!(header(f, "x-forwarded-proto"), Some("https"), "{f}");

    // Refused the same way by both, over TLS; nothing forwarded.
    let before = p.upstream.heads().len();
    let refused = format!("GET /ok HTTP/1.1\r\nHost: {HOST}\r\nX-Case: 1\r\n\r\n");
    let mut answers = Vec::new();
    for dp in [&p.fast, &p.slow] {
        let (h, b, _) = exchange_tls(dp, &pems, HOST, refused.as_bytes())
            .await
            .expect("answered");
        answers.push((
            status(&h),
            b,
            header(&h, "www-authenticate").map(str::to_owned),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    assert_eq!(p.upstream.heads().len(), before);
}
