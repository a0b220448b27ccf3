//! The same control plane on a real Redis: shared state, atomic writes, several control
//! planes (sharing config, tokens and request-log follow).

use portcullis_tests::{ControlPlane, RedisServer, http_client};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn five_hundred_concurrent_writes_on_redis_all_land() {
    let redis = RedisServer::start().await;
    let cp = ControlPlane::start_with(Some(&redis.url)).await;
    let client = http_client();
    // Writes at start (the first signing key) have their own revisions.
    let before: u64 = redis
        .cli(&["GET", "{portcullis}:revision"])
        .parse()
        .unwrap_or(0);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let req = client
            .post(format!("{}/api/v1/proxy/targets", cp.http))
            .bearer_auth(&cp.admin_token)
            .json(&json!({"hostname": format!("h{i}.example.com"), "target_url": "http://127.0.0.1:9"}));
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), StatusCode::CREATED);
    }
    // What the store holds, read straight from Redis.
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:proxies"]), "500");
    assert_eq!(
        redis.cli(&["GET", "{portcullis}:revision"]),
        (before + 500).to_string()
    );
    let health: serde_json::Value = client
        .get(format!("{}/health", cp.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store_backend"], "redis");
    assert_eq!(health["config_version"], before + 500);
}

#[tokio::test]
async fn two_control_planes_share_one_redis() {
    let redis = RedisServer::start().await;
    let a = ControlPlane::start_with(Some(&redis.url)).await;
    let b = ControlPlane::start_with(Some(&redis.url)).await;
    let client = http_client();
    let r = client
        .post(format!("{}/api/v1/proxy/targets", a.http))
        .bearer_auth(&a.admin_token)
        .json(&json!({"hostname": "shared.example.com", "target_url": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // B sees A's write, and A's admin token works on B (tokens live in the shared store).
    let r = client
        .get(format!(
            "{}/api/v1/proxy/targets/shared.example.com",
            b.http
        ))
        .bearer_auth(&a.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A conflicting create on B is refused.
    let r = client
        .post(format!("{}/api/v1/proxy/targets", b.http))
        .bearer_auth(&b.admin_token)
        .json(&json!({"hostname": "shared.example.com", "target_url": "http://127.0.0.1:8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

/// Follow spans control planes on one Redis: a data plane ships to A, and a follower on B
/// (SSE) sees the record, once.
#[tokio::test]
async fn a_follower_on_one_control_plane_sees_records_shipped_to_another() {
    use futures_util::StreamExt as _;
    let redis = RedisServer::start().await;
    let a = ControlPlane::start_with(Some(&redis.url)).await;
    let b = ControlPlane::start_with(Some(&redis.url)).await;
    let backend = portcullis_tests::Backend::start("followed").await;
    a.cli_ok(&["proxy", "create", "followed.test", &backend.url]);
    let follow = http_client()
        .get(format!("{}/api/v1/logs/follow?host=followed.test", b.http))
        .bearer_auth(&a.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), StatusCode::OK);
    let dp = portcullis_tests::DataPlane::start(&a, "dp-follow").await;
    let version = a.version().await;
    a.wait_applied("dp-follow", version).await;
    for id in ["followed-1", "followed-2"] {
        let r = http_client()
            .get(format!("{}/echo", dp.http))
            .header("host", "followed.test")
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let mut body = follow.bytes_stream();
    let mut text = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        // Two requests may be served by two workers, whose records ship in separate
        // chunks in either order: wait for both.
        while !(text.contains("followed-1") && text.contains("followed-2")) {
            let chunk = body.next().await.expect("follow ended").expect("chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "B's follower got: {text}");
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("record JSON"))
        .collect();
    let mut ids: Vec<&str> = records
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    ids.sort_unstable();
    // Each exactly once.
    assert_eq!(ids, ["followed-1", "followed-2"], "{text}");
    assert_eq!(records[0]["node_id"], "dp-follow");
}
