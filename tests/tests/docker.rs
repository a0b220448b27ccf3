//! Docker services against the real engine (`dockerd`, started by tests/run.sh): an image
//! built here from Debian's busybox-static (`FROM scratch`, no registry), run as an exposed
//! service, reached on its host port and through a data plane, stopped and started, its
//! logs read, bad input refused without leftovers, and everything kept across a
//! control-plane restart.

use std::time::Duration;

use portcullis_test_support::eventually;
use portcullis_tests::docker::{Api, IMAGE, PAGE, containers_named, engine, unique};
use portcullis_tests::{ControlPlane, DataPlane, http_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn httpd(name: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "command": ["sh", "-c", "echo container-started-marker; exec /bin/busybox httpd -f -v -p 8080 -h /www"],
        "env": {"GREETING": "hi"},
        "memory": "64m",
        "cpus": "0.5",
        "restart_policy": "no",
        "ports": [{"container_port": 8080}]
    })
}

#[tokio::test]
async fn exposed_service_proxy_lifecycle_logs_and_restart() {
    let docker = engine().await;
    let mut cp = ControlPlane::start_args(vec!["--port-range".into(), "17000-17999".into()]).await;
    let dp = DataPlane::start(&cp, "dp-docker").await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let name = unique("web");
    let health = eventually(Duration::from_secs(10), "docker in /health", || async {
        let (_, h) = api.call("GET", "/health", None).await;
        h["peers"]["docker"].is_object().then_some(h)
    })
    .await;
    assert_eq!(health["peers"]["docker"]["reachable"], true, "{health}");

    let (s, created) = api
        .call("POST", "/api/v1/services", Some(httpd(&name)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"]["status"], "running", "{created}");
    assert_eq!(created["memory_bytes"], 64 << 20);
    assert_eq!(created["nano_cpus"], 500_000_000);
    assert!(created.get("env").is_none(), "env values are not returned");
    let port = created["ports"][0]["host_port"].as_u64().unwrap();
    assert!((17000..=17999).contains(&port), "{created}");
    assert_eq!(created["ports"][0]["bind"], "127.0.0.1");
    assert_eq!(containers_named(&docker, &name).await, 1);

    // Reachable on its host port.
    let direct = format!("http://127.0.0.1:{port}/");
    let body = eventually(
        Duration::from_secs(10),
        "service answers on its host port",
        || async {
            match http_client().get(&direct).send().await {
                Ok(r) if r.status() == 200 => r.text().await.ok(),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(body, PAGE);

    // The allocation is in the registry and the port is not free.
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["host_port"] == port && a["service"] == name.as_str()),
        "{ports}"
    );
    let (_, check) = api
        .call("GET", &format!("/api/v1/ports/check/{port}"), None)
        .await;
    assert_eq!(check["available"], false, "{check}");
    assert!(check["reason"].as_str().unwrap().contains(&name), "{check}");

    // Another service asking for the same host port is refused, and leaves nothing.
    let other = unique("clash");
    let mut clash = httpd(&other);
    clash["ports"][0]["host_port"] = json!(port);
    let (s, err) = api.call("POST", "/api/v1/services", Some(clash)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"].as_str().unwrap().contains("ports.host_port"),
        "{err}"
    );
    assert_eq!(containers_named(&docker, &other).await, 0);
    assert_eq!(
        api.call("GET", &format!("/api/v1/services/{other}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // One step to a proxy, reached through the data plane by hostname.
    let host = format!("{name}.localhost");
    let (s, proxy) = api
        .call(
            "POST",
            &format!("/api/v1/services/{name}/proxy"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{proxy}");
    assert_eq!(proxy["target_url"], format!("http://127.0.0.1:{port}"));
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    let r = dp.get(&host, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), PAGE);

    // Stopped: the proxy answers 502; started: it works again.
    let (s, stopped) = api
        .call("POST", &format!("/api/v1/services/{name}/stop"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["state"]["status"], "exited", "{stopped}");
    assert_eq!(stopped["state"]["running"], false);
    assert_eq!(dp.get(&host, "/").await.status(), StatusCode::BAD_GATEWAY);
    let (s, started) = api
        .call("POST", &format!("/api/v1/services/{name}/start"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{started}");
    assert_eq!(started["state"]["status"], "running");
    eventually(
        Duration::from_secs(10),
        "proxy works after start",
        || async { (dp.get(&host, "/").await.status() == 200).then_some(()) },
    )
    .await;

    // Logs: what the container printed, with timestamps when asked.
    let (s, logs) = api
        .call(
            "GET",
            &format!("/api/v1/services/{name}/logs?tail=50&timestamps=true"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{logs}");
    let lines = logs["lines"].as_array().unwrap();
    let marker = lines
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.contains("container-started-marker"))
        .unwrap_or_else(|| panic!("no marker in {logs}"));
    assert!(marker.starts_with("20"), "timestamped: {marker}");
    let (_, logs) = api
        .call("GET", &format!("/api/v1/services/{name}/logs?tail=1"), None)
        .await;
    assert_eq!(logs["lines"].as_array().unwrap().len(), 1, "{logs}");

    // A restart of the control plane keeps the service, its port and its proxy.
    cp.restart().await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let (s, shown) = api
        .call("GET", &format!("/api/v1/services/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{shown}");
    assert_eq!(shown["state"]["status"], "running");
    assert_eq!(shown["ports"][0]["host_port"], port);
    let (s, restarted) = api
        .call("POST", &format!("/api/v1/services/{name}/restart"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{restarted}");
    eventually(
        Duration::from_secs(10),
        "proxy works after restart",
        || async { (dp.get(&host, "/").await.status() == 200).then_some(()) },
    )
    .await;

    // Delete: container gone, port released, the proxy left alone and reported.
    let (s, report) = api
        .call("DELETE", &format!("/api/v1/services/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["proxies_left"], json!([host]));
    assert_eq!(report["released_ports"], json!([format!("{port}/tcp")]));
    assert_eq!(containers_named(&docker, &name).await, 0);
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert!(
        !ports
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["host_port"] == port),
        "{ports}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_leaves_nothing() {
    let docker = engine().await;
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "18000-18999".into()]).await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let name = unique("bad");
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "image",
            json!("Not A/Valid:ref:"),
            StatusCode::BAD_REQUEST,
            "image",
        ),
        (
            "memory",
            json!("12parsecs"),
            StatusCode::BAD_REQUEST,
            "memory",
        ),
        ("cpus", json!("lots"), StatusCode::BAD_REQUEST, "cpus"),
        (
            "restart_policy",
            json!("sometimes"),
            StatusCode::BAD_REQUEST,
            "restart_policy",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "bind": "203.0.113.9"}]),
            StatusCode::BAD_REQUEST,
            "ports.bind",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "host_port": 80}]),
            StatusCode::BAD_REQUEST,
            "ports.host_port",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "protocol": "sctp"}]),
            StatusCode::BAD_REQUEST,
            "ports.protocol",
        ),
        (
            "labels",
            json!({"portcullis.managed": "x"}),
            StatusCode::BAD_REQUEST,
            "labels",
        ),
        // Well formed but not on the engine (no registry is reached).
        (
            "image",
            json!("portcullis-test-absent:nope"),
            StatusCode::BAD_REQUEST,
            "image",
        ),
    ];
    for (field, value, status, named) in cases {
        let mut body = httpd(&name);
        body[field] = value.clone();
        let (s, err) = api.call("POST", "/api/v1/services", Some(body)).await;
        assert_eq!(s, status, "{field}={value}: {err}");
        assert!(
            err["detail"].as_str().unwrap().contains(named),
            "{field}={value}: {err}"
        );
    }
    // A port held by something else on the host.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let mut body = httpd(&name);
    body["ports"][0]["host_port"] = json!(busy_port);
    let (s, err) = api.call("POST", "/api/v1/services", Some(body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("in use on this host"),
        "{err}"
    );
    let (_, check) = api
        .call("GET", &format!("/api/v1/ports/check/{busy_port}"), None)
        .await;
    assert_eq!(check["available"], false, "{check}");

    // A command that exits at once (busybox: applet not found) is a service whose live state
    // says so; deleting it releases its port.
    let mut body = httpd(&name);
    body["command"] = json!(["/no/such/binary"]);
    let (s, created) = api.call("POST", "/api/v1/services", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let shown = eventually(Duration::from_secs(10), "container exits", || async {
        let (_, v) = api
            .call("GET", &format!("/api/v1/services/{name}"), None)
            .await;
        (v["state"]["status"] == "exited").then_some(v)
    })
    .await;
    assert_eq!(shown["state"]["exit_code"], 127, "{shown}");
    assert_eq!(shown["state"]["running"], false, "{shown}");
    let (s, _) = api
        .call("DELETE", &format!("/api/v1/services/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Nothing left behind by any of them.
    assert_eq!(containers_named(&docker, &name).await, 0);
    let (_, list) = api.call("GET", "/api/v1/services", None).await;
    assert_eq!(list, json!([]));
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert_eq!(ports, json!([]));

    // A name collision: the second create is refused and the first is untouched.
    let (s, first) = api
        .call("POST", "/api/v1/services", Some(httpd(&name)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, err) = api
        .call("POST", "/api/v1/services", Some(httpd(&name)))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    assert_eq!(containers_named(&docker, &name).await, 1);

    // A user token sees none of it and cannot touch it.
    let user_secret = cp.cli_ok(&["token", "create", "someone"]).trim().to_owned();
    let as_user = Api {
        cp: &cp,
        token: user_secret,
    };
    assert_eq!(
        as_user.call("GET", "/api/v1/services", None).await.1,
        json!([])
    );
    assert_eq!(
        as_user
            .call("POST", &format!("/api/v1/services/{name}/stop"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        as_user.call("GET", "/api/v1/ports", None).await.1,
        json!([])
    );

    let (s, _) = api
        .call("DELETE", &format!("/api/v1/services/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(containers_named(&docker, &name).await, 0);
}

#[tokio::test]
async fn an_unreachable_engine_is_503_and_the_control_plane_runs() {
    let cp = ControlPlane::start_args(vec![
        "--docker-host".into(),
        "unix:///nonexistent/docker.sock".into(),
    ])
    .await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let (s, err) = api
        .call("POST", "/api/v1/services", Some(httpd("web")))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/docker.sock"),
        "{err}"
    );
    let (s, h) = api.call("GET", "/api/v1/docker/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["reachable"], false, "{h}");
    // /health says so, and stays "ok": the control plane works without the engine.
    let health = eventually(Duration::from_secs(10), "docker in /health", || async {
        let (_, h) = api.call("GET", "/health", None).await;
        h["peers"]["docker"].is_object().then_some(h)
    })
    .await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["peers"]["docker"]["reachable"], false, "{health}");
    assert!(
        health["peers"]["docker"]["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/docker.sock"),
        "{health}"
    );
    // Nothing was reserved.
    assert_eq!(api.call("GET", "/api/v1/ports", None).await.1, json!([]));
    // The routes are in the OpenAPI document.
    let doc: Value = http_client()
        .get(format!("{}/openapi.json", cp.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/services",
        "/api/v1/services/{name}/logs",
        "/api/v1/ports/check/{port}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(doc["paths"]["/api/v1/services/external"].is_object());
    // The rest of the control plane works.
    assert_eq!(
        api.call("GET", "/api/v1/services/external", None).await.0,
        StatusCode::OK
    );
}

/// The CLI (gRPC `DockerService`) and the seed's justfile recipes over the same engine.
#[tokio::test]
async fn cli_and_justfile_recipes() {
    let docker = engine().await;
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "19000-19499".into()]).await;
    let dp = DataPlane::start(&cp, "dp-docker-cli").await;
    let name = unique("cli");
    let just = |args: &[&str]| {
        let out = cp.just(&cp.admin_token, args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };

    // Created through the CLI with a command after `--`.
    let out = cp.cli_ok(&[
        "service",
        "create",
        &name,
        IMAGE,
        "--port",
        "web=8080",
        "--memory",
        "32m",
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        "echo cli-marker; exec /bin/busybox httpd -f -p 8080 -h /www",
    ]);
    let v: Value = serde_json::from_str(&out).expect("CLI JSON");
    assert_eq!(v["state"]["status"], "running", "{v}");
    assert_eq!(v["ports"][0]["name"], "web");
    let port = v["ports"][0]["host_port"].as_u64().unwrap();
    assert!((19000..=19499).contains(&port), "{v}");

    let list = cp.cli_ok(&["service", "list"]);
    assert!(list.contains(&name) && list.contains("running"), "{list}");
    let (ok, ports) = just(&["service-port-list"]);
    assert!(
        ok && ports.contains(&format!("{port}/tcp")) && ports.contains(&name),
        "{ports}"
    );
    let (ok, check) = just(&["service-port-check", &port.to_string()]);
    assert!(ok && check.contains("NOT available"), "{check}");

    let (ok, out) = just(&[
        "service-proxy-create",
        &name,
        &format!("{name}.example.test"),
    ]);
    assert!(ok, "{out}");
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    let r = dp.get(&format!("{name}.example.test"), "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), PAGE);

    let (ok, out) = just(&["service-stop", &name]);
    assert!(ok && out.contains("exited"), "{out}");
    assert_eq!(
        dp.get(&format!("{name}.example.test"), "/").await.status(),
        StatusCode::BAD_GATEWAY
    );
    let (ok, out) = just(&["service-start", &name]);
    assert!(ok && out.contains("running"), "{out}");
    let (ok, logs) = just(&["service-logs", &name, "20", "true"]);
    assert!(ok && logs.contains("cli-marker"), "{logs}");

    // A refused create through the CLI names the field and exits non-zero.
    let out = cp.cli(
        &cp.admin_token,
        &["service", "create", "x-bad", IMAGE, "--memory", "lots"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memory"),
        "{out:?}"
    );
    // The seed's two-argument-style recipe: an allocated host port on 127.0.0.1.
    let second = unique("exposed");
    let (ok, out) = just(&["service-create-exposed", &second, IMAGE, "8080"]);
    assert!(ok && out.contains("127.0.0.1:19"), "{out}");
    let (ok, out) = just(&["service-remove", &second]);
    assert!(ok && out.contains("released"), "{out}");
    assert_eq!(containers_named(&docker, &second).await, 0);
    // `service external` is unchanged beside them.
    cp.cli_ok(&["service", "external", "list"]);

    let out = cp.cli_ok(&["service", "delete", &name]);
    assert!(
        out.contains(&format!("{name}.example.test")),
        "proxy reported: {out}"
    );
    assert_eq!(containers_named(&docker, &name).await, 0);
}
