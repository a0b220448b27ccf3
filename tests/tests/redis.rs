//! The same control plane on a real Redis: shared state, atomic writes, several control planes.

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
