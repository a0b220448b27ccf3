//! Docker services at run time, against the real engine (`dockerd`, started by
//! tests/run.sh): an exposed service behind an OAuth-protected proxy through a real data
//! plane (502 while stopped, back after start and restart), its logs (read and followed),
//! its stats (one sample, followed over SSE and gRPC, the CLI), a Dockerfile build (REST
//! with a tar context, the CLI from a directory; build errors and escaping contexts
//! refused), networks and container-address targets, and a control-plane restart keeping
//! every service and port.

use std::time::Duration;

use base64::Engine as _;
use portcullis_proto::v1 as pb;
use portcullis_tests::browser::{self, alice, github_login};
use portcullis_tests::docker::{
    Api, DOCKERFILE, IMAGE, Leftovers, PAGE, containers_named, context_tar, engine, unique,
};
use portcullis_tests::{ControlPlane, DataPlane, eventually, http_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:53997/callback";

/// Reads Server-Sent Events until `want` `data:` events arrived, or an `error` event, or
/// the stream ends, within `within`: `(event, data)` pairs.
async fn sse(mut resp: reqwest::Response, want: usize, within: Duration) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < want {
        let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(_) => break,
            Err(_) => panic!(
                "only {} of {want} events within {within:?}: {out:?}",
                out.len()
            ),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let (mut event, mut data) = ("message".to_owned(), String::new());
            for l in block.lines() {
                if let Some(e) = l.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = l.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            let v = serde_json::from_str(&data).unwrap_or(Value::String(data));
            let stop = event == "error";
            out.push((event, v));
            if stop {
                return out;
            }
        }
    }
    out
}

async fn get_stream(cp: &ControlPlane, path: &str) -> reqwest::Response {
    let r = http_client()
        .get(format!("{}{path}", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(
        r.headers()["content-type"].to_str().expect("content-type"),
        "text/event-stream",
        "{path}"
    );
    r
}

async fn grpc(
    cp: &ControlPlane,
) -> pb::docker_service_client::DockerServiceClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(cp.grpc.clone())
        .expect("grpc url")
        .connect()
        .await
        .expect("grpc connect");
    pb::docker_service_client::DockerServiceClient::new(ch)
}

fn authed<T>(cp: &ControlPlane, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", cp.admin_token)
            .parse()
            .expect("metadata"),
    );
    r
}

async fn get_with(dp: &DataPlane, host: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = http_client()
        .get(format!("{}/", dp.http))
        .header("host", host);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.expect("request through the data plane")
}

#[tokio::test]
async fn protected_service_lifecycle_logs_stats_and_control_plane_restart() {
    let mut left = Leftovers::default();
    let docker = engine().await;
    let mut cp = ControlPlane::start_args(vec!["--port-range".into(), "26000-26999".into()]).await;
    let github = github_login(&cp, vec![alice()]).await;
    let dp = DataPlane::start(&cp, "dp-docker-runtime").await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let name = left.service(unique("rt"));
    let (s, created) = api
        .call(
            "POST",
            "/api/v1/services",
            Some(json!({
                "name": name,
                "image": IMAGE,
                // A tick a second to follow, and the web server.
                "command": ["sh", "-c", "echo runtime-started-marker; (while true; do echo tick; /bin/busybox sleep 1; done) & exec /bin/busybox httpd -f -p 8080 -h /www"],
                "memory": "64m",
                "cpus": "0.5",
                "ports": [{"container_port": 8080}]
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let port = created["ports"][0]["host_port"].as_u64().unwrap();
    assert!((26000..=26999).contains(&port), "{created}");
    assert_eq!(created["networks"], json!([]));
    assert_eq!(created["built"], false);
    // The limits as the engine holds them (cgroup v1 here accepts both).
    let hc = docker
        .inspect_container(&format!("portcullis-{name}"), None)
        .await
        .expect("inspect")
        .host_config
        .expect("host config");
    assert_eq!(hc.memory, Some(64 << 20));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    // Reached on its host port.
    let direct = format!("http://127.0.0.1:{port}/");
    let body = eventually(Duration::from_secs(10), "host port answers", || async {
        match http_client().get(&direct).send().await {
            Ok(r) if r.status() == 200 => r.text().await.ok(),
            _ => None,
        }
    })
    .await;
    assert_eq!(body, PAGE);

    // One step to a proxy, then protected like any proxy.
    let host = format!("{name}.example.com");
    let (s, proxy) = api
        .call(
            "POST",
            &format!("/api/v1/services/{name}/proxy"),
            Some(json!({"hostname": host})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{proxy}");
    assert_eq!(proxy["target_url"], format!("http://127.0.0.1:{port}"));
    cp.enable_forward_auth(&host, "auth.example.com", Some("mcp"));
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code"], "client_name": "Docker test"}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: Value = resp.json().await.expect("json");
    let token = browser::access_token(
        &cp,
        &format!("{}/authorize", cp.http),
        &format!("{}/token", cp.http),
        client["client_id"].as_str().unwrap(),
        REDIRECT,
        &format!("https://{host}"),
    )
    .await;
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    assert_eq!(get_with(&dp, &host, None).await.status(), 401);
    assert_eq!(
        get_with(&dp, &host, Some("not-a-token")).await.status(),
        401
    );
    let r = eventually(
        Duration::from_secs(10),
        "protected service answers",
        || async {
            let r = get_with(&dp, &host, Some(&token)).await;
            (r.status() == 200).then_some(r)
        },
    )
    .await;
    assert_eq!(r.text().await.unwrap(), PAGE);

    // Stopped: 502 (after the token was accepted); started and restarted: back.
    let (s, stopped) = api
        .call("POST", &format!("/api/v1/services/{name}/stop"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["state"]["running"], false);
    assert_eq!(
        get_with(&dp, &host, Some(&token)).await.status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(get_with(&dp, &host, None).await.status(), 401);
    for op in ["start", "restart"] {
        let (s, v) = api
            .call("POST", &format!("/api/v1/services/{name}/{op}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["state"]["status"], "running", "{op}: {v}");
        eventually(Duration::from_secs(10), "proxy works again", || async {
            (get_with(&dp, &host, Some(&token)).await.status() == 200).then_some(())
        })
        .await;
    }

    // Logs: what the container printed; followed, new lines arrive as printed.
    let (_, logs) = api
        .call(
            "GET",
            &format!("/api/v1/services/{name}/logs?tail=1000"),
            None,
        )
        .await;
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "runtime-started-marker"),
        "{logs}"
    );
    let follow = get_stream(
        &cp,
        &format!("/api/v1/services/{name}/logs?follow=true&tail=0&timestamps=true"),
    )
    .await;
    let lines = sse(follow, 2, Duration::from_secs(15)).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (event, v) in &lines {
        assert_eq!(event, "message", "{lines:?}");
        let l = v["line"].as_str().unwrap();
        // tail=0: only lines printed after the follow began.
        assert!(l.starts_with("20") && l.ends_with(" tick"), "{l}");
    }
    let mut g = grpc(&cp).await;
    let mut st = g
        .follow_service_logs(authed(
            &cp,
            pb::ServiceLogsRequest {
                name: name.clone(),
                tail: 5,
                timestamps: false,
            },
        ))
        .await
        .expect("follow logs over gRPC")
        .into_inner();
    let m = tokio::time::timeout(Duration::from_secs(10), st.message())
        .await
        .expect("a log message within 10 s")
        .expect("stream")
        .expect("not ended");
    assert!(m.lines.iter().any(|l| l == "tick"), "{m:?}");
    drop(st);

    // Stats: one sample, followed samples (SSE, gRPC), the CLI.
    let (s, one) = api
        .call("GET", &format!("/api/v1/services/{name}/stats"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert!(one["memory_usage_bytes"].as_u64().unwrap() > 0, "{one}");
    // The 64m limit the engine accepted (cgroups here allow it).
    assert_eq!(one["memory_limit_bytes"], 64 << 20, "{one}");
    assert!(one["pids"].as_u64().unwrap() >= 2, "{one}");
    assert!(one["cpu_percent"].as_f64().unwrap() >= 0.0, "{one}");
    let followed = sse(
        get_stream(&cp, &format!("/api/v1/services/{name}/stats?stream=true")).await,
        2,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(followed.len(), 2, "{followed:?}");
    for (event, v) in &followed {
        assert_eq!(event, "message");
        assert!(v["memory_usage_bytes"].as_u64().unwrap() > 0, "{v}");
    }
    let mut st = g
        .follow_service_stats(authed(
            &cp,
            pb::ByName {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("follow stats over gRPC")
        .into_inner();
    let sample = tokio::time::timeout(Duration::from_secs(10), st.message())
        .await
        .expect("a sample within 10 s")
        .expect("stream")
        .expect("not ended");
    assert!(sample.memory_usage_bytes > 0, "{sample:?}");
    assert_eq!(sample.memory_limit_bytes, 64 << 20);
    drop(st);
    let out: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "service", "stats", &name])).unwrap();
    assert!(out["memory_usage_bytes"].as_u64().unwrap() > 0, "{out}");
    let text = cp.cli_ok(&["service", "stats", &name]);
    assert!(text.starts_with("CPU ") && text.contains("MEM "), "{text}");
    // Someone else's service is not there for a user token.
    let other = Api {
        cp: &cp,
        token: cp.cli_ok(&["token", "create", "someone"]).trim().to_owned(),
    };
    let (s, _) = other
        .call("GET", &format!("/api/v1/services/{name}/stats"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let doc: Value = http_client()
        .get(format!("{}/openapi.json", cp.http))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi json");
    for (path, method) in [
        ("/api/v1/services/{name}/stats", "get"),
        ("/api/v1/services/{name}/proxy", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    // Unknown query parameters are refused, like every endpoint's.
    let (s, _) = api
        .call(
            "GET",
            &format!("/api/v1/services/{name}/stats?follow=1"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A control-plane restart (same store) keeps the service, its port, its proxy.
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
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["host_port"] == port && a["service"] == name.as_str()),
        "{ports}"
    );
    let (s, kept) = api
        .call("GET", &format!("/api/v1/proxy/targets/{host}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{kept}");
    assert_eq!(kept["target_url"], format!("http://127.0.0.1:{port}"));
    let (s, auth) = api
        .call("GET", &format!("/api/v1/oauth/proxies/{host}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{auth}");
    eventually(
        Duration::from_secs(10),
        "protected proxy after restart",
        || async { (get_with(&dp, &host, Some(&token)).await.status() == 200).then_some(()) },
    )
    .await;
    assert_eq!(get_with(&dp, &host, None).await.status(), 401);
    // Bad input after the restart: 4xx naming the field, nothing created or reserved.
    let bad = left.service(unique("rtbad"));
    let good = json!({"name": bad, "image": IMAGE, "ports": [{"container_port": 8080}]});
    for (field, value, says) in [
        ("image", json!("UPPER/Case::x"), "image"),
        ("memory", json!("64 megs"), "memory"),
        ("cpus", json!("-1"), "cpus"),
        (
            "ports",
            json!([{"container_port": 8080, "bind": "8.8.8.8"}]),
            "ports.bind",
        ),
        ("name", json!(name), "name"),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let (s, err) = api.call("POST", "/api/v1/services", Some(body)).await;
        assert!(s.is_client_error(), "{field}: {s} {err}");
        let detail = err["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("invalid {says}:"))
                || detail.starts_with(&format!("{says}:")),
            "{field}: {err}"
        );
    }
    assert_eq!(containers_named(&docker, &bad).await, 0);
    assert_eq!(containers_named(&docker, &name).await, 1);
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");

    let (s, report) = api
        .call("DELETE", &format!("/api/v1/services/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["proxies_left"], json!([host]), "{report}");
    assert_eq!(containers_named(&docker, &name).await, 0);
    drop(github);
}

#[tokio::test]
async fn dockerfile_builds_networks_and_container_targets() {
    let mut left = Leftovers::default();
    let docker = engine().await;
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "27000-27999".into()]).await;
    let dp = DataPlane::start(&cp, "dp-docker-build").await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let b64 = |t: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(t);
    // Two named ports: `web` serves the built page, `alt` a page written at start.
    let two_ports = [
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox mkdir /alt && echo alt-port-page > /alt/index.html && /bin/busybox httpd -p 8081 -h /alt && exec /bin/busybox httpd -f -p 8080 -h /www",
    ];

    // A network of its own, removed at the end.
    let net = left.network(unique("pcnet"));
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .expect("create network");

    // Built from a Dockerfile and a tar context over REST, on that network.
    let name = left.service(unique("built"));
    let page = format!("built for {name}");
    let (s, created) = api
        .call(
            "POST",
            "/api/v1/services",
            Some(json!({
                "name": name,
                "dockerfile": DOCKERFILE,
                "build_context": b64(context_tar(&page, &[])),
                "command": two_ports,
                "ports": [{"name": "web", "container_port": 8080}, {"name": "alt", "container_port": 8081}],
                "networks": [net],
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["image"], format!("portcullis-build/{name}:latest"));
    assert_eq!(created["built"], true);
    assert_eq!(created["networks"], json!([net]));
    assert_eq!(created["state"]["status"], "running", "{created}");
    let port = created["ports"][0]["host_port"].as_u64().unwrap();
    let direct = format!("http://127.0.0.1:{port}/");
    let body = eventually(Duration::from_secs(10), "built service answers", || async {
        match http_client().get(&direct).send().await {
            Ok(r) if r.status() == 200 => r.text().await.ok(),
            _ => None,
        }
    })
    .await;
    assert_eq!(body, page);
    let inspect = docker
        .inspect_container(&format!("portcullis-{name}"), None)
        .await
        .expect("inspect");
    let nets = inspect.network_settings.unwrap().networks.unwrap();
    assert!(nets.contains_key(&net), "{nets:?}");

    // A proxy to the container's address on its network, reached through the data plane.
    let host = format!("{name}.localhost");
    let (s, proxy) = api
        .call(
            "POST",
            &format!("/api/v1/services/{name}/proxy"),
            Some(json!({"target": "container"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{proxy}");
    let ip = nets[&net].ip_address.clone().unwrap();
    assert_eq!(proxy["target_url"], format!("http://{ip}:8080"));
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    let r = dp.get(&host, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), page);
    let (s, err) = api
        .call(
            "POST",
            &format!("/api/v1/services/{name}/proxy"),
            Some(json!({"hostname": "x.localhost", "target": "ip"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["detail"].as_str().unwrap().contains("target"), "{err}");

    // The CLI: `--port alt` on the published port, and `--port alt --target container`.
    let alt_host = format!("alt-{name}.localhost");
    let out: Value = serde_json::from_str(&cp.cli_ok(&[
        "-o",
        "json",
        "service",
        "proxy-create",
        &name,
        &alt_host,
        "--port",
        "alt",
    ]))
    .unwrap();
    let alt_port = created["ports"][1]["host_port"].as_u64().unwrap();
    assert_eq!(created["ports"][1]["name"], "alt");
    assert_eq!(
        out["target_url"],
        format!("http://127.0.0.1:{alt_port}"),
        "{out}"
    );
    let alt_ct = format!("altct-{name}.localhost");
    let out: Value = serde_json::from_str(&cp.cli_ok(&[
        "-o",
        "json",
        "service",
        "proxy-create",
        &name,
        &alt_ct,
        "--port",
        "alt",
        "--target",
        "container",
    ]))
    .unwrap();
    assert_eq!(out["target_url"], format!("http://{ip}:8081"), "{out}");
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    for h in [&alt_host, &alt_ct] {
        let r = dp.get(h, "/").await;
        assert_eq!(r.status(), 200, "{h}");
        assert_eq!(r.text().await.unwrap(), "alt-port-page\n", "{h}");
    }
    let out = cp.cli(
        &cp.admin_token,
        &[
            "service",
            "proxy-create",
            &name,
            "x.localhost",
            "--port",
            "nope",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("port") && stderr.contains("nope"),
        "{stderr}"
    );

    // The same name again, with a Dockerfile: refused before building, naming `name`; the
    // running service's image is not replaced.
    let image_id = docker
        .inspect_image(&format!("portcullis-build/{name}:latest"))
        .await
        .expect("built image")
        .id;
    let (s, err) = api
        .call(
            "POST",
            "/api/v1/services",
            Some(json!({
                "name": name,
                "dockerfile": DOCKERFILE,
                "build_context": b64(context_tar("replaced", &[])),
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"].as_str().unwrap().starts_with("name:"),
        "{err}"
    );
    assert_eq!(
        docker
            .inspect_image(&format!("portcullis-build/{name}:latest"))
            .await
            .expect("built image")
            .id,
        image_id
    );

    // Refused builds and networks: a clear error naming the field, nothing left behind.
    let bad = left.service(unique("badbuild"));
    for (body, status, says) in [
        (
            json!({"name": bad, "dockerfile": "FROM scratch\nCOPY missing-file /x\n"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing-file",
        ),
        (
            json!({"name": bad, "dockerfile": DOCKERFILE, "build_context": b64(escaping_tar())}),
            StatusCode::BAD_REQUEST,
            "build_context",
        ),
        (
            json!({"name": bad, "dockerfile": DOCKERFILE, "build_context": "%%%"}),
            StatusCode::BAD_REQUEST,
            "build_context",
        ),
        (
            json!({"name": bad, "image": IMAGE, "dockerfile": DOCKERFILE}),
            StatusCode::BAD_REQUEST,
            "image",
        ),
        (
            json!({"name": bad, "image": IMAGE, "networks": [unique("no-such-net")]}),
            StatusCode::BAD_REQUEST,
            "networks",
        ),
        (
            json!({"name": bad, "image": IMAGE, "networks": ["host"]}),
            StatusCode::BAD_REQUEST,
            "networks",
        ),
        (
            json!({"name": bad, "image": IMAGE, "memory": "64q"}),
            StatusCode::BAD_REQUEST,
            "memory",
        ),
        (
            json!({"name": bad, "image": IMAGE, "cpus": "0"}),
            StatusCode::BAD_REQUEST,
            "cpus",
        ),
    ] {
        let (s, err) = api
            .call("POST", "/api/v1/services", Some(body.clone()))
            .await;
        assert_eq!(s, status, "{body}: {err}");
        assert!(
            err["detail"].as_str().unwrap().contains(says),
            "{body}: {err}"
        );
        if says == "missing-file" {
            assert!(
                err["detail"].as_str().unwrap().starts_with("dockerfile:"),
                "{err}"
            );
        }
        assert_eq!(containers_named(&docker, &bad).await, 0);
        let (s, _) = api
            .call("GET", &format!("/api/v1/services/{bad}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");

    // Refused after the build: a container of that name made outside Portcullis. The create
    // is rolled back (record, host port, built image); the other container is untouched.
    let taken = left.service(unique("taken"));
    docker
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::default()
                    .name(&format!("portcullis-{taken}"))
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(IMAGE.to_owned()),
                labels: Some([("portcullis.service".to_owned(), taken.clone())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create a foreign container");
    let (s, err) = api
        .call(
            "POST",
            "/api/v1/services",
            Some(json!({
                "name": taken,
                "dockerfile": DOCKERFILE,
                "build_context": b64(context_tar("rolled back", &[])),
                "ports": [{"container_port": 8080}],
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"].as_str().unwrap().starts_with("name:"),
        "{err}"
    );
    assert_eq!(containers_named(&docker, &taken).await, 1);
    assert!(
        docker
            .inspect_image(&format!("portcullis-build/{taken}:latest"))
            .await
            .is_err(),
        "the built image is rolled back"
    );
    let (s, _) = api
        .call("GET", &format!("/api/v1/services/{taken}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");

    // The CLI builds from a directory: the Dockerfile's own directory is the context.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    let cli_name = left.service(unique("clibuilt"));
    let cli_page = format!("cli build of {cli_name}");
    std::fs::write(dir.path().join("www/index.html"), &cli_page).unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    let out: Value = serde_json::from_str(&cp.cli_ok(&[
        "-o",
        "json",
        "service",
        "create",
        &cli_name,
        "--dockerfile",
        dockerfile.to_str().unwrap(),
        "--port",
        "8080",
        "--",
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]))
    .unwrap();
    assert_eq!(out["built"], true, "{out}");
    let cli_port = out["ports"][0]["host_port"].as_u64().unwrap();
    let body = eventually(
        Duration::from_secs(10),
        "CLI-built service answers",
        || async {
            match http_client()
                .get(format!("http://127.0.0.1:{cli_port}/"))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => r.text().await.ok(),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(body, cli_page);

    // Deleted with their services: the containers and the images built for them; the
    // proxies (host-port and container-address targets) left alone and reported.
    for (n, left_proxies) in [
        (&name, json!([host, alt_host, alt_ct])),
        (&cli_name, json!([])),
    ] {
        let (s, report) = api
            .call("DELETE", &format!("/api/v1/services/{n}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{report}");
        let mut reported = report["proxies_left"].clone();
        reported
            .as_array_mut()
            .expect("proxies_left")
            .sort_by_key(|v| v.to_string());
        let mut want = left_proxies;
        want.as_array_mut()
            .expect("list")
            .sort_by_key(|v| v.to_string());
        assert_eq!(reported, want, "{report}");
        assert_eq!(containers_named(&docker, n).await, 0);
        let gone = docker
            .inspect_image(&format!("portcullis-build/{n}:latest"))
            .await;
        assert!(
            matches!(
                gone,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })
            ),
            "{n}: {gone:?}"
        );
    }
    docker.remove_network(&net).await.expect("remove network");
}

/// A context whose symlink leaves it.
fn escaping_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "www", "../../etc")
        .expect("symlink entry");
    b.into_inner().expect("tar")
}

/// The seed's recipes with its positional arguments: `service-create NAME "" DOCKERFILE PORT
/// TOKEN MEMORY CPU AUTO_PROXY` (a build, limits, the automatic NAME.localhost proxy),
/// `service-restart`, `service-logs NAME LINES TIMESTAMPS`, `service-stats`,
/// `service-proxy-create NAME HOST HTTPS TOKEN` and `service-stop|start NAME TOKEN`.
#[tokio::test]
async fn justfile_recipes_with_the_seeds_arguments() {
    let mut left = Leftovers::default();
    let docker = engine().await;
    // HTTPS=true orders a certificate: from nowhere, not from Let's Encrypt.
    let cp = ControlPlane::start_args(vec![
        "--port-range".into(),
        "28000-28999".into(),
        "--acme-directory".into(),
        "http://127.0.0.1:9/directory".into(),
    ])
    .await;
    let dp = DataPlane::start(&cp, "dp-docker-just").await;
    let just = |args: &[&str]| {
        let out = cp.just("not-a-token", args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "just {args:?}: {text}");
        text
    };
    let token = cp.admin_token.as_str();

    // A Dockerfile whose CMD serves /www (the recipe takes no command).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "{DOCKERFILE}CMD [\"httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), PAGE).unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    let name = left.service(unique("just"));
    just(&[
        "service-create",
        &name,
        "",
        dockerfile.to_str().unwrap(),
        "8080",
        token,
        "48m",
        "0.25",
        "true",
    ]);
    let hc = docker
        .inspect_container(&format!("portcullis-{name}"), None)
        .await
        .expect("inspect")
        .host_config
        .expect("host config");
    assert_eq!(hc.memory, Some(48 << 20));
    assert_eq!(hc.nano_cpus, Some(250_000_000));
    let auto = format!("{name}.localhost");
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    let r = eventually(Duration::from_secs(10), "auto proxy answers", || async {
        let r = dp.get(&auto, "/").await;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(r.text().await.unwrap(), PAGE);

    // Lifecycle with the token as the last argument (the environment's is not valid).
    let out = just(&["service-stop", &name, token]);
    assert!(out.contains("exited"), "{out}");
    assert_eq!(dp.get(&auto, "/").await.status(), StatusCode::BAD_GATEWAY);
    let out = just(&["service-start", &name, token]);
    assert!(out.contains("running"), "{out}");
    let out = just(&["service-restart", &name, token]);
    assert!(out.contains("running"), "{out}");
    eventually(Duration::from_secs(10), "back after restart", || async {
        (dp.get(&auto, "/").await.status() == 200).then_some(())
    })
    .await;

    // The rest read PORTCULLIS_TOKEN, like the seed's.
    let just_env = |args: &[&str]| {
        let out = std::process::Command::new("just")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("PORTCULLIS_URL", &cp.grpc)
            .env("PORTCULLIS_TOKEN", token)
            .env(
                "PORTCULLIS_BIN",
                portcullis_tests::procs::bin("portcullis")
                    .parent()
                    .expect("bin dir"),
            )
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .args(args)
            .output()
            .expect("just");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "just {args:?}: {text}");
        text
    };
    // httpd -v logs each response: those to the requests made through the proxy.
    let logs = just_env(&["service-logs", &name, "50", "true"]);
    let line = logs
        .lines()
        .find(|l| l.contains("response:200"))
        .unwrap_or_else(|| panic!("no request in {logs}"));
    assert!(line.starts_with("20"), "timestamped: {line}");
    let logs = just_env(&["service-logs", &name, "1"]);
    assert_eq!(logs.lines().count(), 1, "{logs}");
    assert!(!logs.starts_with("20"), "{logs}");
    let stats = just_env(&["service-stats", &name]);
    assert!(
        stats.starts_with("CPU ") && stats.contains("MEM "),
        "{stats}"
    );
    let https_host = format!("secure-{name}.example.test");
    just(&["service-proxy-create", &name, &https_host, "true", token]);
    let (s, p) = Api {
        cp: &cp,
        token: token.to_owned(),
    }
    .call("GET", &format!("/api/v1/proxy/targets/{https_host}"), None)
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["enable_https"], true, "{p}");

    let out = just_env(&["service-remove", &name]);
    assert!(out.contains(&auto) && out.contains(&https_host), "{out}");
    assert_eq!(containers_named(&docker, &name).await, 0);
    assert!(
        docker
            .inspect_image(&format!("portcullis-build/{name}:latest"))
            .await
            .is_err()
    );
}
