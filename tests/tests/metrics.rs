//! Prometheus metrics of both planes, scraped by a real Prometheus (Debian `prometheus`)
//! and checked by `promtool check metrics`.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_test_support::Proc;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, free_port, http_client};
use reqwest::StatusCode;
use serde_json::Value;

/// `promtool check metrics` on `text`: exit status 0, or the problems it printed.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The single value of an instant query, if it returned exactly one series.
async fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let mut url = url::Url::parse(&format!("{prometheus}/api/v1/query")).ok()?;
    url.query_pairs_mut().append_pair("query", promql);
    let response = http_client().get(url).send().await.ok()?;
    let body: Value = response.json().await.ok()?;
    let result = body["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

/// Waits until `promql` evaluates to exactly `want` in Prometheus.
async fn wait_value(prometheus: &str, promql: &str, want: f64) {
    eventually(
        Duration::from_secs(30),
        &format!("{promql} == {want}"),
        || async { (query(prometheus, promql).await == Some(want)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn prometheus_scrapes_both_planes() {
    let metrics_port = free_port();
    let cp = ControlPlane::start_args(vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ])
    .await;
    let dp = DataPlane::start(&cp, "dp-metrics").await;
    let backend = Backend::start("metrics").await;
    cp.cli_ok(&["proxy", "create", "app.metrics.test", &backend.url]);
    // A localhost name with HTTPS gets a self-signed certificate at once.
    cp.cli_ok(&["proxy", "create", "dev.localhost", &backend.url, "--https"]);
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;

    // Traffic: 7 GET answered 2xx, 2 POST answered 2xx, 3 for an unknown host (404).
    let client = http_client();
    for _ in 0..7 {
        let r = dp.get("app.metrics.test", "/hello").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        let r = client
            .post(format!("{}/submit", dp.http))
            .header("host", "app.metrics.test")
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::OK);
    }
    for i in 0..3 {
        let r = dp.get(&format!("stranger-{i}.example"), "/").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    // The data plane's exposition, read directly: exact counts, valid for promtool.
    let dp_text = client
        .get(format!("{}/metrics", dp.admin))
        .send()
        .await
        .expect("dp /metrics");
    assert_eq!(dp_text.status(), StatusCode::OK);
    assert!(
        dp_text.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4")
    );
    let dp_text = dp_text.text().await.expect("dp body");
    assert!(
        dp_text.contains(
            "portcullis_dp_requests_total{proxy=\"app.metrics.test\",method=\"GET\",code=\"2xx\"} 7\n"
        ),
        "{dp_text}"
    );
    assert!(
        dp_text.contains(
            "portcullis_dp_requests_total{proxy=\"unknown\",method=\"GET\",code=\"4xx\"} 3\n"
        ),
        "{dp_text}"
    );
    // Client-chosen hosts never become label values.
    assert!(!dp_text.contains("stranger-"), "{dp_text}");
    assert!(
        dp_text.contains(&format!("portcullis_dp_snapshot_version {version}\n")),
        "{dp_text}"
    );
    promtool_check(&dp_text)
        .unwrap_or_else(|e| panic!("promtool on the data plane: {e}\n{dp_text}"));

    // The control plane: unauthenticated on --metrics-listen; on the HTTP listener only
    // with an admin token.
    let open = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("cp open /metrics");
    assert_eq!(open.status(), StatusCode::OK);
    let cp_text = open.text().await.expect("cp body");
    assert!(
        cp_text.contains(&format!(
            "portcullis_cp_dataplane_applied_version{{node_id=\"dp-metrics\"}} {version}\n"
        )),
        "{cp_text}"
    );
    assert!(
        cp_text.contains("portcullis_cp_dataplane_connected{node_id=\"dp-metrics\"} 1\n"),
        "{cp_text}"
    );
    assert!(
        cp_text.contains("operation=\"/portcullis.v1.AdminService/CreateProxy\",outcome=\"Ok\"}"),
        "{cp_text}"
    );
    assert!(
        cp_text.contains("portcullis_cp_store_operation_duration_seconds_count{op=\"apply\"}"),
        "{cp_text}"
    );
    promtool_check(&cp_text)
        .unwrap_or_else(|e| panic!("promtool on the control plane: {e}\n{cp_text}"));
    let anonymous = client
        .get(format!("{}/metrics", cp.http))
        .send()
        .await
        .expect("cp /metrics");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let user = cp
        .cli_ok(&["token", "create", "metrics-user"])
        .trim()
        .to_owned();
    let as_user = client
        .get(format!("{}/metrics", cp.http))
        .bearer_auth(&user)
        .send()
        .await
        .expect("cp /metrics as a user");
    assert_eq!(as_user.status(), StatusCode::FORBIDDEN);
    let admin = client
        .get(format!("{}/metrics", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("cp /metrics as admin");
    assert_eq!(admin.status(), StatusCode::OK);
    let admin_text = admin.text().await.expect("body");
    assert!(
        admin_text.contains("portcullis_cp_config_version "),
        "{admin_text}"
    );
    // The two refused scrapes above were counted under their route template.
    assert!(
        admin_text.contains(
            "portcullis_cp_api_calls_total{api=\"rest\",operation=\"GET /metrics\",outcome=\"4xx\"} 2\n"
        ),
        "{admin_text}"
    );

    // A real Prometheus scrapes all three endpoints every second.
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, &cp.admin_token).expect("token file");
    let dp_target = dp.admin.trim_start_matches("http://");
    let cp_target = cp.http.trim_start_matches("http://");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         - job_name: dp\n  static_configs:\n  - targets: ['{dp_target}']\n\
         - job_name: cp-open\n  static_configs:\n  - targets: ['127.0.0.1:{metrics_port}']\n\
         - job_name: cp-admin\n  authorization:\n    type: Bearer\n    credentials_file: {}\n  static_configs:\n  - targets: ['{cp_target}']\n",
        token_file.display()
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).expect("config");
    let port = free_port();
    let _prometheus = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log file")),
    );
    let prometheus = format!("http://127.0.0.1:{port}");

    for job in ["dp", "cp-open", "cp-admin"] {
        wait_value(&prometheus, &format!("up{{job=\"{job}\"}}"), 1.0).await;
    }
    wait_value(
        &prometheus,
        "portcullis_dp_requests_total{proxy=\"app.metrics.test\",method=\"GET\",code=\"2xx\"}",
        7.0,
    )
    .await;
    wait_value(
        &prometheus,
        "portcullis_dp_requests_total{proxy=\"app.metrics.test\",method=\"POST\",code=\"2xx\"}",
        2.0,
    )
    .await;
    wait_value(
        &prometheus,
        "sum(portcullis_dp_requests_total{proxy=\"unknown\"})",
        3.0,
    )
    .await;
    wait_value(
        &prometheus,
        "portcullis_dp_request_duration_seconds_count{proxy=\"app.metrics.test\"}",
        9.0,
    )
    .await;
    wait_value(
        &prometheus,
        "portcullis_dp_upstream_duration_seconds_count{proxy=\"app.metrics.test\"}",
        9.0,
    )
    .await;
    wait_value(
        &prometheus,
        "portcullis_dp_snapshot_version",
        version as f64,
    )
    .await;
    wait_value(
        &prometheus,
        "portcullis_cp_dataplane_applied_version{job=\"cp-open\",node_id=\"dp-metrics\"}",
        version as f64,
    )
    .await;
    wait_value(
        &prometheus,
        "portcullis_cp_dataplanes_connected{job=\"cp-admin\"}",
        1.0,
    )
    .await;
    // The certificate expires in more than a day.
    wait_value(
        &prometheus,
        "portcullis_cp_certificate_expiry_seconds{job=\"cp-open\",name=\"dev.localhost\"} > bool 86400",
        1.0,
    )
    .await;
    // More traffic shows up in the next scrapes.
    for _ in 0..5 {
        let r = dp.get("app.metrics.test", "/again").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    wait_value(
        &prometheus,
        "portcullis_dp_requests_total{proxy=\"app.metrics.test\",method=\"GET\",code=\"2xx\"}",
        12.0,
    )
    .await;
}
