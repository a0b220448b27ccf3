//! OpenTelemetry traces against a real collector (rotel, from the Python registry; installed
//! by `tests/run.sh` into `tests/otel/.venv`): the data plane continues a client's W3C trace
//! context, starts new traces otherwise, never continues a malformed `traceparent`, passes
//! its own span to the upstream, samples by ratio; the control plane exports API (gRPC with
//! its status code, REST), OAuth endpoint, snapshot publication and ACK spans, and ACME
//! order spans (against a real Pebble). Also: `--log-format json` makes both binaries log
//! JSON lines.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::pebble::Pebble;
use portcullis_tests::procs::{Proc, bin};
use portcullis_tests::{Backend, ControlPlane, DataPlane, cli, eventually, free_port, http_client};
use serde_json::Value;

/// One span as the collector printed it.
#[derive(Debug, Clone, Default)]
struct Span {
    service: String,
    trace_id: String,
    parent_id: String,
    id: String,
    name: String,
    kind: String,
    /// `STATUS_CODE_UNSET`, `…_OK` or `…_ERROR`.
    status: String,
    attributes: BTreeMap<String, String>,
}

/// A rotel collector printing every span it receives (`--debug-log traces`) to a file.
struct Rotel {
    _proc: Proc,
    out: PathBuf,
    _dir: tempfile::TempDir,
    grpc: String,
    http: String,
}

fn rotel_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTCULLIS_ROTEL_AGENT") {
        return path.into();
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("otel/.venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("site-packages/rotel/rotel-agent"))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "rotel-agent not found under {}: tests/run.sh installs it (python3 -m venv tests/otel/.venv && tests/otel/.venv/bin/pip install rotel)",
                lib.display()
            )
        })
}

impl Rotel {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("spans.txt");
        let (grpc, http) = (free_port(), free_port());
        let mut cmd = Command::new(rotel_agent());
        cmd.args(["start", "--exporter", "blackhole"])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
            .stdout(std::fs::File::create(&out).expect("spans file"))
            .stderr(Stdio::null());
        let proc = Proc::spawn(&mut cmd);
        eventually(Duration::from_secs(20), "rotel listening", || async {
            let g = tokio::net::TcpStream::connect(("127.0.0.1", grpc)).await;
            let h = tokio::net::TcpStream::connect(("127.0.0.1", http)).await;
            (g.is_ok() && h.is_ok()).then_some(())
        })
        .await;
        Self {
            _proc: proc,
            out,
            _dir: dir,
            grpc: format!("http://127.0.0.1:{grpc}"),
            http: format!("http://127.0.0.1:{http}"),
        }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut spans: Vec<Span> = Vec::new();
        let mut service = String::new();
        let mut in_resource = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("Resource attributes:") {
                in_resource = true;
                continue;
            }
            if trimmed.starts_with("Span #") {
                in_resource = false;
                spans.push(Span {
                    service: service.clone(),
                    ..Span::default()
                });
                continue;
            }
            if let Some(attr) = trimmed.strip_prefix("-> ") {
                let Some((key, value)) = attr.split_once(": ") else {
                    continue;
                };
                // Str(x), Int(x), Bool(x): the inside.
                let value = value
                    .split_once('(')
                    .map_or(value, |(_, v)| v.strip_suffix(')').unwrap_or(v));
                if in_resource {
                    if key == "service.name" {
                        service = value.to_owned();
                    }
                } else if let Some(span) = spans.last_mut() {
                    span.attributes.insert(key.to_owned(), value.to_owned());
                }
                continue;
            }
            let Some(span) = spans.last_mut() else {
                continue;
            };
            if let Some((key, value)) = trimmed.split_once(':') {
                let value = value.trim().to_owned();
                match key.trim() {
                    "Trace ID" => span.trace_id = value,
                    "Parent ID" => span.parent_id = value,
                    "ID" => span.id = value,
                    "Name" => span.name = value,
                    "Kind" => span.kind = value,
                    "Status code" => span.status = value,
                    _ => {}
                }
            }
        }
        spans
    }

    /// Waits (20 s at most: the batch processor exports every 5 s) for a span matching `f`.
    async fn wait_for(&self, what: &str, f: impl Fn(&Span) -> bool) -> Span {
        eventually(Duration::from_secs(20), what, || {
            let found = self.spans().into_iter().find(|s| f(s));
            async move { found }
        })
        .await
    }
}

/// `traceparent` the backend received (it echoes request headers as JSON).
async fn upstream_trace_headers(
    dp: &DataPlane,
    host: &str,
    headers: &[(&str, &str)],
) -> (Option<String>, Option<String>) {
    let mut req = http_client()
        .get(format!("{}/echo", dp.http))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = req.send().await.expect("request through the data plane");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("backend JSON");
    let header = |name: &str| body["headers"][name].as_str().map(str::to_owned);
    (header("traceparent"), header("tracestate"))
}

/// (trace id, span id, flags) of a `traceparent` the test knows to be well formed.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    (
        fields[1].to_owned(),
        fields[2].to_owned(),
        fields[3].to_owned(),
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn requests_are_traced_through_the_proxy_and_api_calls_on_the_control_plane() {
    let rotel = Rotel::start().await;
    let cp = ControlPlane::start_args(vec!["--otlp-endpoint".into(), rotel.grpc.clone()]).await;
    // OTLP/gRPC, every new trace sampled.
    let dp = DataPlane::start_args(&cp, "dp-traced", &["--otlp-endpoint", &rotel.grpc]).await;
    // OTLP/HTTP, no new trace sampled.
    let dp0 = DataPlane::start_args(
        &cp,
        "dp-ratio0",
        &[
            "--otlp-endpoint",
            &rotel.http,
            "--otlp-protocol",
            "http",
            "--trace-sample-ratio",
            "0",
        ],
    )
    .await;
    let backend = Backend::start("traced").await;
    cp.cli_ok(&["proxy", "create", "app.test", &backend.url]);
    cp.cli_ok(&[
        "route",
        "create",
        "/api",
        "url",
        &backend.url,
        "--id",
        "api-route",
        "--proxy",
        "app.test",
    ]);
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
    cp.wait_applied(&dp0.node_id, version).await;

    // 1. A client's sampled context is continued: same trace, the client's span as parent,
    //    the proxy's span as the upstream's parent, tracestate passed on.
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (sent, state) = upstream_trace_headers(
        &dp,
        "app.test",
        &[("traceparent", &client), ("tracestate", "vendor=abc")],
    )
    .await;
    let sent = sent.expect("the backend received a traceparent");
    let (trace, proxy_span, flags) = parts(&sent);
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(
        proxy_span, CLIENT_SPAN,
        "the proxy's own span is the parent upstream"
    );
    assert_eq!(flags, "01");
    assert_eq!(state.as_deref(), Some("vendor=abc"));
    let span = rotel
        .wait_for("the proxy's server span of the continued trace", |s| {
            s.trace_id == CLIENT_TRACE && s.id == proxy_span
        })
        .await;
    assert_eq!(span.service, "portcullis-data-plane");
    assert_eq!(span.parent_id, CLIENT_SPAN);
    assert_eq!(span.kind, "SPAN_KIND_SERVER");
    assert_eq!(span.name, "GET");
    let attr = |k: &str| span.attributes.get(k).map(String::as_str);
    assert_eq!(attr("http.request.method"), Some("GET"));
    assert_eq!(attr("url.path"), Some("/echo"));
    assert_eq!(attr("url.scheme"), Some("http"));
    assert_eq!(attr("server.address"), Some("app.test"));
    assert_eq!(attr("http.response.status_code"), Some("200"));
    assert_eq!(attr("network.protocol.version"), Some("1.1"));
    assert_eq!(attr("client.address"), Some("127.0.0.1"));

    // A request that matched a route: `http.route` is its pattern, in the span's name.
    let routed = format!("00-{}-{CLIENT_SPAN}-01", "c".repeat(32));
    let response = http_client()
        .get(format!("{}/api/items/7", dp.http))
        .header("host", "app.test")
        .header("traceparent", &routed)
        .send()
        .await
        .expect("routed request");
    assert_eq!(response.status(), 200);
    let span = rotel
        .wait_for("the span of a routed request", |s| {
            s.trace_id == "c".repeat(32)
        })
        .await;
    assert_eq!(span.name, "GET /api");
    assert_eq!(
        span.attributes.get("http.route").map(String::as_str),
        Some("/api")
    );
    assert_eq!(
        span.attributes
            .get("portcullis.route.id")
            .map(String::as_str),
        Some("api-route")
    );
    assert_eq!(
        span.attributes.get("url.path").map(String::as_str),
        Some("/api/items/7")
    );

    // 2. No traceparent: a new trace, whose id and span the backend receives.
    let (sent, state) = upstream_trace_headers(&dp, "app.test", &[]).await;
    let (new_trace, new_span, flags) = parts(&sent.expect("a traceparent for a new trace"));
    assert_ne!(new_trace, CLIENT_TRACE);
    assert_eq!(flags, "01", "ratio 1.0 samples every new trace");
    assert_eq!(state, None);
    let span = rotel
        .wait_for("the span of the new trace", |s| s.trace_id == new_trace)
        .await;
    assert_eq!(span.id, new_span);
    assert_eq!(span.parent_id, "", "a new trace has no parent");
    // The access-log record of that request names the same trace: collector, record and
    // backend agree on one id.
    let logs = format!(
        "{}/api/v1/logs?host=app.test&path=/echo&limit=1000",
        cp.http
    );
    eventually(
        Duration::from_secs(10),
        "the request's access-log record",
        || {
            let (logs, token) = (logs.clone(), cp.admin_token.clone());
            let new_trace = new_trace.clone();
            async move {
                let page: Value = http_client()
                    .get(&logs)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                page["items"]
                    .as_array()?
                    .iter()
                    .any(|r| r["trace_id"] == new_trace.as_str())
                    .then_some(())
            }
        },
    )
    .await;

    // 3. A malformed traceparent (upper-case hex) is not continued, and its tracestate
    //    is dropped.
    let malformed = format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase());
    let (sent, state) = upstream_trace_headers(
        &dp,
        "app.test",
        &[("traceparent", &malformed), ("tracestate", "vendor=forged")],
    )
    .await;
    let (fresh, fresh_span, _) = parts(&sent.expect("a traceparent replacing the malformed one"));
    assert!(
        !fresh.eq_ignore_ascii_case(CLIENT_TRACE),
        "malformed traceparent continued"
    );
    assert_eq!(
        state, None,
        "the malformed context's tracestate reached the upstream"
    );
    let span = rotel
        .wait_for("the span replacing a malformed context", |s| {
            s.trace_id == fresh
        })
        .await;
    assert_eq!(
        (span.id.as_str(), span.parent_id.as_str()),
        (fresh_span.as_str(), "")
    );

    // 4. Ratio 0 (over OTLP/HTTP): a new trace is propagated (flags 00) but not exported;
    //    a client's sampled trace still is (parent-based).
    let (sent, _) = upstream_trace_headers(&dp0, "app.test", &[]).await;
    let (unsampled, _, flags) = parts(&sent.expect("a traceparent even when not sampled"));
    assert_eq!(flags, "00");
    let other_client = format!("00-{}-{CLIENT_SPAN}-01", "a".repeat(32));
    let (sent, _) =
        upstream_trace_headers(&dp0, "app.test", &[("traceparent", &other_client)]).await;
    let (_, sampled_span, flags) = parts(&sent.expect("continued"));
    assert_eq!(flags, "01");
    let span = rotel
        .wait_for(
            "the sampled span from the ratio-0 data plane (OTLP/HTTP)",
            |s| s.id == sampled_span,
        )
        .await;
    assert_eq!(span.trace_id, "a".repeat(32));
    assert!(
        rotel.spans().iter().all(|s| s.trace_id != unsampled),
        "an unsampled new trace was exported"
    );

    // 5. Control plane: the API call above and a REST call carrying a traceparent are
    //    spans; the snapshot with the proxy was published and ACKed by each data plane at
    //    that version.
    let span = rotel
        .wait_for("the gRPC span of `proxy create`", |s| {
            s.service == "portcullis-control-plane"
                && s.kind == "SPAN_KIND_SERVER"
                && s.attributes.get("rpc.method").map(String::as_str) == Some("CreateProxy")
        })
        .await;
    assert_eq!(
        span.attributes
            .get("rpc.grpc.status_code")
            .map(String::as_str),
        Some("0"),
        "{span:?}"
    );
    // A refused call carries its status code (16, UNAUTHENTICATED; a client error, so the
    // span is not marked as failed).
    let out = cli(&cp.grpc, "pcs_not-a-token", &["proxy", "list"]);
    assert!(!out.status.success());
    let span = rotel
        .wait_for("the gRPC span of a refused call", |s| {
            s.attributes.get("rpc.method").map(String::as_str) == Some("ListProxies")
                && s.attributes.get("rpc.grpc.status_code").map(String::as_str) == Some("16")
        })
        .await;
    assert_eq!(span.service, "portcullis-control-plane");
    assert!(
        span.status.starts_with("STATUS_CODE_") && !span.status.contains("ERROR"),
        "a client error is not a server error: {span:?}"
    );
    // An OAuth endpoint is a span too.
    let oauth_trace = "d".repeat(32);
    let response = http_client()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            cp.http
        ))
        .header("traceparent", format!("00-{oauth_trace}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .expect("OAuth metadata");
    assert_eq!(response.status(), 200);
    let span = rotel
        .wait_for("the OAuth metadata span", |s| s.trace_id == oauth_trace)
        .await;
    assert_eq!(span.name, "GET /.well-known/oauth-authorization-server");
    assert_eq!(span.service, "portcullis-control-plane");
    let rest_trace = "b".repeat(32);
    let response = http_client()
        .get(format!("{}/api/v1/proxy/targets", cp.http))
        .bearer_auth(&cp.admin_token)
        .header("traceparent", format!("00-{rest_trace}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .expect("REST call");
    assert_eq!(response.status(), 200);
    let span = rotel
        .wait_for("the REST span", |s| s.trace_id == rest_trace)
        .await;
    assert_eq!(span.name, "GET /api/v1/proxy/targets");
    assert_eq!(span.parent_id, CLIENT_SPAN);
    assert_eq!(
        span.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );
    let version = version.to_string();
    rotel
        .wait_for("snapshot.publish at the proxy's version", |s| {
            s.name == "snapshot.publish" && s.attributes.get("snapshot.version") == Some(&version)
        })
        .await;
    for node in [&dp.node_id, &dp0.node_id] {
        rotel
            .wait_for("snapshot.ack by each data plane", |s| {
                s.name == "snapshot.ack"
                    && s.attributes.get("snapshot.version") == Some(&version)
                    && s.attributes.get("dataplane.node_id") == Some(node)
            })
            .await;
    }
}

/// An ACME order (a real Pebble, HTTP-01 answered by a real data plane) is an `acme.order`
/// span naming the certificate, not marked as failed.
#[tokio::test]
async fn acme_orders_are_traced() {
    let rotel = Rotel::start().await;
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https).await;
    let cp = ControlPlane::start_args(vec![
        "--otlp-endpoint".into(),
        rotel.grpc.clone(),
        "--acme-directory".into(),
        pebble.directory.clone(),
        "--acme-ca-cert".into(),
        pebble.tls_cert.display().to_string(),
        "--acme-email".into(),
        "ops@example.test".into(),
    ])
    .await;
    let _dp = DataPlane::start_https(&cp, "dp-acme-traced", http, https).await;
    let backend = Backend::start("acme").await;
    cp.cli_ok(&[
        "proxy",
        "create",
        "traced.example.test",
        &backend.url,
        "--https",
    ]);
    let span = rotel
        .wait_for("the acme.order span", |s| {
            s.name == "acme.order"
                && s.attributes.get("certificate.name").map(String::as_str)
                    == Some("traced.example.test")
        })
        .await;
    assert_eq!(span.service, "portcullis-control-plane");
    let status: Value = serde_json::from_str(&cp.cli_ok(&[
        "cert",
        "status",
        "traced.example.test",
        "--output",
        "json",
    ]))
    .expect("cert status json");
    assert_eq!(status["status"], "valid", "{status}");
    assert!(
        span.status.starts_with("STATUS_CODE_") && !span.status.contains("ERROR"),
        "a successful order is not an error: {span:?}"
    );
}

/// Reads stderr lines of `cmd` (started with `--log-format json`) until `n` arrived, and
/// checks each is a JSON object with a level and fields.
fn json_log_lines(cmd: &mut Command, n: usize) {
    let mut child = cmd
        .env("PORTCULLIS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < n {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.len() >= n, "fewer than {n} log lines: {lines:?}");
    for line in lines {
        let parsed: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
        assert!(parsed["fields"].is_object(), "{line}");
        assert!(parsed["timestamp"].is_string(), "{line}");
    }
}

#[test]
fn log_format_json_writes_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Data plane: its start-up line and the failing connection to a control plane that
    // is not there.
    json_log_lines(
        Command::new(bin("portcullis-data-plane"))
            .args(["--control-plane", "http://127.0.0.1:9"])
            .args(["--enrolment-token", "t", "--node-id", "json-logs"])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--log-format", "json"]),
        2,
    );
    // Control plane: its start-up lines.
    json_log_lines(
        Command::new(bin("portcullis-control-plane"))
            .args(["--log-format", "json", "serve"])
            .arg("--data-dir")
            .arg(dir.path().join("cp"))
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ]),
        3,
    );
}
