//! `deploy/compose/compose.yaml`, run for real by Debian's `docker-compose` on the local
//! dockerd: Redis with AOF, two control planes, two data planes, each in its own container
//! (own network namespace), secrets mounted from files, config streams over gRPC TLS with a
//! CA made here. No registry is reachable, so the images are built locally `FROM scratch`
//! (see `portcullis_tests::image`): the control- and data-plane stages of
//! `deploy/Dockerfile` around the built binaries, Redis from the host's `redis-server` and
//! `redis-cli` plus their libraries, and a busybox httpd as the upstream.
//!
//! A proxy created through either control plane answers on both data planes; then control
//! plane A is killed (SIGKILL) under a steady request loop through both data planes: not one
//! proxied request fails, and a write through B reaches both data planes. The project
//! (containers, networks, volumes) and the images are removed at the end, passed or not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use portcullis_tests::image::{build_stage, docker, docker_ok, runtime_rootfs, set_mode};
use portcullis_tests::procs::bin;
use portcullis_tests::{eventually, http_client};
use serde_json::{Value, json};

const COMPOSE_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/compose/compose.yaml"
);

/// The test's additions to the compose file: the upstream the proxies point at.
const OVERRIDE: &str = "services:\n  backend:\n    image: ${PORTCULLIS_TEST_BACKEND_IMAGE}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    networks: [mesh]\n";

/// One compose project: its name, files and environment; `down -v` and the images removed
/// when dropped.
struct Project {
    name: String,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    images: Vec<String>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("--no-ansi").args(["-p", &self.name]);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose (Debian package docker-compose)")
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn logs(&self) -> String {
        let out = self.compose(&["logs", "--tail", "30"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `127.0.0.1:PORT` where `service`'s container port is published.
    fn published(&self, service: &str, port: u16) -> String {
        self.compose_ok(&["port", service, &port.to_string()])
    }

    fn container(&self, service: &str) -> String {
        self.compose_ok(&["ps", "-q", service])
    }

    fn health(&self, service: &str) -> String {
        let id = self.container(service);
        docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &id])
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("compose project {} logs:\n{}", self.name, self.logs());
        }
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "2"]);
        for image in &self.images {
            let _ = docker(&["rmi", "-f", image]);
        }
    }
}

/// Redis image: the host's `redis-server` and `redis-cli` (for the health check) with their
/// libraries, run as user 65532 with `/data` owned by it.
fn build_redis(tag: &str) {
    let ctx = tempfile::tempdir().expect("tempdir");
    let rootfs = ctx.path().join("rootfs");
    let binaries = [
        Path::new("/usr/bin/redis-server"),
        Path::new("/usr/bin/redis-cli"),
    ];
    runtime_rootfs(&rootfs, &binaries);
    std::fs::create_dir_all(rootfs.join("usr/local/bin")).expect("mkdir");
    for b in binaries {
        let dest = rootfs
            .join("usr/local/bin")
            .join(b.file_name().expect("name"));
        std::fs::copy(b, dest).expect("copy redis binary");
    }
    std::fs::create_dir_all(ctx.path().join("data")).expect("mkdir data");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nCOPY --chown=65532:65532 data/ /data/\n\
         ENV PATH=/usr/local/bin\nUSER 65532:65532\nWORKDIR /data\nEXPOSE 6379\n",
    )
    .expect("Dockerfile");
    docker_ok(&["build", "-q", "-t", tag, &ctx.path().display().to_string()]);
}

/// The upstream: busybox httpd serving `page` (the image of `portcullis_tests::docker`).
fn build_backend(tag: &str, page: &str) {
    let tar = portcullis_tests::docker::context_tar(
        page,
        &[(
            "Dockerfile",
            portcullis_tests::docker::DOCKERFILE.as_bytes(),
        )],
    );
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker build");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&tar).expect("send context");
    }
    let out = child.wait_with_output().expect("docker build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The secrets directory of the compose file: a CA, the control planes' certificate (SANs
/// `cp-a`, `cp-b`), master key, admin token, Redis URL; enrolment tokens come later.
fn write_secrets(dir: &Path, admin_token: &str) {
    use base64::Engine as _;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portcullis compose test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["cp-a".to_owned(), "cp-b".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let master = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    for (name, value) in [
        ("grpc-ca", ca.pem()),
        ("grpc-tls-cert", cert.pem()),
        ("grpc-tls-key", key.serialize_pem()),
        ("master-key", master),
        ("admin-token", admin_token.to_owned()),
        ("redis-url", "redis://redis:6379/0".to_owned()),
        ("enrolment-token-dp-a", String::new()),
        ("enrolment-token-dp-b", String::new()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, value).expect("secret file");
        // The services run as uid 65532: world-readable in this private temporary directory.
        set_mode(&path, 0o644);
    }
    set_mode(dir, 0o755);
}

async fn api(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http_client()
        .request(method.parse().expect("method"), format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("API request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("API body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `GET http://{addr}/` with `Host: host`: the status and body, or `None` on a transport error.
async fn get(addr: &str, host: &str) -> Option<(u16, String)> {
    let r = http_client()
        .get(format!("http://{addr}/"))
        .header("host", host)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn create_proxy(base: &str, token: &str, host: &str) {
    let (status, body) = api(
        base,
        token,
        "POST",
        "/api/v1/proxy/targets",
        Some(json!({"hostname": host, "target_url": "http://backend:8080", "enable_https": false})),
    )
    .await;
    assert_eq!(status, 201, "create proxy {host} through {base}: {body}");
}

async fn answered_on(dps: &[String], host: &str, page: &str) {
    for dp in dps {
        eventually(
            Duration::from_secs(15),
            &format!("{host} answered on {dp}"),
            || async { get(dp, host).await.filter(|(s, b)| *s == 200 && b == page) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_file_runs_ha_control_planes_and_data_planes_over_tls() {
    let run = format!("{:08x}", rand::random::<u32>());
    let page = format!("hello from the compose backend {run}");
    let secrets = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let override_file = work.path().join("test.override.yaml");
    std::fs::write(&override_file, OVERRIDE).expect("override file");
    let admin_token = format!("pcs_compose_{run}{:032x}", rand::random::<u128>());
    write_secrets(secrets.path(), &admin_token);

    let images = ["control-plane", "data-plane", "redis", "backend"]
        .map(|i| format!("portcullis-test-compose-{i}:{run}"));
    let env = [
        ("PORTCULLIS_CONTROL_PLANE_IMAGE", images[0].clone()),
        ("PORTCULLIS_DATA_PLANE_IMAGE", images[1].clone()),
        ("PORTCULLIS_REDIS_IMAGE", images[2].clone()),
        ("PORTCULLIS_TEST_BACKEND_IMAGE", images[3].clone()),
        ("PORTCULLIS_SECRETS", secrets.path().display().to_string()),
        (
            "PORTCULLIS_OAUTH_ISSUER",
            "https://auth.compose.test".to_owned(),
        ),
        // Ephemeral host ports on loopback ("127.0.0.1::8080").
        ("PORTCULLIS_CP_A_API", "127.0.0.1:".to_owned()),
        ("PORTCULLIS_CP_B_API", "127.0.0.1:".to_owned()),
        ("PORTCULLIS_DP_A_HTTP", "127.0.0.1:".to_owned()),
        ("PORTCULLIS_DP_A_HTTPS", "127.0.0.1:".to_owned()),
        ("PORTCULLIS_DP_B_HTTP", "127.0.0.1:".to_owned()),
        ("PORTCULLIS_DP_B_HTTPS", "127.0.0.1:".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let project = Project {
        name: format!("portcullis-test-compose-{run}"),
        files: vec![PathBuf::from(COMPOSE_FILE), override_file],
        env: env.to_vec(),
        images: images.to_vec(),
    };
    build_stage(
        &images[0],
        "control-plane",
        &bin("portcullis-control-plane"),
    );
    build_stage(&images[1], "data-plane", &bin("portcullis-data-plane"));
    build_redis(&images[2]);
    build_backend(&images[3], &page);

    // Redis and the control planes first (compose waits for Redis to be healthy).
    project.compose_ok(&["up", "-d", "redis", "cp-a", "cp-b"]);
    let cps = ["cp-a", "cp-b"].map(|s| format!("http://{}", project.published(s, 9000)));
    for cp in &cps {
        for (path, want) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
            eventually(Duration::from_secs(60), &format!("{cp}{path}"), || async {
                let r = http_client().get(format!("{cp}{path}")).send().await.ok()?;
                (r.status() == 200).then_some(())?;
                (r.text().await.ok()? == want).then_some(())
            })
            .await;
        }
    }
    // The admin token came from the secret file: both control planes accept it.
    for cp in &cps {
        let (status, body) = api(cp, &admin_token, "GET", "/api/v1/dataplanes", None).await;
        assert_eq!(status, 200, "{cp}: {body}");
    }
    // Enrolment tokens, created through A, into the data planes' secret files.
    for dp in ["dp-a", "dp-b"] {
        let (status, body) = api(
            &cps[0],
            &admin_token,
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": dp, "scope": "dataplane"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let secret = body["secret"].as_str().expect("token secret");
        std::fs::write(secrets.path().join(format!("enrolment-token-{dp}")), secret)
            .expect("enrolment token file");
    }
    project.compose_ok(&["up", "-d"]);
    for s in ["redis", "cp-a", "cp-b", "dp-a", "dp-b"] {
        eventually(Duration::from_secs(60), &format!("{s} healthy"), || async {
            (project.health(s) == "healthy").then_some(())
        })
        .await;
    }
    // Every service in its own network namespace.
    let sandboxes: std::collections::BTreeSet<String> = ["redis", "cp-a", "cp-b", "dp-a", "dp-b"]
        .iter()
        .map(|s| {
            let id = project.container(s);
            docker_ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", &id])
        })
        .collect();
    assert_eq!(sandboxes.len(), 5, "{sandboxes:?}");

    // Redis keeps an append-only file.
    assert_eq!(
        project.compose_ok(&[
            "exec",
            "-T",
            "redis",
            "redis-cli",
            "config",
            "get",
            "appendonly"
        ]),
        "appendonly\nyes"
    );

    let dps = ["dp-a", "dp-b"].map(|s| project.published(s, 8080));
    create_proxy(&cps[0], &admin_token, "a.compose.test").await;
    answered_on(&dps, "a.compose.test", &page).await;
    create_proxy(&cps[1], &admin_token, "b.compose.test").await;
    answered_on(&dps, "b.compose.test", &page).await;

    // A steady loop through both data planes and both proxies.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let looper = {
        let (stop, ok, failures, dps, page) = (
            stop.clone(),
            ok.clone(),
            failures.clone(),
            dps.clone(),
            page.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for dp in &dps {
                    for host in ["a.compose.test", "b.compose.test"] {
                        match get(dp, host).await {
                            Some((200, body)) if body == page => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures
                                .lock()
                                .expect("failures")
                                .push(format!("{dp} {host}: {other:?}")),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "the loop is running");
    let cp_a = project.container("cp-a");
    docker_ok(&["kill", "-s", "KILL", &cp_a]);
    // A write through B reaches both data planes (dp-a streamed from A and must move).
    create_proxy(&cps[1], &admin_token, "c.compose.test").await;
    answered_on(&dps, "c.compose.test", &page).await;
    // B sees both data planes connected (dp-a moved over) at its current version.
    let list = eventually(
        Duration::from_secs(15),
        "both data planes on B, up to date",
        || async {
            let (status, list) =
                api(&cps[1], &admin_token, "GET", "/api/v1/dataplanes", None).await;
            let items = list["items"].as_array()?;
            let current = list["current_version"].as_u64()?;
            let up_to_date = ["dp-a", "dp-b"].iter().all(|dp| {
                items.iter().any(|i| {
                    i["node_id"] == *dp
                        && i["connected"] == true
                        && i["applied_version"].as_u64() == Some(current)
                })
            });
            (status == 200 && up_to_date).then_some(list)
        },
    )
    .await;
    println!("data planes after the kill: {list}");
    // Killed for good: compose's restart policy does not bring back a killed container.
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &cp_a]),
        "false"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    looper.await.expect("request loop");
    let failures = failures.lock().expect("failures").clone();
    let total = ok.load(Ordering::Relaxed);
    println!(
        "proxied requests during the kill: {} ok, {} failed",
        total - before,
        failures.len()
    );
    assert!(failures.is_empty(), "failed proxied requests: {failures:?}");
    assert!(
        total > before + 20,
        "the loop kept running: {before} → {total}"
    );
}
