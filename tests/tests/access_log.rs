//! Access-log records end to end: a real data plane records every request, writes JSON
//! lines to stdout and ships the records to a real control plane, where REST
//! `/api/v1/logs` finds them with the right fields. Requests carry every kind of secret
//! (Authorization, cookies, `code`/`access_token`/`state`/`client_secret` parameters, a
//! real bearer token; the login itself carries an authorization code, a refresh token and
//! the identity provider's client secret, the CLI the admin token, the data plane its
//! enrolment token); none appears in any record, in the stdout sink, in the store (the
//! embedded store's file bytes, or every value of every key on a real Redis), or in either
//! process's own output at debug level. Each of those scans is shown to see a value that
//! is meant to be there (the user agent, a node id), so it could see a leak. The request id
//! round-trips. A control-plane restart loses nothing that was not counted as dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_tests::browser::{self, PKCE_CHALLENGE, PKCE_VERIFIER, alice, github_login};
use portcullis_tests::procs::{bin, listening_addr};
use portcullis_tests::{
    Backend, ControlPlane, DataPlane, RedisServer, WsEcho, eventually, http_client,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const REDIRECT: &str = "http://127.0.0.1:53998/callback";

/// A data plane whose stdout (the access-log sink) and stderr (its logs, at debug) go
/// to files; killed on drop.
struct LoggingDataPlane {
    child: Child,
    http: String,
    enrolment_token: String,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LoggingDataPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LoggingDataPlane {
    async fn start(cp: &ControlPlane, node_id: &str, sinks: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let token = cp.enrolment_token(node_id);
        let child = Command::new(bin("portcullis-data-plane"))
            .args(["--control-plane", &cp.grpc])
            .args(["--enrolment-token", &token])
            .args(["--node-id", node_id])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--access-log", sinks])
            .env("PORTCULLIS_LOG", "debug")
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start data plane");
        let out = stdout.clone();
        let line = eventually(Duration::from_secs(20), "data plane announces", || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            async move {
                text.lines()
                    .find(|l| l.starts_with("portcullis-data-plane listening "))
                    .map(str::to_owned)
            }
        })
        .await;
        let http = listening_addr(&line, "http").expect("http address");
        Self {
            child,
            http: format!("http://{http}"),
            enrolment_token: token,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Every file under `dir`, as (lossy) text.
fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// Runs `commands` (one per line, arguments quoted as redis-cli reads them) through one
/// `redis-cli`, returning its raw output (redis-cli prints values unquoted when its stdout
/// is not a terminal).
fn redis_pipe(redis: &RedisServer, commands: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let mut stdin = child.stdin.take().expect("stdin");
    let commands = commands.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(commands.as_bytes()));
    let out = child.wait_with_output().expect("redis-cli output");
    writer.join().expect("writer").expect("redis-cli stdin");
    assert!(out.status.success(), "redis-cli failed");
    out.stdout
}

/// Every key name and every value of every key on `redis`, each read with its type's own
/// command (not `DUMP`, which may LZF-compress a string and hide it): strings (also
/// HyperLogLogs), hashes, lists, sets, sorted sets (with scores) and streams. A key of any
/// other type fails the test, so nothing goes unread.
fn redis_everything(redis: &RedisServer) -> String {
    let keys: Vec<String> = redis.cli(&["--scan"]).lines().map(str::to_owned).collect();
    assert!(!keys.is_empty(), "the store wrote nothing to Redis");
    let quote = |k: &str| format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""));
    let types: String = keys
        .iter()
        .map(|k| format!("TYPE {}\n", quote(k)))
        .collect();
    let types = String::from_utf8(redis_pipe(redis, &types)).expect("types");
    let types: Vec<&str> = types.lines().collect();
    assert_eq!(types.len(), keys.len(), "one type per key");
    let mut reads = String::new();
    for (key, kind) in keys.iter().zip(types) {
        let q = quote(key);
        let read = match kind {
            "string" => format!("GET {q}"),
            "hash" => format!("HGETALL {q}"),
            "list" => format!("LRANGE {q} 0 -1"),
            "set" => format!("SMEMBERS {q}"),
            "zset" => format!("ZRANGE {q} 0 -1 WITHSCORES"),
            "stream" => format!("XRANGE {q} - +"),
            // Expired between the scan and the type check.
            "none" => continue,
            other => panic!("key {key} has type {other}, which this scan does not read"),
        };
        reads.push_str(&read);
        reads.push('\n');
    }
    let mut out = keys.join("\n");
    out.push_str(&String::from_utf8_lossy(&redis_pipe(redis, &reads)));
    out
}

async fn logs(cp: &ControlPlane, query: &str) -> Value {
    let resp = http_client()
        .get(format!("{}/api/v1/logs?{query}", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

/// The stored record with request id `id`, once it has arrived.
async fn record(cp: &ControlPlane, id: &str) -> Value {
    eventually(Duration::from_secs(20), "record stored", || async move {
        let page = logs(cp, &format!("request_id={id}")).await;
        page["items"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
}

#[tokio::test]
async fn records_reach_the_control_plane_with_their_fields_and_no_secret() {
    records_and_secrets(None).await;
}

/// The same on a real Redis: the control plane's config and request-log stores live there,
/// and every value of every key is searched for the secrets.
#[tokio::test]
async fn records_reach_a_redis_control_plane_and_no_secret_reaches_redis() {
    let redis = RedisServer::start().await;
    records_and_secrets(Some(&redis)).await;
}

async fn records_and_secrets(redis: Option<&RedisServer>) {
    let cp = ControlPlane::start_logged(redis.map(|r| r.url.as_str())).await;
    let _github = github_login(&cp, vec![alice()]).await;
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code", "refresh_token"], "client_name": "Log test"}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: Value = resp.json().await.expect("json");
    let client_id = client["client_id"].as_str().expect("client_id").to_owned();

    let backend = Backend::start("logged").await;
    let echo = WsEcho::start().await;
    cp.cli_ok(&["proxy", "create", "open.test", &backend.url]);
    cp.cli_ok(&["proxy", "create", "ws.test", &echo.url]);
    cp.cli_ok(&["proxy", "create", "api.example.com", &backend.url]);
    cp.enable_forward_auth("api.example.com", "auth.example.com", Some("mcp"));
    // The login by hand (as `browser::access_token` does), keeping the authorization code
    // and the refresh token.
    let mut authorize = url::Url::parse(&format!("{}/authorize", cp.http)).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st")
        .append_pair("scope", "mcp")
        .append_pair("resource", "https://api.example.com");
    let back = browser::browse(&cp, authorize, true).await.back;
    let code = browser::param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let resp = http_client()
        .post(format!("{}/token", cp.http))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.expect("json");
    let token = tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    let dp = LoggingDataPlane::start(&cp, "dp-log-1", "stdout,control-plane").await;
    let version = cp.version().await;
    cp.wait_applied("dp-log-1", version).await;

    let secrets = [
        "SECRETBEARER1",
        "SECRETCOOKIE1",
        "SECRETCODE1",
        "SECRETAT1",
        "SECRETSTATE1",
        "SECRETCS1",
        "SECRETPROXYAUTH1",
        "SECRETSETCOOKIE1",
        // The identity provider's client secret (`oauth idp add … --client-secret`).
        "gh-secret",
        token.as_str(),
        code.as_str(),
        cp.admin_token.as_str(),
        dp.enrolment_token.as_str(),
        refresh.as_str(),
    ];
    let get = |host: &'static str, path: &'static str, headers: Vec<(&'static str, String)>| {
        let mut req = http_client()
            .get(format!("{}{path}", dp.http))
            .header("host", host)
            .header("user-agent", "logtest/1");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.expect("request") }
    };

    // 1. Open proxy, secrets everywhere, the client's request id.
    let resp = get(
        "open.test",
        "/echo/a?code=SECRETCODE1&access_token=SECRETAT1&state=SECRETSTATE1&client_secret=SECRETCS1",
        vec![
            ("authorization", "Bearer SECRETBEARER1".into()),
            ("proxy-authorization", "Basic SECRETPROXYAUTH1".into()),
            ("cookie", "session=SECRETCOOKIE1; other=x".into()),
            ("x-request-id", "client-id-1".into()),
            ("mcp-session-id", "mcp-sess-1".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-id-1");
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(seen["headers"]["x-request-id"], "client-id-1", "{seen}");

    // The upstream sets a cookie: passed back, never recorded.
    let resp = get(
        "open.test",
        "/set-cookie?value=SECRETSETCOOKIE1",
        vec![("x-request-id", "set-cookie-1".into())],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["set-cookie"],
        "session=SECRETSETCOOKIE1; Path=/; HttpOnly"
    );

    // 2. An upload, without a request id (generated), then an insane one (replaced).
    let resp = http_client()
        .post(format!("{}/upload", dp.http))
        .header("host", "open.test")
        .body(vec![b'x'; 1000])
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    let upload_id = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(upload_id.len(), 32);
    assert!(upload_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let resp = get(
        "open.test",
        "/echo/b",
        vec![("x-request-id", "bad id; drop table".into())],
    )
    .await;
    let replaced = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(replaced.len(), 32, "{replaced}");
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(seen["headers"]["x-request-id"], replaced.as_str());

    // 3. A verified token on the protected proxy.
    let resp = get(
        "api.example.com",
        "/tools",
        vec![
            ("authorization", format!("Bearer {token}")),
            ("x-request-id", "verified-1".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    // 4. A refused one.
    let resp = get(
        "api.example.com",
        "/tools",
        vec![
            ("authorization", "Bearer SECRETBEARER1".into()),
            ("x-request-id", "refused-1".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-request-id"], "refused-1");

    // 5. A server-sent event stream: recorded when it ends, with every byte.
    let resp = get(
        "open.test",
        "/sse?n=3&interval_ms=200",
        vec![("x-request-id", "sse-1".into())],
    )
    .await;
    let sse_len = resp.bytes().await.expect("sse body").len();
    // 6. A WebSocket: recorded when it closes, with the bytes relayed each way.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("{}/socket", dp.http.replace("http://", "ws://"))
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("host", "ws.test".parse().expect("host"));
    req.headers_mut()
        .insert("x-request-id", "ws-1".parse().expect("id"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade through proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        ws.next().await.expect("echo").expect("echo");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let page = logs(&cp, "request_id=ws-1").await;
    assert_eq!(
        page["items"],
        json!([]),
        "recorded before the WebSocket closed"
    );
    ws.close(None).await.expect("close");
    drop(ws);

    let r = record(&cp, "sse-1").await;
    assert_eq!(r["response_body_bytes"], sse_len, "{r}");
    assert!(r["duration_micros"].as_u64() >= Some(400_000), "{r}");
    let r = record(&cp, "ws-1").await;
    assert_eq!(r["status"], 101);
    assert!(r["duration_micros"].as_u64() >= Some(700_000), "{r}");
    assert!(r["request_body_bytes"].as_u64() > Some(0), "{r}");
    assert!(r["response_body_bytes"].as_u64() > Some(0), "{r}");

    let r = record(&cp, "client-id-1").await;
    assert_eq!(r["node_id"], "dp-log-1");
    assert_eq!(r["method"], "GET");
    assert_eq!(r["host"], "open.test");
    assert_eq!(r["proxy"], "open.test");
    assert_eq!(r["path"], "/echo/a");
    assert_eq!(r["query"], "");
    assert_eq!(r["status"], 200);
    assert_eq!(r["listener"], "http");
    assert_eq!(r["http_version"], "HTTP/1.1");
    assert_eq!(r["client_ip"], "127.0.0.1");
    assert_eq!(r["auth"], "none");
    assert_eq!(r["user_agent"], "logtest/1");
    assert_eq!(r["mcp_session_id"], "mcp-sess-1");
    assert_eq!(r["upstream"], backend.addr.to_string());
    assert!(r["response_body_bytes"].as_u64() > Some(0), "{r}");
    assert!(r["duration_micros"].as_u64() >= r["upstream_ttfb_micros"].as_u64());
    assert!(r["upstream_ttfb_micros"].as_u64() > Some(0), "{r}");

    let r = record(&cp, &upload_id).await;
    assert_eq!(
        (r["method"].as_str(), r["path"].as_str()),
        (Some("POST"), Some("/upload"))
    );
    assert_eq!(r["request_body_bytes"], 1000);
    assert_eq!(
        r["response_body_bytes"],
        json!({"received": 1000}).to_string().len()
    );
    record(&cp, &replaced).await;

    let r = record(&cp, "verified-1").await;
    assert_eq!(
        (r["status"].as_u64(), r["auth"].as_str()),
        (Some(200), Some("admitted")),
        "{r}"
    );
    assert_eq!(r["user"], "alice");
    assert_eq!(r["client_id"], client_id.as_str());
    assert_eq!(r["host"], "api.example.com");

    let r = record(&cp, "refused-1").await;
    assert_eq!(r["status"], 401);
    assert_eq!(r["auth"], "refused");
    assert_eq!(r["auth_reason"], "invalid_token");
    assert_eq!(r["upstream"], "", "a refused request reaches no upstream");

    // The same records on stdout, as JSON lines.
    let stdout = eventually(Duration::from_secs(10), "stdout sink", || {
        let text = dp.stdout();
        async move { text.contains("\"refused-1\"").then_some(text) }
    })
    .await;
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["request_id"] == "verified-1")
        .expect("verified-1 on stdout");
    assert_eq!(
        (line["user"].as_str(), line["status"].as_u64()),
        (Some("alice"), Some(200))
    );

    record(&cp, "set-cookie-1").await;

    // No secret anywhere: stored records, the stdout sink, both processes' own output (at
    // debug), the store (files, and Redis when it is the store). Each scan must see what
    // is meant to be there, so it would see a leak: the user agent and request ids in the
    // records, node ids in the processes' logs.
    let all = logs(&cp, "limit=1000").await.to_string();
    let files = files_text(cp.data_dir.path());
    let redis_values = redis.map(redis_everything);
    let mut scans = vec![
        ("stored records", all, "logtest/1"),
        ("stdout sink", stdout, "logtest/1"),
        (
            "data-plane stdout and stderr",
            dp.stdout() + &dp.stderr(),
            "dp-log-1",
        ),
        ("control-plane stdout and stderr", cp.output(), "dp-log-1"),
    ];
    match redis_values {
        // The config store's files are the master key only; records are in Redis.
        Some(values) => {
            scans.push(("every Redis key and value", values, "logtest/1"));
            scans.push(("data directory", files, ""));
        }
        None => scans.push(("embedded store files", files, "logtest/1")),
    }
    for (what, text, marker) in &scans {
        assert!(
            text.contains(marker),
            "{what}: {marker:?} is not there, so this scan could not see a leak either"
        );
        for secret in &secrets {
            assert!(!text.contains(secret), "{secret:?} found in {what}");
        }
    }
    let records = &scans[0].1;
    for id in ["client-id-1", "set-cookie-1", "verified-1", "refused-1"] {
        assert!(records.contains(id), "{id} not among the stored records");
    }
}

/// Stopping the control plane while traffic flows loses nothing uncounted: the records
/// stay queued on the data plane and are shipped after the restart (same store).
#[tokio::test]
async fn a_control_plane_restart_loses_only_counted_records() {
    let mut cp = ControlPlane::start().await;
    let backend = Backend::start("steady").await;
    cp.cli_ok(&["proxy", "create", "steady.test", &backend.url]);
    // The default sink is the control plane.
    let dp = DataPlane::start(&cp, "dp-log-2").await;
    let version = cp.version().await;
    cp.wait_applied("dp-log-2", version).await;

    let mut sent = 0u64;
    let mut send = async |n: u64| {
        for _ in 0..n {
            let resp = dp.get("steady.test", "/echo").await;
            assert_eq!(resp.status(), 200);
            sent += 1;
        }
    };
    send(50).await;
    cp.kill();
    send(100).await;
    cp.restart().await;
    send(50).await;
    let sent = sent;

    let stats = eventually(Duration::from_secs(30), "every record counted", || async {
        let resp = http_client()
            .get(format!("{}/api/v1/logs/stats", cp.http))
            .bearer_auth(&cp.admin_token)
            .send()
            .await
            .expect("stats");
        let stats: Value = resp.json().await.expect("json");
        let counted = stats["total"].as_u64().unwrap_or(0) + stats["dropped"].as_u64().unwrap_or(0);
        (counted >= sent).then_some(stats)
    })
    .await;
    assert_eq!(
        stats["total"].as_u64().unwrap_or(0) + stats["dropped"].as_u64().unwrap_or(0),
        sent,
        "{stats}"
    );
}
