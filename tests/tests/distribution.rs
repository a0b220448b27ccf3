//! Config distribution: versions, ACK/NACK, several data planes, control-plane outages,
//! and the on-disk snapshot cache.

use std::time::Duration;

use portcullis_tests::{Backend, ControlPlane, DataPlane, RedisServer, eventually};
use serde_json::Value;

async fn backend_of(dp: &DataPlane, host: &str) -> Option<String> {
    let r = dp.get(host, "/").await;
    let v: Value = r.json().await.ok()?;
    v["backend"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn three_data_planes_converge_and_survive_the_control_plane() {
    let mut cp = ControlPlane::start().await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut dps = Vec::new();
    for i in 1..=3 {
        dps.push(DataPlane::start(&cp, &format!("dp-{i}")).await);
    }
    cp.cli_ok(&["proxy", "create", "app.example.com", &a.url]);
    let v = cp.version().await;
    for dp in &dps {
        cp.wait_applied(&dp.node_id, v).await;
        assert_eq!(
            backend_of(dp, "app.example.com").await.as_deref(),
            Some("a")
        );
    }
    // The CLI shows all three at the current version.
    let list: Value =
        serde_json::from_str(&cp.cli_ok(&["dataplanes", "list", "--output", "json"])).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list}");
    for d in items {
        assert_eq!(d["applied_version"].as_u64(), Some(v), "{d}");
        assert_eq!(d["connected"], true);
    }

    // Control plane gone: every data plane keeps serving the last snapshot.
    cp.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for dp in &dps {
        assert_eq!(
            backend_of(dp, "app.example.com").await.as_deref(),
            Some("a")
        );
    }
    // A data plane restarted while the control plane is down serves from its cache.
    dps[0].kill();
    dps[0].spawn();
    dps[0].wait_ready().await;
    assert_eq!(
        backend_of(&dps[0], "app.example.com").await.as_deref(),
        Some("a")
    );
    let cache = dps[0].cache_dir.path().join("snapshot.sealed");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "cache must be private");

    // Control plane back: data planes reconnect and pick up new changes.
    cp.restart().await;
    cp.cli_ok(&["proxy", "update", "app.example.com", "--target", &b.url]);
    for dp in &dps {
        eventually(
            Duration::from_secs(30),
            "data plane to reconnect and switch to b",
            || async {
                (backend_of(dp, "app.example.com").await.as_deref() == Some("b")).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_snapshot_the_data_plane_rejects_is_nacked_and_the_old_one_keeps_serving() {
    let redis = RedisServer::start().await;
    let cp = ControlPlane::start_with(Some(&redis.url)).await;
    let dp = DataPlane::start(&cp, "dp-nack").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "app.example.com", &a.url]);
    let good = cp.version().await;
    cp.wait_applied("dp-nack", good).await;

    // Something wrote a route the API would have refused (an invalid regex) straight into
    // the shared store; the control plane publishes it, the data plane must refuse it.
    let bad = serde_json::json!({
        "id": "bad", "priority": 1, "match_kind": "regex", "path_pattern": "(", "methods": [],
        "target_kind": "url", "target_value": "http://127.0.0.1:1", "proxy_hostnames": [],
        "enabled": true, "description": "", "public": false, "owner_token_id": "x", "created_at": 0
    });
    redis.cli(&["HSET", "{portcullis}:routes", "bad", &bad.to_string()]);
    redis.cli(&["INCR", "{portcullis}:revision"]);
    let bad_version = good + 1;
    let rec = eventually(Duration::from_secs(20), "NACK recorded", || async {
        let list = cp.dataplanes().await;
        let d = list["items"]
            .as_array()?
            .iter()
            .find(|d| d["node_id"] == "dp-nack")?
            .clone();
        (d["last_nack_version"].as_u64() == Some(bad_version)).then_some(d)
    })
    .await;
    assert!(
        rec["last_nack_error"]
            .as_str()
            .unwrap_or("")
            .contains("bad"),
        "{rec}"
    );
    assert_eq!(rec["applied_version"].as_u64(), Some(good));
    assert_eq!(
        backend_of(&dp, "app.example.com").await.as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn unauthenticated_streams_are_refused() {
    let cp = ControlPlane::start().await;
    // An admin token is not an enrolment token, and a made-up one is nothing.
    for token in [cp.admin_token.as_str(), "pcs_made_up"] {
        let out = std::process::Command::new(portcullis_tests::procs::bin("portcullis-data-plane"))
            .args([
                "--control-plane",
                &cp.grpc,
                "--enrolment-token",
                token,
                "--node-id",
                "intruder",
            ])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--cache-dir")
            .arg(cp.data_dir.path().join("intruder"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut child = out;
        let _ = child.kill();
        let _ = child.wait();
    }
    let list = cp.dataplanes().await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}
