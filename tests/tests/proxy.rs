//! Traffic through a real data plane fed by a real control plane: host and route matching,
//! forwarding headers, upstream failures.

use std::time::Duration;

use portcullis_tests::{Backend, ControlPlane, DataPlane, http_client, raw_request};
use reqwest::StatusCode;
use serde_json::Value;

async fn which(dp: &DataPlane, host: &str, path: &str) -> (StatusCode, Value) {
    let r = dp.get(host, path).await;
    let s = r.status();
    let text = r.text().await.unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn sync(cp: &ControlPlane, dp: &DataPlane) {
    let v = cp.version().await;
    cp.wait_applied(&dp.node_id, v).await;
}

#[tokio::test]
async fn routing_precedence_hosts_and_methods() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-routing").await;
    let (a, b, c, d) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    );

    cp.cli_ok(&["proxy", "create", "app.example.com", &a.url]);
    cp.cli_ok(&["proxy", "create", "*.example.com", &b.url]);
    cp.cli_ok(&["proxy", "create", "*.deep.example.com", &c.url]);
    cp.cli_ok(&["service", "external", "register", "svc-d", &d.url]);
    // Scoped to app.example.com.
    cp.cli_ok(&[
        "route",
        "create",
        "/api",
        "url",
        &b.url,
        "--id",
        "api-prefix",
        "--priority",
        "10",
        "--proxy",
        "app.example.com",
    ]);
    cp.cli_ok(&[
        "route",
        "create",
        "/api/exact",
        "service",
        "svc-d",
        "--id",
        "api-exact",
        "--match",
        "exact",
        "--priority",
        "10",
        "--proxy",
        "app.example.com",
    ]);
    cp.cli_ok(&[
        "route",
        "create",
        "^/api/v[0-9]+/",
        "url",
        &c.url,
        "--id",
        "api-regex",
        "--match",
        "regex",
        "--priority",
        "20",
        "--proxy",
        "app.example.com",
    ]);
    cp.cli_ok(&[
        "route",
        "create",
        "/write",
        "url",
        &d.url,
        "--id",
        "post-only",
        "--method",
        "POST",
        "--proxy",
        "app.example.com",
    ]);
    // Global, low priority, targets another proxy's upstream.
    cp.cli_ok(&[
        "route",
        "create",
        "/global",
        "proxy",
        "*.deep.example.com",
        "--id",
        "global",
        "--priority",
        "1",
    ]);
    sync(&cp, &dp).await;

    // Host resolution: exact, most specific wildcard, port stripped, case folded.
    assert_eq!(which(&dp, "app.example.com", "/").await.1["backend"], "a");
    assert_eq!(
        which(&dp, "APP.example.com:8080", "/").await.1["backend"],
        "a"
    );
    assert_eq!(which(&dp, "x.example.com", "/").await.1["backend"], "b");
    assert_eq!(
        which(&dp, "y.deep.example.com", "/").await.1["backend"],
        "c"
    );
    let (s, body) = which(&dp, "nope.test", "/").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.as_str().unwrap_or("").contains("nope.test"), "{body}");

    // Routes: higher priority first; exact beats prefix at equal priority; regex by priority.
    assert_eq!(
        which(&dp, "app.example.com", "/api/x").await.1["backend"],
        "b"
    );
    assert_eq!(
        which(&dp, "app.example.com", "/api/exact").await.1["backend"],
        "d"
    );
    assert_eq!(
        which(&dp, "app.example.com", "/api/exact/more").await.1["backend"],
        "b"
    );
    assert_eq!(
        which(&dp, "app.example.com", "/api/v2/users").await.1["backend"],
        "c"
    );
    // Methods.
    assert_eq!(
        which(&dp, "app.example.com", "/write").await.1["backend"],
        "a"
    );
    let posted: Value = http_client()
        .post(format!("{}/write", dp.http))
        .header("host", "app.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["backend"], "d");
    // Global routes apply to every proxy; scoped ones only to theirs.
    assert_eq!(
        which(&dp, "app.example.com", "/global/1").await.1["backend"],
        "c"
    );
    assert_eq!(
        which(&dp, "x.example.com", "/global/1").await.1["backend"],
        "c"
    );
    assert_eq!(
        which(&dp, "x.example.com", "/api/x").await.1["backend"],
        "b"
    );
    // The path and query reach the backend unchanged.
    assert_eq!(
        which(&dp, "app.example.com", "/p/q?x=1&y=2").await.1["path"],
        "/p/q?x=1&y=2"
    );

    // Deleting a route takes effect.
    cp.cli_ok(&["route", "delete", "api-regex"]);
    sync(&cp, &dp).await;
    assert_eq!(
        which(&dp, "app.example.com", "/api/v2/users").await.1["backend"],
        "b"
    );
    // A disabled proxy is not served.
    cp.cli_ok(&["proxy", "update", "app.example.com", "--enabled", "false"]);
    sync(&cp, &dp).await;
    assert_eq!(
        which(&dp, "app.example.com", "/").await.1["backend"],
        "b",
        "falls to the wildcard"
    );
}

#[tokio::test]
async fn forwarding_headers_are_set_and_client_copies_ignored() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-headers").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&[
        "proxy",
        "create",
        "h.example.com",
        &format!("{}/base", a.url),
        "--request-header",
        "X-Custom=yes",
        "--response-header",
        "X-Served-By=portcullis",
    ]);
    cp.cli_ok(&[
        "proxy",
        "create",
        "keep.example.com",
        &a.url,
        "--preserve-host",
    ]);
    sync(&cp, &dp).await;

    let r = http_client()
        .get(format!("{}/p?q=1", dp.http))
        .header("host", "h.example.com")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6")
        .header("x-custom", "client")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-served-by"], "portcullis");
    let body: Value = r.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(body["path"], "/base/p?q=1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "h.example.com");
    assert_eq!(h["x-custom"], "yes");
    assert!(h.get("forwarded").is_none(), "{h}");
    assert!(
        h.get("x-drop-me").is_none(),
        "header named in Connection must be dropped: {h}"
    );
    assert_eq!(h["host"], a.addr.to_string());

    let body: Value = dp.get("keep.example.com", "/").await.json().await.unwrap();
    assert_eq!(body["headers"]["host"], "keep.example.com");

    // HTTP/1.1 without Host: 400 (raw socket, since clients always send one).
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(dp.http.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-errors").await;
    let slow = Backend::start("slow").await;
    let dead = format!("http://127.0.0.1:{}", portcullis_tests::free_port());
    cp.cli_ok(&["proxy", "create", "dead.example.com", &dead]);
    cp.cli_ok(&[
        "proxy",
        "create",
        "slow.example.com",
        &slow.url,
        "--read-timeout-ms",
        "300",
    ]);
    sync(&cp, &dp).await;

    let r = dp.get("dead.example.com", "/").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.text().await.unwrap().len() < 200);
    let started = std::time::Instant::now();
    let r = dp.get("slow.example.com", "/sleep/3000").await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(
        dp.get("slow.example.com", "/sleep/10").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn http2_clients_are_served() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-h2").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "h2.example.com", &a.url]);
    sync(&cp, &dp).await;
    // Resolve the proxy hostname to the data plane so :authority carries it.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(
            "h2.example.com",
            dp.http.trim_start_matches("http://").parse().unwrap(),
        )
        .build()
        .unwrap();
    let port = dp.http.rsplit(':').next().unwrap();
    let r = client
        .get(format!("http://h2.example.com:{port}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["backend"], "a");
}

/// Issue #16 item 5: identity a client claims never reaches an upstream, on open proxies too
/// (an app reached through a second, open proxy, or whose protection was turned off), including
/// the names configured on another proxy; nor do path overrides or `X-Forwarded-Port`.
#[tokio::test]
async fn client_identity_headers_are_stripped_on_open_proxies() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-forged").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "open.example.com", &a.url]);
    cp.cli_ok(&["proxy", "create", "closed.example.com", &a.url]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        "closed.example.com",
        "--auth-host",
        "auth.example.com",
        "--mode",
        "forward",
        "--identity-header",
        "user=X-Remote-User",
    ]);
    sync(&cp, &dp).await;
    let forged = [
        "x-auth-user",
        "x-auth-email",
        "x-auth-request-user",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-sub",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-remote-user",
        "x-original-url",
        "x-rewrite-url",
    ];
    let mut req = http_client()
        .get(format!("{}/page", dp.http))
        .header("host", "open.example.com")
        .header("x-kept", "1");
    for name in forged {
        req = req.header(name, "mallory");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.unwrap();
    for name in forged {
        assert!(
            seen["headers"].get(name).is_none(),
            "{name} reached the backend: {seen}"
        );
    }
    assert_eq!(seen["headers"]["x-kept"], "1", "{seen}");
    assert_eq!(seen["path"], "/page");
}

/// Issue #16 item 3: a proxy whose target is the data plane itself is a loop; the request
/// that comes back is refused (508) instead of recursing until descriptors run out.
#[tokio::test]
async fn a_proxy_that_targets_the_data_plane_itself_is_refused_as_a_loop() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-loop").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&[
        "proxy",
        "create",
        "loop.example.com",
        &dp.http,
        "--preserve-host",
    ]);
    cp.cli_ok(&["proxy", "create", "fine.example.com", &a.url]);
    sync(&cp, &dp).await;
    let r = dp.get("loop.example.com", "/x").await;
    assert_eq!(r.status(), StatusCode::LOOP_DETECTED);
    // A client cannot make us take part in a long chain either, and other proxies still work.
    let hops = vec!["1.1 p"; 17].join(", ");
    let (status, _) =
        raw_request(&dp.http, "GET", "/", "fine.example.com", &[("via", &hops)]).await;
    assert_eq!(status, 508);
    let (status, text) = raw_request(
        &dp.http,
        "GET",
        "/",
        "fine.example.com",
        &[("via", "1.1 lb")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // The upstream sees our Via entry after the client's (the echo keeps the last line).
    assert!(text.contains(r#""via":"1.1 portcullis-"#), "{text}");
    assert_eq!(a.received(), ["/"]);
}

/// Issue #16 item 3: one client address cannot hold every descriptor: past
/// `--max-connections-per-client` its new connections are closed at accept, other addresses
/// are served, and a closed connection gives its place back.
#[tokio::test]
async fn open_connections_per_client_address_are_bounded() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start_args(&cp, "dp-conns", &["--max-connections-per-client", "3"]).await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "c.example.com", &a.url]);
    sync(&cp, &dp).await;
    let addr = dp.http.trim_start_matches("http://").to_owned();
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    // Three open connections from 127.0.0.1 (the readiness probes went to the admin port),
    // each answered before the next is opened: workers accept in parallel, so only an
    // answered connection is known to hold its place.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: c.example.com\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        held.push(s);
    }
    // The fourth is closed without an answer.
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: c.example.com\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    // Another loopback address is another client.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: c.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    other.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Closing one gives its place back.
    drop(held.pop());
    portcullis_tests::eventually(Duration::from_secs(5), "a slot is free again", || {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: c.example.com\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.ok()?;
            answer.starts_with(b"HTTP/1.1 200").then_some(())
        }
    })
    .await;
    drop(held);
}

/// `--max-request-body-bytes`: a declared larger body is answered 413 before the upstream
/// is contacted, a streamed one is cut and answered 413, 0 lifts the limit.
#[tokio::test]
async fn request_bodies_over_the_proxy_limit_are_413() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-body-limit").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&[
        "proxy",
        "create",
        "small.example.com",
        &a.url,
        "--max-request-body-bytes",
        "1024",
    ]);
    sync(&cp, &dp).await;
    let post = |body: reqwest::Body| {
        http_client()
            .post(format!("{}/upload", dp.http))
            .header("host", "small.example.com")
            .body(body)
            .send()
    };

    let r = post(vec![b'x'; 4096].into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.received().is_empty(), "{:?}", a.received());

    let r = post(vec![b'x'; 1024].into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["received"], 1024);

    // Chunked, no length declared: cut once past the limit.
    let chunks = futures_util::stream::unfold(0, |sent| async move {
        (sent < 8).then_some(())?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, std::io::Error>(vec![b'y'; 512]), sent + 1))
    });
    let r = post(reqwest::Body::wrap_stream(chunks)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    cp.cli_ok(&[
        "proxy",
        "update",
        "small.example.com",
        "--max-request-body-bytes",
        "0",
    ]);
    sync(&cp, &dp).await;
    let r = post(vec![b'x'; 4096].into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["received"], 4096);
}

/// Issue #16 item 3: connections to one upstream origin are bounded; past the bound a
/// request that finds no idle connection gets 503 at once instead of taking descriptors, and
/// the other proxies keep working.
#[tokio::test]
async fn open_connections_per_upstream_origin_are_bounded() {
    let cp = ControlPlane::start().await;
    let dp =
        DataPlane::start_args(&cp, "dp-upstream-cap", &["--max-upstream-connections", "2"]).await;
    let slow = Backend::start("slow").await;
    let other = Backend::start("other").await;
    cp.cli_ok(&["proxy", "create", "slow.example.com", &slow.url]);
    cp.cli_ok(&["proxy", "create", "other.example.com", &other.url]);
    sync(&cp, &dp).await;
    let started = std::time::Instant::now();
    let requests =
        (0..4).map(|_| async { dp.get("slow.example.com", "/sleep/1500").await.status() });
    let mut statuses = futures_util::future::join_all(requests).await;
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(slow.received().len(), 2, "{:?}", slow.received());
    // Another origin is not affected, and the two connections are reused afterwards.
    assert_eq!(
        dp.get("other.example.com", "/").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        dp.get("slow.example.com", "/x").await.status(),
        StatusCode::OK
    );
}
