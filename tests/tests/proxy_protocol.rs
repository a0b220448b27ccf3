//! PROXY protocol with a real load balancer: HAProxy (Debian's) in front of a data plane
//! sends `send-proxy` (v1), `send-proxy-v2` and, in TCP mode towards the HTTPS listener,
//! `send-proxy-v2-ssl` (PROXY before TLS). The balancer connects from 127.0.0.1, the only
//! address in `--proxy-protocol-from`; clients connect from 127.0.0.5 (loopback sources are
//! chosen by binding), so the backend must see 127.0.0.5, never 127.0.0.1 nor what a client
//! claims. Also: forged headers from untrusted peers, a missing header from the balancer,
//! the wrong version, garbage, truncated, oversized and slow headers, each closing only its
//! own connection, and `--trusted-forwarders` taking the rightmost untrusted
//! `X-Forwarded-For` entry.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use portcullis_tests::procs::Proc;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, free_port};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
/// A direct client that is a trusted forwarder (not a PROXY sender).
const FORWARDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HOST: &str = "app.localhost";
/// A proxy allowing one request per second per client address.
const LIMITED: &str = "limited.localhost";
/// A proxy with an IP allowlist.
const ALLOWED: &str = "allowed.localhost";

/// HAProxy with three frontends: HTTP via v1, HTTP via v2, and TCP passthrough to the
/// HTTPS listener via v2 with the SSL TLV.
struct Haproxy {
    proc: Proc,
    v1: u16,
    v2: u16,
    tls: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

async fn haproxy(http: u16, https: u16) -> Haproxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let (v1, v2, tls) = (free_port(), free_port(), free_port());
    let conf = format!(
        r#"global
  maxconn 200
defaults
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  mode http
  bind 127.0.0.1:{v1}
  default_backend dp_v1
backend dp_v1
  mode http
  server s1 127.0.0.1:{http} send-proxy
frontend v2
  mode http
  bind 127.0.0.1:{v2}
  default_backend dp_v2
backend dp_v2
  mode http
  server s1 127.0.0.1:{http} send-proxy-v2
frontend tls
  mode tcp
  bind 127.0.0.1:{tls}
  default_backend dp_tls
backend dp_tls
  mode tcp
  server s1 127.0.0.1:{https} send-proxy-v2-ssl
"#
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, conf).expect("write haproxy.cfg");
    let proc = Proc::spawn(
        std::process::Command::new(if std::path::Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        })
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null()),
    );
    for port in [v1, v2, tls] {
        eventually(
            Duration::from_secs(10),
            "haproxy to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }
    Haproxy {
        proc,
        v1,
        v2,
        tls,
        _dir: dir,
    }
}

/// An HTTP client whose connections come from `source`.
fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .local_address(source)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// What the backend received for `GET url` (with `Host: app.localhost` and `headers`).
async fn seen(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Value {
    let mut req = client.get(url).header("host", HOST);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    let body: Value = resp.json().await.expect("backend JSON");
    body["headers"].clone()
}

/// Sends `bytes` from `source` to `addr` and returns everything the data plane answered
/// before closing (empty: closed without an answer). Panics if it stays open 10 s.
async fn raw_from(source: IpAddr, addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind source");
    let mut stream = socket.connect(addr).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await {
        Ok(_) => answer,
        Err(_) => panic!("connection from {source} still open after 10 s"),
    }
}

fn get(extra: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n")
}

/// The PROXY v2 header for a TCP4 connection from `src`, with `tlvs` appended raw.
fn v2_header(src: [u8; 4], tlvs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    let len = u16::try_from(12 + tlvs.len()).expect("short").to_be_bytes();
    h.extend_from_slice(&len);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb]);
    h.extend_from_slice(tlvs);
    h
}

/// `X-Forwarded-For` as JSON, from the backend's echo of one request.
fn xff(headers: &Value) -> &str {
    headers["x-forwarded-for"].as_str().unwrap_or("<none>")
}

struct Fixture {
    cp: ControlPlane,
    dp: DataPlane,
    _backend: Backend,
    lb: Haproxy,
    root_pem: String,
}

impl Fixture {
    fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dp.http_port()))
    }
    fn https(&self) -> SocketAddr {
        self.dp.https_addr().expect("an HTTPS listener")
    }
    fn tls_client(&self, source: IpAddr, to: SocketAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only(
                [reqwest::Certificate::from_pem(self.root_pem.as_bytes()).expect("pem")],
            )
            .resolve(HOST, to)
            .no_proxy()
            .local_address(source)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }
}

async fn fixture(node: &str) -> Fixture {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start_https_args(
        &cp,
        node,
        &[
            "--http-proxy-protocol",
            "any",
            "--https-proxy-protocol",
            "v2",
            "--proxy-protocol-from",
            "127.0.0.1/32",
            "--trusted-forwarders",
            "10.0.0.0/8,127.0.0.2",
        ],
    )
    .await;
    let backend = Backend::start("app").await;
    cp.cli_ok(&["proxy", "create", HOST, &backend.url, "--https"]);
    cp.cli_ok(&[
        "proxy",
        "create",
        LIMITED,
        &backend.url,
        "--rate-limit",
        "1",
        "--rate-burst",
        "1",
    ]);
    let cert: Value = serde_json::from_str(&cp.cli_ok(&["cert", "show", HOST, "--output", "json"]))
        .expect("json");
    let root_pem = cert["cert_chain_pem"]
        .as_str()
        .expect("a certificate")
        .to_owned();
    let version = cp.version().await;
    cp.wait_applied(node, version).await;
    let lb = haproxy(dp.http_port(), dp.https_addr().expect("https").port()).await;
    Fixture {
        cp,
        dp,
        _backend: backend,
        lb,
        root_pem,
    }
}

#[tokio::test]
async fn haproxy_v1_v2_and_v2_ssl_give_the_backend_the_client_address() {
    let fx = fixture("dp-pp-haproxy").await;
    let client = client_from(CLIENT);
    for port in [fx.lb.v1, fx.lb.v2] {
        let url = format!("http://127.0.0.1:{port}/");
        // What the client claims is replaced: it is not a trusted forwarder.
        let h = seen(
            &client,
            &url,
            &[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")],
        )
        .await;
        assert_eq!(xff(&h), "127.0.0.5", "port {port}: {h}");
        assert_eq!(h["x-real-ip"], "127.0.0.5", "{h}");
        assert_eq!(h["x-forwarded-proto"], "http", "{h}");
        // Keep-alive: a second request on the balancer's connection keeps its client.
        let h = seen(&client, &url, &[]).await;
        assert_eq!(xff(&h), "127.0.0.5", "{h}");
    }
    // PROXY v2 (with the SSL TLV) before TLS on the HTTPS listener, through TCP
    // passthrough: the client's TLS session ends at the data plane.
    let tls = fx.tls_client(CLIENT, SocketAddr::from(([127, 0, 0, 1], fx.lb.tls)));
    let h = seen(&tls, &format!("https://{HOST}:{}/", fx.lb.tls), &[]).await;
    assert_eq!(xff(&h), "127.0.0.5", "{h}");
    assert_eq!(h["x-forwarded-proto"], "https", "{h}");

    // The access log records the client from the header too: five requests through the
    // balancer (v1 and v2 twice each, and one over TLS), all from 127.0.0.5.
    let logs = format!("{}/api/v1/logs?host={HOST}&limit=1000", fx.cp.http);
    let records: Vec<Value> =
        eventually(Duration::from_secs(10), "five access-log records", || {
            let (logs, token) = (logs.clone(), fx.cp.admin_token.clone());
            async move {
                let page: Value = reqwest::Client::new()
                    .get(&logs)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let items = page["items"].as_array()?.clone();
                (items.len() >= 5).then_some(items)
            }
        })
        .await;
    assert_eq!(records.len(), 5, "{records:?}");
    for r in &records {
        assert_eq!(r["client_ip"], "127.0.0.5", "{r}");
    }
    let listeners: Vec<&str> = records
        .iter()
        .filter_map(|r| r["listener"].as_str())
        .collect();
    assert_eq!(
        listeners.iter().filter(|l| **l == "https").count(),
        1,
        "{listeners:?}"
    );
}

#[tokio::test]
async fn forged_missing_wrong_and_bad_headers_close_only_their_connection() {
    let fx = fixture("dp-pp-refused").await;
    let (http, https) = (fx.http(), fx.https());
    let v1 = format!("PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n{}", get(""));
    let v2 = [v2_header([203, 0, 113, 9], &[]), get("").into_bytes()].concat();

    // Forged by a client not in --proxy-protocol-from: closed without an answer, v1 and v2.
    assert_eq!(raw_from(CLIENT, http, v1.as_bytes()).await, b"");
    assert_eq!(raw_from(CLIENT, http, &v2).await, b"");
    // The same client without a header is served as always, under its own address.
    let plain = raw_from(CLIENT, http, get("").as_bytes()).await;
    let plain = String::from_utf8_lossy(&plain);
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(
        plain.contains("\"x-forwarded-for\":\"127.0.0.5\""),
        "{plain}"
    );
    // An untrusted TLS client without a header is served under its own address.
    let forged_tls = fx.tls_client(CLIENT, https);
    let h = seen(
        &forged_tls,
        &format!("https://{HOST}:{}/", https.port()),
        &[],
    )
    .await;
    assert_eq!(xff(&h), "127.0.0.5");
    // PROXY from an untrusted peer on HTTPS: at most a TLS alert record (0x15), then closed.
    let answer = raw_from(CLIENT, https, &v2).await;
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");

    // The balancer without a header: refused, on both listeners.
    assert_eq!(raw_from(BALANCER, http, get("").as_bytes()).await, b"");
    let direct = fx.tls_client(BALANCER, https);
    assert!(
        direct
            .get(format!("https://{HOST}:{}/", https.port()))
            .send()
            .await
            .is_err(),
        "TLS from the balancer without a PROXY header"
    );
    // v1 on the v2-only HTTPS listener.
    assert_eq!(raw_from(BALANCER, https, v1.as_bytes()).await, b"");

    // A good header straight from the balancer works (the address it carries is used).
    let ok = raw_from(BALANCER, http, v1.as_bytes()).await;
    let ok = String::from_utf8_lossy(&ok);
    assert!(ok.contains("\"x-forwarded-for\":\"203.0.113.9\""), "{ok}");
    let ok = raw_from(BALANCER, http, &v2).await;
    assert!(String::from_utf8_lossy(&ok).contains("\"x-real-ip\":\"203.0.113.9\""));

    // Garbage, truncated, 10 KB and slow headers, while a slow good request is in flight
    // through HAProxy: each closes its own connection only.
    let client = client_from(CLIENT);
    let slow_url = format!("http://127.0.0.1:{}/sleep/1500", fx.lb.v2);
    let in_flight = tokio::spawn(async move {
        client
            .get(slow_url)
            .header("host", HOST)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x27\x10".to_vec();
    huge.extend(std::iter::repeat_n(0u8, 10_000));
    for (what, bytes) in [
        (
            "garbage",
            b"PROXY garbage garbage\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "truncated v1",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 55".to_vec(),
        ),
        ("truncated v2", v2_header([1, 2, 3, 4], &[])[..20].to_vec()),
        (
            "10 KB v1",
            [b"PROXY TCP4 ".as_slice(), &[b'9'; 10_000]].concat(),
        ),
        ("10 KB v2", huge.clone()),
        (
            "bad TLV",
            v2_header([1, 2, 3, 4], &[0x01, 0x00, 0x09, b'h']),
        ),
    ] {
        let started = Instant::now();
        let answer = raw_from(BALANCER, http, &bytes).await;
        assert_eq!(answer, b"", "{what}: {}", String::from_utf8_lossy(&answer));
        // Truncated headers wait for the 5 s header deadline; the others close at once.
        assert!(started.elapsed() < Duration::from_secs(8), "{what}");
    }
    // Slow: one byte, then silence. Closed at the deadline, not before.
    let started = Instant::now();
    assert_eq!(raw_from(BALANCER, http, b"P").await, b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(9),
        "slow header closed after {waited:?}"
    );
    assert_eq!(
        in_flight
            .await
            .expect("task")
            .expect("the concurrent good request"),
        200
    );
}

#[tokio::test]
async fn trusted_forwarders_name_the_rightmost_untrusted_address() {
    let fx = fixture("dp-pp-xff").await;
    let url = format!("http://{}/", fx.http());
    let chain = "6.6.6.6, 203.0.113.9, 10.0.0.3";
    // A direct trusted forwarder (127.0.0.2): the rightmost untrusted entry.
    let forwarder = client_from(FORWARDER);
    let h = seen(&forwarder, &url, &[("x-forwarded-for", chain)]).await;
    assert_eq!(xff(&h), "203.0.113.9", "{h}");
    assert_eq!(h["x-real-ip"], "203.0.113.9", "{h}");
    // Every entry trusted: the leftmost.
    let h = seen(
        &forwarder,
        &url,
        &[("x-forwarded-for", "10.1.1.1, 10.0.0.3")],
    )
    .await;
    assert_eq!(xff(&h), "10.1.1.1", "{h}");
    // Malformed from the right: not believed, the forwarder's own address is used.
    let h = seen(
        &forwarder,
        &url,
        &[("x-forwarded-for", "203.0.113.9, bogus")],
    )
    .await;
    assert_eq!(xff(&h), "127.0.0.2", "{h}");
    // No header: the forwarder itself.
    let h = seen(&forwarder, &url, &[]).await;
    assert_eq!(xff(&h), "127.0.0.2", "{h}");
    // An untrusted client sending the same chain gets its own address.
    let h = seen(&client_from(CLIENT), &url, &[("x-forwarded-for", chain)]).await;
    assert_eq!(xff(&h), "127.0.0.5", "{h}");
    // A PROXY header whose source is a trusted forwarder (10.1.2.3): its XFF is honoured.
    let req = [
        v2_header([10, 1, 2, 3], &[]),
        get(&format!("X-Forwarded-For: {chain}\r\n")).into_bytes(),
    ]
    .concat();
    let answer = raw_from(BALANCER, fx.http(), &req).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains("\"x-forwarded-for\":\"203.0.113.9\""),
        "{answer}"
    );
    // A PROXY header whose source is not trusted: the source, whatever XFF says.
    let req = [
        v2_header([198, 51, 100, 1], &[]),
        get(&format!("X-Forwarded-For: {chain}\r\n")).into_bytes(),
    ]
    .concat();
    let answer = raw_from(BALANCER, fx.http(), &req).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains("\"x-forwarded-for\":\"198.51.100.1\""),
        "{answer}"
    );
}

/// Rate limits count the address from the PROXY header: behind one balancer, a client
/// over its limit does not limit another.
#[tokio::test]
async fn rate_limits_count_the_client_address_from_the_header() {
    let fx = fixture("dp-pp-limits").await;
    let url = format!("http://127.0.0.1:{}/", fx.lb.v2);
    let status = |source: IpAddr| {
        let url = url.clone();
        async move {
            client_from(source)
                .get(url)
                .header("host", LIMITED)
                .send()
                .await
                .expect("through HAProxy")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(CLIENT).await, 200);
    assert_eq!(status(CLIENT).await, 429, "127.0.0.5 is over its rate");
    // Another client behind the same balancer (same TCP peer) has its own bucket.
    assert_eq!(status(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))).await, 200);
}

/// A proxy's IP allowlist applies to the client address from the PROXY header (behind
/// the balancer) and to the TCP peer (direct); the balancer's own address does not count.
#[tokio::test]
async fn ip_allowlists_see_the_client_address_from_the_header() {
    let fx = fixture("dp-pp-allow").await;
    let backend = Backend::start("allowed").await;
    fx.cp.cli_ok(&[
        "proxy",
        "create",
        ALLOWED,
        &backend.url,
        "--ip-allow",
        "127.0.0.5/32,2001:db8::/32",
    ]);
    let shown: Value = serde_json::from_str(
        &fx.cp
            .cli_ok(&["proxy", "show", ALLOWED, "--output", "json"]),
    )
    .expect("json");
    assert_eq!(
        shown["ip_allowlist"],
        serde_json::json!(["127.0.0.5/32", "2001:db8::/32"])
    );
    let version = fx.cp.version().await;
    fx.cp.wait_applied(&fx.dp.node_id, version).await;
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
    let via_balancer = format!("http://127.0.0.1:{}/", fx.lb.v2);
    let direct = format!("http://{}/", fx.http());
    let status = |source: IpAddr, url: String| async move {
        let response = client_from(source)
            .get(url)
            .header("host", ALLOWED)
            .send()
            .await
            .expect("a response");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    };
    assert_eq!(status(CLIENT, via_balancer.clone()).await.0, 200);
    let (code, body) = status(other, via_balancer).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("address"), "{body}");
    assert_eq!(status(CLIENT, direct.clone()).await.0, 200);
    assert_eq!(status(other, direct).await.0, 403);
    // Other proxies are not restricted.
    let h = seen(&client_from(other), &format!("http://{}/", fx.http()), &[]).await;
    assert_eq!(xff(&h), "127.0.0.6", "{h}");
    // Refused, naming the field, and nothing changed: host bits set, not an address.
    for bad in ["127.0.0.5/8", "localhost", "10.0.0.0/33"] {
        let out = fx.cp.cli(
            &fx.cp.admin_token,
            &["proxy", "update", ALLOWED, "--ip-allow", bad],
        );
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("ip_allowlist"), "{bad}: {stderr}");
    }
    // "" allows every client again.
    fx.cp
        .cli_ok(&["proxy", "update", ALLOWED, "--ip-allow", ""]);
    let version = fx.cp.version().await;
    fx.cp.wait_applied(&fx.dp.node_id, version).await;
    assert_eq!(status(other, format!("http://{}/", fx.http())).await.0, 200);
}

/// nginx listening with `proxy_protocol`, answering with the address the header gave.
struct Nginx {
    proc: Proc,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

async fn nginx_proxy_protocol() -> Nginx {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} proxy_protocol;
    default_type text/plain;
    location / {{ return 200 "$proxy_protocol_addr"; }}
  }}
}}
"#
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let proc = Proc::spawn(
        std::process::Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    eventually(Duration::from_secs(10), "nginx to listen", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    Nginx {
        proc,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// `--upstream-proxy-protocol v1|v2`: nginx behind the data plane sees each request's
/// client, through HAProxy (PROXY in, PROXY out) or directly; connections are never
/// shared between clients, so alternating clients each see their own address.
#[tokio::test]
async fn nginx_upstream_receives_the_client_address_v1_and_v2() {
    let fx = fixture("dp-pp-send").await;
    let nginx = nginx_proxy_protocol().await;
    for (host, version) in [("pp1.localhost", "v1"), ("pp2.localhost", "v2")] {
        fx.cp.cli_ok(&[
            "proxy",
            "create",
            host,
            &nginx.url,
            "--upstream-proxy-protocol",
            version,
        ]);
    }
    // Refused values name the flag and change nothing.
    let out = fx.cp.cli(
        &fx.cp.admin_token,
        &[
            "proxy",
            "update",
            "pp1.localhost",
            "--upstream-proxy-protocol",
            "v3",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream-proxy-protocol"));
    let shown: Value = serde_json::from_str(&fx.cp.cli_ok(&[
        "proxy",
        "show",
        "pp2.localhost",
        "--output",
        "json",
    ]))
    .expect("json");
    assert_eq!(shown["upstream_proxy_protocol"], "v2", "{shown}");
    let version = fx.cp.version().await;
    fx.cp.wait_applied(&fx.dp.node_id, version).await;

    let via_lb = format!("http://127.0.0.1:{}/", fx.lb.v2);
    let direct = format!("http://{}/", fx.http());
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
    for host in ["pp1.localhost", "pp2.localhost"] {
        for (source, url, expected) in [
            (CLIENT, &via_lb, "127.0.0.5"),
            (other, &via_lb, "127.0.0.6"),
            (CLIENT, &via_lb, "127.0.0.5"),
            (other, &direct, "127.0.0.6"),
            (CLIENT, &direct, "127.0.0.5"),
        ] {
            let body = client_from(source)
                .get(url.as_str())
                .header("host", host)
                .send()
                .await
                .expect("through the data plane")
                .text()
                .await
                .expect("body");
            assert_eq!(body, expected, "{host} from {source} via {url}");
        }
        // A trusted forwarder's client is the one named.
        let body = client_from(FORWARDER)
            .get(direct.as_str())
            .header("host", host)
            .header("x-forwarded-for", "198.51.100.4, 10.0.0.1")
            .send()
            .await
            .expect("through the data plane")
            .text()
            .await
            .expect("body");
        assert_eq!(body, "198.51.100.4", "{host}");
    }
}
