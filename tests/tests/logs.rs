//! Request logs end to end: a fake data plane ships batches with the real tonic client and
//! an enrolment token; REST (admin and a `user` token's ownership), gRPC follow, SSE follow
//! and the CLI read them back; the records survive a control-plane restart, on the
//! embedded store and on Redis.

use std::time::Duration;

use futures_util::StreamExt as _;
use portcullis_proto::v1 as pb;
use portcullis_proto::v1::access_log_ingest_client::AccessLogIngestClient;
use portcullis_proto::v1::access_log_service_client::AccessLogServiceClient;
use portcullis_tests::{ControlPlane, RedisServer, http_client};
use reqwest::StatusCode;
use serde_json::Value;

const N: u64 = 40;

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    req
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Record `i`: even ones on bob's proxy, odd ones on the admin's; four IPs, four statuses.
fn record(i: u64, base: i64) -> pb::AccessLogRecord {
    let host = if i.is_multiple_of(2) {
        "bob.test"
    } else {
        "admin.test"
    };
    pb::AccessLogRecord {
        time_unix_nanos: base + (i as i64) * 1_000_000,
        node_id: "dp-fake".into(),
        listener: "http".into(),
        client_ip: format!("192.0.2.{}", i % 4),
        client_port: 40000,
        method: "GET".into(),
        host: host.into(),
        path: format!("/p/{i}"),
        http_version: "HTTP/1.1".into(),
        status: [200, 404, 503, 201][(i % 4) as usize],
        duration_micros: 1000 + i,
        proxy: host.into(),
        auth: "none".into(),
        user: if i.is_multiple_of(5) {
            "alice".into()
        } else {
            String::new()
        },
        client_id: if i.is_multiple_of(3) {
            "mcp-client".into()
        } else {
            String::new()
        },
        request_id: format!("r{i}"),
        ..Default::default()
    }
}

async fn get(cp: &ControlPlane, token: &str, path_and_query: &str) -> (StatusCode, Value) {
    let resp = http_client()
        .get(format!("{}{path_and_query}", cp.http))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ids(v: &Value) -> Vec<String> {
    items(v)
        .iter()
        .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn scenario(redis: Option<&RedisServer>) {
    let mut cp = ControlPlane::start_with(redis.map(|r| r.url.as_str())).await;
    let admin = cp.admin_token.clone();
    let bob = cp.cli_ok(&["token", "create", "bob"]).trim().to_owned();
    let out = cp.cli(&bob, &["proxy", "create", "bob.test", "http://127.0.0.1:9"]);
    assert!(out.status.success(), "{out:?}");
    cp.cli_ok(&["proxy", "create", "admin.test", "http://127.0.0.1:9"]);
    let enrol = cp.enrolment_token("dp-fake");

    let mut ingest = AccessLogIngestClient::connect(cp.grpc.clone())
        .await
        .expect("grpc connect");
    // Only an enrolment token may ship.
    let e = ingest
        .ship(tonic::Request::new(pb::AccessLogBatch::default()))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = ingest
        .ship(authed(pb::AccessLogBatch::default(), &admin))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // Followers subscribe before anything is shipped.
    let mut query_client = AccessLogServiceClient::connect(cp.grpc.clone())
        .await
        .expect("grpc connect");
    let mut grpc_follow = query_client
        .follow(authed(
            pb::AccessLogQuery {
                host: "bob.test".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("follow")
        .into_inner();
    let sse = http_client()
        .get(format!("{}/api/v1/logs/follow?status=5xx", cp.http))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status(), StatusCode::OK);
    assert!(
        sse.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let bob_sse = http_client()
        .get(format!("{}/api/v1/logs/follow", cp.http))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("sse");
    assert_eq!(bob_sse.status(), StatusCode::OK);
    let bad_sse = http_client()
        .get(format!("{}/api/v1/logs/follow?status=7xx", cp.http))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sse");
    assert_eq!(bad_sse.status(), StatusCode::BAD_REQUEST);

    // Ship: one batch of 40 plus 3 drops the data plane reports; an oversized batch is
    // refused whole.
    let base = now_nanos() - 60_000_000_000;
    let records: Vec<_> = (0..N).map(|i| record(i, base)).collect();
    let reply = ingest
        .ship(authed(
            pb::AccessLogBatch {
                records: records.clone(),
                dropped: 3,
                ..Default::default()
            },
            &enrol,
        ))
        .await
        .expect("ship")
        .into_inner();
    assert_eq!(reply.accepted, N);
    let big = pb::AccessLogBatch {
        records: vec![record(0, base); 10_001],
        dropped: 0,
        ..Default::default()
    };
    let e = ingest.ship(authed(big, &enrol)).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("records"), "{e:?}");

    // gRPC follow: bob.test's 20 records, in order.
    let mut followed = Vec::new();
    while followed.len() < 20 {
        let r = tokio::time::timeout(Duration::from_secs(10), grpc_follow.message())
            .await
            .expect("follow timed out")
            .expect("follow stream")
            .expect("follow ended");
        assert_eq!(r.host, "bob.test");
        followed.push(r.request_id);
    }
    let want: Vec<String> = (0..N).step_by(2).map(|i| format!("r{i}")).collect();
    assert_eq!(followed, want);

    // SSE follow: the ten 503s.
    let sse_records = sse_data(sse, 10).await;
    assert_eq!(sse_records.len(), 10);
    assert!(sse_records.iter().all(|r| r["status"] == 503));
    // A `user` token follows its own proxy's records only.
    let bob_records = sse_data(bob_sse, 20).await;
    assert!(bob_records.iter().all(|r| r["proxy"] == "bob.test"));

    check_queries(&cp, &admin, &bob).await;
    check_cli(&cp, &bob);

    // A restart keeps every record.
    cp.restart().await;
    let (status, page) = get(&cp, &admin, "/api/v1/logs?limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&page).len(), N as usize, "after restart");
    let (_, stats) = get(&cp, &admin, "/api/v1/logs/stats").await;
    assert_eq!(stats["total"], N);
    assert_eq!(stats["dropped"], 3);

    if let Some(redis) = redis {
        assert_eq!(redis.cli(&["ZCARD", "{portcullis}:logs:t"]), N.to_string());
        assert_eq!(redis.cli(&["HLEN", "{portcullis}:logs:rec"]), N.to_string());
    } else {
        assert!(cp.data_dir.path().join("logs.redb").exists());
    }
}

/// The first `n` records of an SSE response.
async fn sse_data(resp: reqwest::Response, n: usize) -> Vec<Value> {
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        while text.matches("data: ").count() < n {
            let chunk = body.next().await.expect("sse ended").expect("sse chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(done.is_ok(), "SSE gave: {text}");
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("SSE record JSON"))
        .collect();
    assert_eq!(records.len(), n, "{text}");
    records
}

async fn check_queries(cp: &ControlPlane, admin: &str, bob: &str) {
    // Admin: everything, newest first, paged with an opaque cursor.
    let (status, page) = get(cp, admin, "/api/v1/logs").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let all: Vec<String> = (0..N).rev().map(|i| format!("r{i}")).collect();
    assert_eq!(ids(&page), all);
    assert_eq!(page["next_cursor"], "");
    let first = &items(&page)[0];
    assert_eq!(first["node_id"], "dp-fake");
    assert!(first["time"].as_str().unwrap_or_default().ends_with('Z'));
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, p) = get(
            cp,
            admin,
            &format!("/api/v1/logs/search?limit=15&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{p}");
        assert!(items(&p).len() <= 15);
        paged.extend(ids(&p));
        cursor = p["next_cursor"].as_str().unwrap_or_default().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(paged, all);

    // Bad input: a 400 naming the parameter.
    for (q, field) in [
        ("limit=1001", "limit"),
        ("cursor=garbage", "cursor"),
        ("status=6xx", "status"),
        ("ip=not-an-ip", "client_ip"),
        ("since=yesterday", "since"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(cp, admin, &format!("/api/v1/logs?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(body["error"], "invalid_request", "{q}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{q}: {body}"
        );
    }
    let (status, _) = get(cp, "pcs_not_a_token", "/api/v1/logs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The seed's paths.
    let (_, p) = get(cp, admin, "/api/v1/logs/ip/192.0.2.1").await;
    assert_eq!(items(&p).len(), 10);
    assert!(items(&p).iter().all(|r| r["client_ip"] == "192.0.2.1"));
    let (_, p) = get(cp, admin, "/api/v1/logs/client/mcp-client").await;
    assert_eq!(items(&p).len(), 14);
    let (_, p) = get(cp, admin, "/api/v1/logs/correlation/r7").await;
    assert_eq!(ids(&p), vec!["r7"]);
    let (_, p) = get(cp, admin, "/api/v1/logs/errors").await;
    assert_eq!(items(&p).len(), 20);
    assert!(items(&p).iter().all(|r| r["status"].as_u64() >= Some(400)));
    let (status, _) = get(cp, admin, "/api/v1/logs/errors?status=200").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, p) = get(cp, admin, "/api/v1/logs?status=5xx&user=alice").await;
    // 503 is i % 4 == 2, alice is i % 5 == 0: i = 10, 30.
    assert_eq!(ids(&p), vec!["r30", "r10"]);
    let (_, p) = get(cp, admin, "/api/v1/logs?path=/p/3&min_duration_micros=1035").await;
    assert_eq!(ids(&p), vec!["r39", "r38", "r37", "r36", "r35"]);

    // Stats.
    let (status, s) = get(cp, admin, "/api/v1/logs/stats").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["total"], N);
    assert_eq!(s["dropped"], 3);
    assert_eq!(s["by_status_class"][0]["key"], "2xx");
    assert_eq!(s["by_status_class"][0]["count"], 20);
    let uv = s["unique_visitors"].as_array().cloned().unwrap_or_default();
    assert_eq!(uv.len(), 2, "{s}");
    assert!(uv.iter().all(|c| c["count"] == 2), "{s}");
    assert!(s["p99_duration_micros"].as_u64() >= Some(1038));

    // A `user` token sees its own proxy's records only.
    let (status, p) = get(cp, bob, "/api/v1/logs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&p).len(), 20);
    assert!(items(&p).iter().all(|r| r["proxy"] == "bob.test"));
    let (_, p) = get(cp, bob, "/api/v1/logs/correlation/r7").await;
    assert!(items(&p).is_empty(), "r7 is on admin.test");
    let (_, s) = get(cp, bob, "/api/v1/logs/stats").await;
    assert_eq!(s["total"], 20);
    assert_eq!(s["dropped"], 0, "drops are not per proxy: admins only");
    assert_eq!(s["unique_visitors"][0]["key"], "bob.test");
    // Naming another owner's host yields nothing about it, not even its visitor count.
    let (_, s) = get(cp, bob, "/api/v1/logs/stats?host=admin.test").await;
    assert_eq!(s["total"], 0);
    assert_eq!(s["unique_visitors"], serde_json::json!([]));

    // gRPC: the same service; a bad cursor is INVALID_ARGUMENT naming the field.
    let mut c = AccessLogServiceClient::connect(cp.grpc.clone())
        .await
        .expect("grpc connect");
    let page = c
        .search(authed(
            pb::AccessLogQuery {
                client_ip: "192.0.2.2".into(),
                limit: 4,
                ..Default::default()
            },
            bob,
        ))
        .await
        .expect("search")
        .into_inner();
    assert_eq!(page.records.len(), 4);
    assert!(page.records.iter().all(|r| r.proxy == "bob.test"));
    assert!(!page.next_cursor.is_empty());
    let e = c
        .search(authed(
            pb::AccessLogQuery {
                cursor: "AAAA".into(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("cursor"), "{e:?}");
    let stats = c
        .stats(authed(pb::AccessLogQuery::default(), admin))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.total, N);

    // The OpenAPI document describes the log routes.
    let doc: Value = http_client()
        .get(format!("{}/openapi.json", cp.http))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi json");
    for path in [
        "/api/v1/logs",
        "/api/v1/logs/stats",
        "/api/v1/logs/follow",
        "/api/v1/logs/errors",
        "/api/v1/logs/ip/{ip}",
        "/api/v1/logs/correlation/{request_id}",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} not in the OpenAPI doc"
        );
    }
}

fn check_cli(cp: &ControlPlane, bob: &str) {
    let out: Value = serde_json::from_str(&cp.cli_ok(&[
        "logs",
        "search",
        "--ip",
        "192.0.2.1",
        "--since",
        "2h",
        "--output",
        "json",
    ]))
    .expect("CLI JSON");
    assert_eq!(items(&out).len(), 10);
    let out: Value =
        serde_json::from_str(&cp.cli_ok(&["logs", "errors", "--limit", "5", "-o", "json"]))
            .expect("CLI JSON");
    assert_eq!(items(&out).len(), 5);
    assert_ne!(out["next_cursor"], "");
    let next = out["next_cursor"].as_str().unwrap_or_default().to_owned();
    let out: Value = serde_json::from_str(&cp.cli_ok(&[
        "logs", "errors", "--limit", "100", "--cursor", &next, "-o", "json",
    ]))
    .expect("CLI JSON");
    assert_eq!(items(&out).len(), 15);
    let stats: Value =
        serde_json::from_str(&cp.cli_ok(&["logs", "stats", "-o", "json"])).expect("CLI JSON");
    assert_eq!(stats["total"], N);
    let table = cp.cli_ok(&["logs", "search", "--request-id", "r7"]);
    assert!(
        table.contains("REQUEST ID") && table.contains("r7"),
        "{table}"
    );
    let stats_table = cp.cli_ok(&["logs", "stats", "--host", "bob.test"]);
    assert!(
        stats_table.contains("total:") && stats_table.contains("bob.test"),
        "{stats_table}"
    );
    // bob through the CLI: own records only.
    let out = cp.cli(bob, &["logs", "search", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    assert_eq!(items(&v).len(), 20);
    // The justfile recipes.
    let just = |args: &[&str]| {
        let out = cp.just(&cp.admin_token, args);
        assert!(out.status.success(), "just {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rows = |table: &str| {
        table
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with('('))
            .count()
    };
    assert_eq!(rows(&just(&["app-logs-by-ip", "192.0.2.1", "2"])), 10);
    assert_eq!(rows(&just(&["app-logs-by-host", "bob.test"])), 20);
    let errors = just(&["app-logs-errors", "1", "3"]);
    assert_eq!(rows(&errors), 3);
    assert!(errors.contains("--cursor"), "{errors}");
    let one = just(&["app-logs-correlation", "r7"]);
    assert_eq!(rows(&one), 1);
    assert!(one.contains("admin.test"), "{one}");
    assert!(just(&["app-logs-stats", "1"]).contains("total:"));
    // A refused limit is a usage error before any call.
    let out = cp.cli(bob, &["logs", "search", "--limit", "1001"]);
    assert!(!out.status.success());
    let out = cp.cli(bob, &["logs", "search", "--status", "6xx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("status"),
        "{out:?}"
    );
}

#[tokio::test]
async fn logs_on_the_embedded_store() {
    scenario(None).await;
}

#[tokio::test]
async fn logs_on_redis() {
    let redis = RedisServer::start().await;
    scenario(Some(&redis)).await;
}

#[tokio::test]
async fn retention_and_size_cap_are_enforced_in_the_background() {
    let mut cp = ControlPlane::start_args(vec![
        "--log-retention".into(),
        "90m".into(),
        "--log-max-records".into(),
        "10".into(),
    ])
    .await;
    let enrol = cp.enrolment_token("dp-fake");
    let mut ingest = AccessLogIngestClient::connect(cp.grpc.clone())
        .await
        .expect("grpc connect");
    // 30 fresh records and 5 older than the retention.
    let now = now_nanos();
    let mut records: Vec<_> = (0..30).map(|i| record(i, now - 60_000_000_000)).collect();
    records.extend((30..35).map(|i| record(i, now - 2 * 3600 * 1_000_000_000)));
    ingest
        .ship(authed(
            pb::AccessLogBatch {
                records,
                dropped: 0,
                ..Default::default()
            },
            &enrol,
        ))
        .await
        .expect("ship");
    let (_, page) = get(&cp, &cp.admin_token, "/api/v1/logs?limit=1000").await;
    assert_eq!(items(&page).len(), 35);
    // The pruner runs at start and every minute: after a restart the old ones are gone and
    // only the newest ten are left.
    cp.restart().await;
    let left = portcullis_tests::eventually(Duration::from_secs(20), "the pruner", || async {
        let (_, page) = get(&cp, &cp.admin_token, "/api/v1/logs?limit=1000").await;
        (items(&page).len() == 10).then_some(ids(&page))
    })
    .await;
    let want: Vec<String> = (20..30).rev().map(|i| format!("r{i}")).collect();
    assert_eq!(left, want);
    let out = std::process::Command::new(portcullis_tests::procs::bin("portcullis-control-plane"))
        .args(["serve", "--log-retention", "2 weeks"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--log-retention"),
        "{out:?}"
    );
}

/// Kills the child on drop, so a failed assertion leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn cli_follow_prints_records_as_they_arrive() {
    use std::io::BufRead as _;

    let cp = ControlPlane::start().await;
    let enrol = cp.enrolment_token("dp-fake");
    let mut child = KillOnDrop(
        std::process::Command::new(portcullis_tests::procs::bin("portcullis"))
            .args(["--url", &cp.grpc, "--token", &cp.admin_token])
            .args(["logs", "follow", "--status", "404", "-o", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn portcullis"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ingest = AccessLogIngestClient::connect(cp.grpc.clone())
        .await
        .expect("grpc connect");
    // The CLI subscribes on its own schedule: ship until it prints.
    let base = now_nanos();
    let mut shipped = 0;
    let line = loop {
        assert!(shipped < 100, "`portcullis logs follow` printed nothing");
        let records = vec![record(0, base), record(1, base)];
        ingest
            .ship(authed(
                pb::AccessLogBatch {
                    records,
                    dropped: 0,
                    ..Default::default()
                },
                &enrol,
            ))
            .await
            .expect("ship");
        shipped += 1;
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(200), lines.recv()).await
        {
            break line.expect("stdout line");
        }
    };
    let v: Value = serde_json::from_str(&line).expect("one JSON record per line");
    assert_eq!(v["status"], 404);
    assert_eq!(v["request_id"], "r1");
}
