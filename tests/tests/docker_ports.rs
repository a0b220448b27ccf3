//! Docker service ports and reconciliation against the real engine (`dockerd`, started by
//! tests/run.sh): ports added and removed (the container recreated, the new host port
//! reached, the removed one refusing), allocation conflicts (another service, an unrelated
//! listener), the free ranges, source-token restrictions, refused input leaving nothing
//! behind, and orphans / missing containers found and cleaned up on two control planes
//! sharing one Redis — touching only this installation's containers while other tests run
//! theirs on the same engine.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use portcullis_test_support::eventually;
use portcullis_tests::{ControlPlane, RedisServer, http_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

const IMAGE: &str = "portcullis-test-busybox-ports:latest";
const PAGE: &str = "hello from a portcullis port test";

async fn build_image(docker: &bollard::Docker) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static installed (/bin/busybox)");
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data).expect("tar entry");
    };
    add(
        "Dockerfile",
        b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nENTRYPOINT [\"/bin/busybox\"]\n",
        0o644,
    );
    add("busybox", &busybox, 0o755);
    add("www/index.html", PAGE.as_bytes(), 0o644);
    let body = tar.into_inner().expect("tar");
    let opts = BuildImageOptionsBuilder::default()
        .t(IMAGE)
        .rm(true)
        .build();
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    while let Some(step) = s.next().await {
        let step = step.expect("image build");
        assert!(
            step.error_detail.is_none(),
            "build error: {:?}",
            step.error_detail
        );
    }
}

async fn engine() -> bollard::Docker {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker client");
    let docker = docker
        .negotiate_version()
        .await
        .expect("dockerd must be running (tests/run.sh starts it)");
    build_image(&docker).await;
    docker
}

/// Containers (any state) labelled with this service name.
async fn containers_of(docker: &bollard::Docker, service: &str) -> Vec<String> {
    let mut filters = HashMap::new();
    filters.insert("label", vec![format!("portcullis.service={service}")]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(opts))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_owned())
        .collect()
}

struct Api<'a> {
    cp: &'a ControlPlane,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.cp.http);
        let mut req = http_client()
            .request(method.parse().expect("method"), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let s = r.status();
        let text = r.text().await.expect("body");
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    /// Every allocation as `port/protocol -> service/port_name`.
    async fn allocations(&self) -> Vec<String> {
        let v = self.ok("GET", "/api/v1/ports", None).await;
        let mut out: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|a| {
                format!(
                    "{}/{}->{}/{}",
                    a["host_port"],
                    a["protocol"].as_str().unwrap_or(""),
                    a["service"].as_str().unwrap_or(""),
                    a["port_name"].as_str().unwrap_or("")
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// An httpd on 8080 and a second one on 8081; sh as PID 1 exits on SIGTERM at once.
fn two_httpds(name: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "command": ["sh", "-c", "trap 'exit 0' TERM; httpd -p 8081 -h /www; httpd -f -p 8080 -h /www & wait"],
        "env": {"GREETING": "kept-across-recreate"},
        "memory": "48m",
        "ports": [{"container_port": 8080}]
    })
}

async fn get_page(port: u64) -> Option<String> {
    match http_client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => r.text().await.ok(),
        _ => None,
    }
}

async fn refuses(port: u64) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
        .await
        .is_err()
}

/// Two adjacent free ports `(p, p + 1)`, the first held by a listener.
fn held_pair() -> (std::net::TcpListener, u16) {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 65535 && std::net::TcpListener::bind(("0.0.0.0", p + 1)).is_ok() {
            return (l, p);
        }
    }
    panic!("no two adjacent free ports");
}

#[tokio::test]
async fn ports_are_added_and_removed_and_conflicts_refused() {
    let docker = engine().await;
    // A two-port range whose first port an unrelated listener holds: allocation skips it.
    let (busy, low) = held_pair();
    let range = format!("{low}-{}", low + 1);
    let cp = ControlPlane::start_args(vec!["--port-range".into(), range.clone()]).await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let avail = api.ok("GET", "/api/v1/ports/available", None).await;
    assert_eq!(avail["free"], 1, "{avail}");
    assert_eq!(avail["ranges"], json!([{"start": low + 1, "end": low + 1}]));
    let (_, check) = api
        .call("GET", &format!("/api/v1/ports/check/{low}"), None)
        .await;
    assert_eq!(check["available"], false, "{check}");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .contains("in use on this host"),
        "{check}"
    );

    let a = unique("pa");
    let created = api
        .ok("POST", "/api/v1/services", Some(two_httpds(&a)))
        .await;
    let first = created["ports"][0]["host_port"].as_u64().unwrap();
    assert_eq!(
        first,
        u64::from(low) + 1,
        "the held port is skipped: {created}"
    );
    let first_id = created["container_id"].as_str().unwrap().to_owned();
    let page = eventually(Duration::from_secs(10), "first port answers", || {
        get_page(first)
    })
    .await;
    assert_eq!(page, PAGE);
    let avail = api.ok("GET", "/api/v1/ports/available", None).await;
    assert_eq!(
        (avail["free"].clone(), avail["ranges"].clone()),
        (json!(0), json!([]))
    );
    // `port check` names the holder of an allocated port (REST and the recipe).
    let check = api
        .ok("GET", &format!("/api/v1/ports/check/{first}"), None)
        .await;
    assert_eq!(check["available"], false, "{check}");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("allocated to service {a:?}")),
        "{check}"
    );

    // The range is used up: an allocated port is refused, naming the field.
    let (s, err) = api
        .call(
            "POST",
            &format!("/api/v1/services/{a}/ports"),
            Some(json!({"container_port": 8081})),
        )
        .await;
    assert!(s.is_client_error(), "{s} {err}");
    assert!(
        err["detail"].as_str().unwrap().contains("ports.host_port"),
        "{err}"
    );
    // The held port, asked for by number: refused as in use on this host.
    let (s, err) = api
        .call(
            "POST",
            &format!("/api/v1/services/{a}/ports"),
            Some(json!({"container_port": 8081, "host_port": low})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("in use on this host"),
        "{err}"
    );
    drop(busy);

    // Freed, it is added: the container is recreated, both ports answer, the rest is kept.
    let (s, added) = api
        .call(
            "POST",
            &format!("/api/v1/services/{a}/ports"),
            Some(json!({"container_port": 8081, "name": "admin", "host_port": low})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    assert_eq!(added["recreated"], true, "{added}");
    assert_eq!(added["running"], true, "{added}");
    assert_eq!(added["port"]["name"], "admin");
    assert_eq!(added["port"]["host_port"], low);
    let second = u64::from(low);
    let page = eventually(Duration::from_secs(10), "added port answers", || {
        get_page(second)
    })
    .await;
    assert_eq!(page, PAGE);
    assert_eq!(get_page(first).await.as_deref(), Some(PAGE));
    let shown = api.ok("GET", &format!("/api/v1/services/{a}"), None).await;
    assert_eq!(shown["state"]["status"], "running", "{shown}");
    assert_ne!(shown["container_id"], first_id.as_str(), "a new container");
    assert_eq!(shown["container_name"], format!("portcullis-{a}"));
    assert_eq!(
        containers_of(&docker, &a).await,
        vec![format!("portcullis-{a}")]
    );
    let inspected = docker
        .inspect_container(&format!("portcullis-{a}"), None::<InspectContainerOptions>)
        .await
        .unwrap();
    let env = inspected.config.unwrap().env.unwrap();
    assert!(
        env.contains(&"GREETING=kept-across-recreate".to_owned()),
        "{env:?}"
    );
    assert_eq!(inspected.host_config.unwrap().memory, Some(48 << 20));
    assert_eq!(
        api.allocations().await,
        vec![
            format!("{low}/tcp->{a}/admin"),
            format!("{}/tcp->{a}/http", low + 1)
        ]
    );
    let listed = api
        .ok("GET", &format!("/api/v1/services/{a}/ports"), None)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let one = api
        .ok("GET", &format!("/api/v1/services/{a}/ports/admin"), None)
        .await;
    assert_eq!(one["container_port"], 8081);

    // A second service asking for a host port the first holds: refused, nothing left.
    let b = unique("pb");
    let mut clash = two_httpds(&b);
    clash["ports"][0]["host_port"] = json!(second);
    let (s, err) = api.call("POST", "/api/v1/services", Some(clash)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"].as_str().unwrap().contains("ports.host_port"),
        "{err}"
    );
    assert!(containers_of(&docker, &b).await.is_empty());
    assert_eq!(api.allocations().await.len(), 2);
    // A name used twice within one service.
    let (s, err) = api
        .call(
            "POST",
            &format!("/api/v1/services/{a}/ports"),
            Some(json!({"container_port": 9000, "name": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"].as_str().unwrap().contains("ports.name"),
        "{err}"
    );

    // Removed: the host port refuses, the other one still answers, the allocation is gone.
    let (s, removed) = api
        .call("DELETE", &format!("/api/v1/services/{a}/ports/admin"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{removed}");
    assert_eq!(removed["recreated"], true);
    assert_eq!(removed["released"], format!("{low}/tcp"));
    eventually(Duration::from_secs(10), "first port answers again", || {
        get_page(first)
    })
    .await;
    assert!(
        refuses(second).await,
        "the removed port still accepts connections"
    );
    assert_eq!(
        api.allocations().await,
        vec![format!("{}/tcp->{a}/http", low + 1)]
    );
    assert_eq!(containers_of(&docker, &a).await.len(), 1);
    let (s, _) = api
        .call("DELETE", &format!("/api/v1/services/{a}/ports/admin"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The CLI and the justfile recipes over the same operations.
    let just = |args: &[&str]| {
        let out = cp.just(&cp.admin_token, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "just {args:?}: {text}");
        text
    };
    let out = just(&["service-port-add", &a, "8081"]);
    assert!(
        out.contains("recreated") && out.contains(&format!("127.0.0.1:{low}")),
        "{out}"
    );
    let out = just(&["service-port-list", &a]);
    assert!(
        out.contains("port-2") && out.contains(&format!("{low}/tcp")),
        "{out}"
    );
    let out = cp.cli_ok(&["service", "port", "available", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["free"],
        0,
        "{out}"
    );
    let out = just(&["service-port-check", &first.to_string()]);
    assert!(
        out.contains(&format!("allocated to service {a:?}")),
        "{out}"
    );
    let out = just(&["service-port-remove", &a, "port-2"]);
    assert!(out.contains(&format!("released {low}/tcp")), "{out}");
    let out = just(&["service-port-check", &low.to_string(), "127.0.0.1"]);
    assert!(
        !out.contains("allocated") && !out.contains("in use"),
        "{out}"
    );

    // The routes are in the OpenAPI document.
    let doc = api.ok("GET", "/openapi.json", None).await;
    for path in [
        "/api/v1/services/{name}/ports",
        "/api/v1/services/{name}/ports/{port_name}",
        "/api/v1/ports/available",
        "/api/v1/services/cleanup",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }

    api.ok("DELETE", &format!("/api/v1/services/{a}"), None)
        .await;
    assert!(containers_of(&docker, &a).await.is_empty());
    assert_eq!(api.allocations().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_source_token_alone_manages_its_port() {
    let docker = engine().await;
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "14600-14699".into()]).await;
    let admin = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let token = |name: &str| {
        let v: Value =
            serde_json::from_str(&cp.cli_ok(&["token", "create", name, "-o", "json"])).unwrap();
        (
            v["token"]["id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    };
    let (_, owner_secret) = token("owner");
    let (delegate_id, delegate_secret) = token("delegate");
    let (_, other_secret) = token("other");
    let owner = Api {
        cp: &cp,
        token: owner_secret,
    };
    let delegate = Api {
        cp: &cp,
        token: delegate_secret,
    };
    let other = Api {
        cp: &cp,
        token: other_secret,
    };

    let name = unique("ps");
    let mut body = two_httpds(&name);
    body["start"] = json!(false);
    owner.ok("POST", "/api/v1/services", Some(body)).await;
    // A user token may not name a token it cannot list by name.
    let (s, err) = owner
        .call(
            "POST",
            &format!("/api/v1/services/{name}/ports"),
            Some(json!({"container_port": 8081, "source_token": "delegate"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["detail"].as_str().unwrap().contains("source_token"),
        "{err}"
    );
    let added = owner
        .ok(
            "POST",
            &format!("/api/v1/services/{name}/ports"),
            Some(json!({"container_port": 8081, "name": "api", "source_token": delegate_id})),
        )
        .await;
    assert_eq!(added["recreated"], true, "{added}");
    assert_eq!(
        added["running"], false,
        "a stopped service stays stopped: {added}"
    );
    assert_eq!(added["port"]["source_token_id"], delegate_id.as_str());

    // The owner can no longer remove it or proxy to it; the delegate sees only that port.
    let path = format!("/api/v1/services/{name}/ports/api");
    assert_eq!(
        owner.call("DELETE", &path, None).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, err) = owner
        .call(
            "POST",
            &format!("/api/v1/services/{name}/proxy"),
            Some(json!({"port": "api"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(
        other.call("DELETE", &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    let seen = delegate
        .ok("GET", &format!("/api/v1/services/{name}/ports"), None)
        .await;
    assert_eq!(seen.as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen[0]["name"], "api");
    assert_eq!(
        delegate
            .call(
                "DELETE",
                &format!("/api/v1/services/{name}/ports/http"),
                None
            )
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let removed = delegate.ok("DELETE", &path, None).await;
    assert!(
        removed["released"].as_str().unwrap().ends_with("/tcp"),
        "{removed}"
    );
    let ports = admin.allocations().await;
    assert_eq!(ports.len(), 1, "{ports:?}");

    owner
        .ok("DELETE", &format!("/api/v1/services/{name}"), None)
        .await;
    assert!(containers_of(&docker, &name).await.is_empty());
}

#[tokio::test]
async fn refused_input_leaves_no_container_allocation_or_record() {
    let docker = engine().await;
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "14700-14799".into()]).await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    // One existing service, whose port and name later requests collide with.
    let existing = unique("keep");
    let mut body = two_httpds(&existing);
    body["start"] = json!(false);
    let kept = api.ok("POST", "/api/v1/services", Some(body)).await;
    let kept_port = kept["ports"][0]["host_port"].as_u64().unwrap();
    let kept_id = kept["container_id"].clone();
    let before = api.allocations().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();

    let name = unique("bad");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("image", json!("Not A/Valid:ref:"), "image"),
        ("image", json!("portcullis-test-absent-image:nope"), "image"),
        ("memory", json!("12parsecs"), "memory"),
        ("cpus", json!("lots"), "cpus"),
        (
            "ports",
            json!([{"container_port": 0}]),
            "ports.container_port",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "host_port": 80}]),
            "ports.host_port",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "host_port": 70000}]),
            "host_port",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "host_port": kept_port}]),
            "ports.host_port",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "host_port": busy_port}]),
            "ports.host_port",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "bind": "203.0.113.9"}]),
            "ports.bind",
        ),
        (
            "ports",
            json!([{"container_port": 8080, "protocol": "sctp"}]),
            "ports.protocol",
        ),
        ("name", json!(existing), "name: service"),
        ("name", json!("cleanup"), "name"),
    ];
    for (field, value, named) in cases {
        let mut body = two_httpds(&name);
        body[field] = value.clone();
        let (s, err) = api.call("POST", "/api/v1/services", Some(body)).await;
        assert!(s.is_client_error(), "{field}={value}: {s} {err}");
        let detail = err["detail"]
            .as_str()
            .map_or_else(|| err.to_string(), str::to_owned);
        assert!(detail.contains(named), "{field}={value}: {err}");
        // Nothing left: no container, no allocation, no record (the existing one intact).
        assert!(
            containers_of(&docker, &name).await.is_empty(),
            "{field}={value}"
        );
        assert_eq!(api.allocations().await, before, "{field}={value}");
        assert_eq!(
            api.call("GET", &format!("/api/v1/services/{name}"), None)
                .await
                .0,
            StatusCode::NOT_FOUND,
            "{field}={value}"
        );
    }
    let shown = api
        .ok("GET", &format!("/api/v1/services/{existing}"), None)
        .await;
    assert_eq!(shown["container_id"], kept_id);
    assert_eq!(containers_of(&docker, &existing).await.len(), 1);

    // Refused port additions change nothing either: same container, same allocations.
    for (body, named) in [
        (
            json!({"container_port": 8081, "bind": "203.0.113.9"}),
            "ports.bind",
        ),
        (
            json!({"container_port": 8081, "host_port": busy_port}),
            "ports.host_port",
        ),
        (
            json!({"container_port": 8081, "protocol": "sctp"}),
            "ports.protocol",
        ),
        (
            json!({"container_port": 8081, "name": "Bad Name"}),
            "ports.name",
        ),
        (
            json!({"container_port": 8081, "source_token": "nobody"}),
            "source_token",
        ),
    ] {
        let (s, err) = api
            .call(
                "POST",
                &format!("/api/v1/services/{existing}/ports"),
                Some(body.clone()),
            )
            .await;
        assert!(s.is_client_error(), "{body}: {s} {err}");
        assert!(
            err["detail"].as_str().unwrap().contains(named),
            "{body}: {err}"
        );
        assert_eq!(api.allocations().await, before, "{body}");
    }
    let shown = api
        .ok("GET", &format!("/api/v1/services/{existing}"), None)
        .await;
    assert_eq!(shown["container_id"], kept_id);
    drop(busy);
    api.ok("DELETE", &format!("/api/v1/services/{existing}"), None)
        .await;
    assert_eq!(api.allocations().await, Vec::<String>::new());
}

#[tokio::test]
async fn orphans_and_missing_containers_are_found_and_only_orphans_cleaned_up() {
    let docker = engine().await;
    let redis = RedisServer::start().await;
    let args = || {
        vec![
            "--port-range".into(),
            "14800-14899".into(),
            "--docker-reconcile-interval".into(),
            "1s".into(),
        ]
    };
    let a = ControlPlane::start_redis_args(Some(&redis.url), args()).await;
    let b = ControlPlane::start_redis_args(Some(&redis.url), args()).await;
    let on_a = Api {
        cp: &a,
        token: a.admin_token.clone(),
    };
    let on_b = Api {
        cp: &b,
        token: b.admin_token.clone(),
    };

    let orphaned = unique("orph");
    let gone = unique("gone");
    let kept = unique("kept");
    on_a.ok("POST", "/api/v1/services", Some(two_httpds(&orphaned)))
        .await;
    let mut stopped = two_httpds(&gone);
    stopped["start"] = json!(false);
    on_a.ok("POST", "/api/v1/services", Some(stopped)).await;
    let mut stopped = two_httpds(&kept);
    stopped["start"] = json!(false);
    on_b.ok("POST", "/api/v1/services", Some(stopped)).await;

    // A managed container of another installation on the same engine: never touched.
    let foreign = unique("foreign");
    let labels: HashMap<String, String> = [
        ("portcullis.managed", "true"),
        ("portcullis.service", foreign.as_str()),
        ("portcullis.installation", "someone-else"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&foreign)
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .expect("foreign container");

    let report = on_a.ok("GET", "/api/v1/services/cleanup", None).await;
    let installation = report["installation"].as_str().unwrap().to_owned();
    assert_eq!(
        on_b.ok("GET", "/api/v1/services/cleanup", None).await["installation"],
        installation.as_str(),
        "control planes sharing Redis are one installation"
    );
    let names = |r: &Value, key: &str, field: &str| -> Vec<String> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                if field.is_empty() {
                    o.as_str().unwrap().to_owned()
                } else {
                    o[field].as_str().unwrap().to_owned()
                }
            })
            .collect()
    };
    assert!(names(&report, "orphans", "service").is_empty(), "{report}");

    // The record goes behind the engine's back (straight out of Redis): its container is an
    // orphan and its allocation stale.
    let port = on_a
        .ok("GET", &format!("/api/v1/services/{orphaned}"), None)
        .await["ports"][0]["host_port"]
        .as_u64()
        .unwrap();
    assert_eq!(
        redis.cli(&["HDEL", "{portcullis}:containers", &orphaned]),
        "1"
    );
    // The container goes behind Portcullis' back: the service shows missing.
    docker
        .remove_container(
            &format!("portcullis-{gone}"),
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    let shown = on_b
        .ok("GET", &format!("/api/v1/services/{gone}"), None)
        .await;
    assert_eq!(shown["state"]["status"], "missing", "{shown}");
    let listed = on_a.ok("GET", "/api/v1/services", None).await;
    let status: HashMap<String, String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        status.get(&gone).map(String::as_str),
        Some("missing"),
        "{listed}"
    );
    assert_eq!(
        status.get(&kept).map(String::as_str),
        Some("created"),
        "{listed}"
    );
    assert!(!status.contains_key(&orphaned));

    let report = on_b.ok("GET", "/api/v1/services/cleanup", None).await;
    assert_eq!(
        names(&report, "orphans", "container_name"),
        vec![format!("portcullis-{orphaned}")],
        "{report}"
    );
    assert_eq!(report["orphans"][0]["state"], "running", "{report}");
    assert_eq!(
        names(&report, "missing", ""),
        vec![gone.clone()],
        "{report}"
    );
    assert_eq!(
        names(&report, "stale_allocations", ""),
        vec![format!("{port}/tcp")],
        "{report}"
    );

    // A user token sees none of it (not its containers) and may not clean up.
    let user = Api {
        cp: &a,
        token: a.cli_ok(&["token", "create", "someone"]).trim().to_owned(),
    };
    let theirs = user.ok("GET", "/api/v1/services/cleanup", None).await;
    assert_eq!(theirs["orphans"], json!([]), "{theirs}");
    assert_eq!(theirs["missing"], json!([]), "{theirs}");
    assert_eq!(
        user.call("POST", "/api/v1/services/cleanup", None).await.0,
        StatusCode::FORBIDDEN
    );

    // A dry run removes nothing; the CLI and the recipe say what they found.
    let dry = on_a
        .ok("POST", "/api/v1/services/cleanup?dry_run=true", None)
        .await;
    assert_eq!(
        (dry["dry_run"].clone(), dry["removed"].clone()),
        (json!(true), json!([]))
    );
    assert_eq!(containers_of(&docker, &orphaned).await.len(), 1);
    let out = a.cli_ok(&["service", "cleanup", "--dry-run"]);
    assert!(
        out.contains(&format!("orphan\tportcullis-{orphaned}"))
            && out.contains(&format!("missing\t{gone}")),
        "{out}"
    );

    // Control planes on one Redis act on the engine one at a time: while another holds the
    // engine lease (here written straight into Redis, expiring in 2.5 s), a cleanup waits.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 2500;
    redis.cli(&[
        "HSET",
        "{portcullis}:meta",
        "lease:docker-engine",
        &format!(r#"{{"holder":"test","token":1,"expires_at_ms":{until}}}"#),
    ]);
    let started = std::time::Instant::now();
    let done = on_b.ok("POST", "/api/v1/services/cleanup", None).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the cleanup did not wait for the lock: {:?}",
        started.elapsed()
    );
    assert_eq!(
        done["removed"],
        json!([format!("portcullis-{orphaned}")]),
        "{done}"
    );
    assert_eq!(done["released"], json!([format!("{port}/tcp")]), "{done}");
    assert!(containers_of(&docker, &orphaned).await.is_empty());
    assert_eq!(
        containers_of(&docker, &foreign).await,
        vec![foreign.clone()],
        "another installation's container is untouched"
    );
    assert_eq!(containers_of(&docker, &kept).await.len(), 1);
    let after = on_a.ok("GET", "/api/v1/services/cleanup", None).await;
    assert_eq!(
        (after["orphans"].clone(), after["stale_allocations"].clone()),
        (json!([]), json!([])),
        "{after}"
    );
    assert_eq!(names(&after, "missing", ""), vec![gone.clone()]);
    let out = std::process::Command::new("just")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORTCULLIS_URL", &a.grpc)
        .env("PORTCULLIS_TOKEN", &a.admin_token)
        .env(
            "PORTCULLIS_BIN",
            portcullis_tests::procs::bin("portcullis")
                .parent()
                .expect("bin dir"),
        )
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .args(["service-cleanup-orphaned"])
        .output()
        .expect("just");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("no orphaned containers"),
        "{out:?}"
    );

    // The missing service's record is dropped by a delete; the kept one is intact.
    on_a.ok("DELETE", &format!("/api/v1/services/{gone}"), None)
        .await;
    on_b.ok("DELETE", &format!("/api/v1/services/{kept}"), None)
        .await;
    assert!(containers_of(&docker, &kept).await.is_empty());
    docker
        .remove_container(
            &foreign,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn one_registry_across_control_planes_sharing_redis() {
    let docker = engine().await;
    let redis = RedisServer::start().await;
    // A one-port range; the port is free on the host now.
    let port = {
        let l = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let args = || vec!["--port-range".into(), format!("{port}-{port}")];
    let a = ControlPlane::start_redis_args(Some(&redis.url), args()).await;
    let b = ControlPlane::start_redis_args(Some(&redis.url), args()).await;
    let on_a = Api {
        cp: &a,
        token: a.admin_token.clone(),
    };
    let on_b = Api {
        cp: &b,
        token: b.admin_token.clone(),
    };
    // Not started: the engine binds nothing on the host, so only the registry holds the port.
    let first = unique("reg");
    let mut body = two_httpds(&first);
    body["start"] = json!(false);
    let made = on_a.ok("POST", "/api/v1/services", Some(body)).await;
    assert_eq!(made["ports"][0]["host_port"], port, "{made}");
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());

    let second = unique("reg");
    let mut body = two_httpds(&second);
    body["start"] = json!(false);
    let (s, err) = on_b
        .call("POST", "/api/v1/services", Some(body.clone()))
        .await;
    assert!(s.is_client_error(), "{s} {err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("ports.host_port: no free tcp port left"),
        "{err}"
    );
    body["ports"][0]["host_port"] = json!(port);
    let (s, err) = on_b
        .call("POST", "/api/v1/services", Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("already allocated"),
        "{err}"
    );
    assert!(containers_of(&docker, &second).await.is_empty());
    let check = on_b
        .ok("GET", &format!("/api/v1/ports/check/{port}"), None)
        .await;
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("allocated to service {first:?}")),
        "{check}"
    );
    let avail = on_b.ok("GET", "/api/v1/ports/available", None).await;
    assert_eq!(avail["free"], 0, "{avail}");

    // Released on A, it is B's to hand out.
    on_a.ok("DELETE", &format!("/api/v1/services/{first}"), None)
        .await;
    body["ports"][0]["host_port"] = Value::Null;
    let made = on_b.ok("POST", "/api/v1/services", Some(body)).await;
    assert_eq!(made["ports"][0]["host_port"], port, "{made}");
    on_b.ok("DELETE", &format!("/api/v1/services/{second}"), None)
        .await;
    assert!(containers_of(&docker, &second).await.is_empty());
    assert_eq!(on_a.allocations().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_recreate_keeps_every_network() {
    let docker = engine().await;
    let nets = [unique("pnet"), unique("pnet")];
    for n in &nets {
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: n.clone(),
                ..Default::default()
            })
            .await
            .expect("create network");
    }
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "14900-14999".into()]).await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let name = unique("pn");
    let mut body = two_httpds(&name);
    body["networks"] = json!(nets);
    api.ok("POST", "/api/v1/services", Some(body)).await;
    let joined = async || -> Vec<String> {
        let c = docker
            .inspect_container(
                &format!("portcullis-{name}"),
                None::<InspectContainerOptions>,
            )
            .await
            .expect("inspect");
        let mut n: Vec<String> = c
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default()
            .into_keys()
            .collect();
        n.sort();
        n
    };
    let mut want = nets.to_vec();
    want.sort();
    assert_eq!(joined().await, want);
    let added = api
        .ok(
            "POST",
            &format!("/api/v1/services/{name}/ports"),
            Some(json!({"container_port": 8081})),
        )
        .await;
    assert_eq!(added["recreated"], true, "{added}");
    assert_eq!(joined().await, want, "the replacement is on both networks");
    let port = added["port"]["host_port"].as_u64().unwrap();
    let page = eventually(Duration::from_secs(10), "added port answers", || {
        get_page(port)
    })
    .await;
    assert_eq!(page, PAGE);
    api.ok("DELETE", &format!("/api/v1/services/{name}"), None)
        .await;
    for n in &nets {
        docker.remove_network(n).await.expect("remove network");
    }
}
