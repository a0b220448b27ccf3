//! The seed's environment names (`ADMIN_TOKEN`, `GITHUB_CLIENT_ID`, `BASE_DOMAIN`,
//! `REDIS_PASSWORD`, `HTTP_PORT`, `LOG_LEVEL`, …) on the real binaries.

use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::procs::bin;
use portcullis_tests::{RedisServer, eventually, free_port, http_client};
use serde_json::Value;

const ADMIN_TOKEN: &str = "seed-admin-token-0123456789abcdefghijklmnop";

/// A control plane started with only the seed's variables (no `PORTCULLIS_*`), killed on drop.
struct SeedControlPlane {
    child: std::process::Child,
    http: String,
}

impl SeedControlPlane {
    async fn start(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let (http, grpc) = (free_port(), free_port());
        let mut cmd = Command::new(bin("portcullis-control-plane"));
        cmd.args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .env_remove("PORTCULLIS_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("control plane");
        let http = format!("http://127.0.0.1:{http}");
        let health = format!("{http}/health");
        eventually(Duration::from_secs(30), "control plane /health", || {
            let health = health.clone();
            async move {
                http_client()
                    .get(&health)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
            }
        })
        .await;
        Self { child, http }
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = http_client()
            .get(format!("{}{path}", self.http))
            .bearer_auth(token)
            .send()
            .await
            .expect("control plane answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for SeedControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_seeds_env_bootstraps_an_empty_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let seed_env = [
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("GITHUB_CLIENT_ID", "Iv1.seedclient"),
        ("GITHUB_CLIENT_SECRET", "seed-github-secret"),
        ("OAUTH_ALLOWED_GITHUB_USERS", "alice,bob"),
        ("ADMIN_EMAIL", "ops@example.com"),
        ("BASE_DOMAIN", "example.com"),
        ("LOG_LEVEL", "WARNING"),
    ];
    let cp = SeedControlPlane::start(dir.path(), &seed_env).await;

    // The known admin token works; the GitHub provider and the login rule exist.
    let (status, idps) = cp.get(ADMIN_TOKEN, "/api/v1/oauth/idps").await;
    assert_eq!(status, 200, "{idps}");
    let idps = idps.as_array().unwrap();
    assert_eq!(idps.len(), 1, "{idps:?}");
    assert_eq!(idps[0]["name"], "github");
    assert_eq!(idps[0]["client_id"], "Iv1.seedclient");
    assert!(!idps[0].to_string().contains("seed-github-secret"));
    let (_, rules) = cp.get(ADMIN_TOKEN, "/api/v1/oauth/rules").await;
    let rules = rules.as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["users"], serde_json::json!(["alice", "bob"]));
    assert_eq!(rules[0]["idp"], "github");
    assert_eq!(
        rules[0]["scopes"],
        serde_json::json!(["mcp:read", "mcp:write"])
    );
    // BASE_DOMAIN: the issuer is the seed's auth host.
    let (_, meta) = cp
        .get(ADMIN_TOKEN, "/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"], "https://auth.example.com", "{meta}");
    // Only the known token (and no other string of that shape) is an admin credential.
    let (status, _) = cp
        .get("not-the-token-0123456789abcdefghijkl", "/api/v1/tokens")
        .await;
    assert_eq!(status, 401);
    drop(cp);

    // A second start on the same store: the variables apply to an empty store only — a
    // different ADMIN_TOKEN is ignored, the first still works, nothing is duplicated.
    let mut again = seed_env;
    again[0] = ("ADMIN_TOKEN", "another-admin-token-0123456789abcdefghijkl");
    let cp = SeedControlPlane::start(dir.path(), &again).await;
    assert_eq!(cp.get(ADMIN_TOKEN, "/api/v1/tokens").await.0, 200);
    assert_eq!(
        cp.get(
            "another-admin-token-0123456789abcdefghijkl",
            "/api/v1/tokens"
        )
        .await
        .0,
        401
    );
    let (_, idps) = cp.get(ADMIN_TOKEN, "/api/v1/oauth/idps").await;
    assert_eq!(idps.as_array().map(Vec::len), Some(1));
}

/// A bad seed value is refused at start with its name, and nothing is created.
#[tokio::test]
async fn bad_seed_values_stop_the_start_and_name_the_variable() {
    for (env, named) in [
        (vec![("LOG_LEVEL", "LOUD")], "LOG_LEVEL"),
        (vec![("ADMIN_TOKEN", "short")], "admin_token"),
        (
            vec![("GITHUB_CLIENT_ID", "Iv1.only-the-id")],
            "GITHUB_CLIENT_SECRET",
        ),
        (
            vec![("OAUTH_ALLOWED_GITHUB_USERS", "*")],
            "GITHUB_CLIENT_ID",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin("portcullis-control-plane"));
        cmd.args(["serve", "--data-dir"])
            .arg(dir.path())
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ])
            .env_remove("PORTCULLIS_LOG");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || cmd.output().unwrap()),
        )
        .await
        .expect("the control plane must exit")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} must be refused");
        assert!(stderr.contains(named), "{env:?}: {stderr}");
    }
}

/// REDIS_PASSWORD completes a Redis URL that carries none; a different one in the URL is refused.
#[tokio::test]
async fn redis_password_authenticates_to_a_real_redis() {
    let redis = RedisServer::start().await;
    assert_eq!(
        redis.cli(&["CONFIG", "SET", "requirepass", "seed-redis-pw"]),
        "OK"
    );
    let dir = tempfile::tempdir().unwrap();
    let cp = SeedControlPlane::start(
        dir.path(),
        &[
            ("PORTCULLIS_REDIS_URL", &redis.url),
            ("REDIS_PASSWORD", "seed-redis-pw"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    let (status, health) = cp.get(ADMIN_TOKEN, "/health").await;
    assert_eq!(
        (status, &health["store_ok"]),
        (200, &Value::Bool(true)),
        "{health}"
    );
    assert_eq!(health["store_backend"], "redis", "{health}");
    assert_eq!(cp.get(ADMIN_TOKEN, "/api/v1/tokens").await.0, 200);
    drop(cp);

    let url = redis.url.replace("redis://", "redis://:other-pw@");
    let out = Command::new(bin("portcullis-control-plane"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .env("PORTCULLIS_REDIS_URL", &url)
        .env("REDIS_PASSWORD", "seed-redis-pw")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("differs from --redis-password"), "{stderr}");
    assert!(
        !stderr.contains("other-pw") && !stderr.contains("seed-redis-pw"),
        "{stderr}"
    );
}

/// HTTP_PORT / HTTPS_PORT are the data plane's listeners (on every interface).
#[tokio::test]
async fn data_plane_listens_on_the_seeds_ports() {
    let cp = portcullis_tests::ControlPlane::start().await;
    let (http, https, admin) = (free_port(), free_port(), free_port());
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("portcullis-data-plane"))
        .args(["--control-plane", &cp.grpc, "--node-id", "seed-dp"])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--cache-dir")
        .arg(cache.path())
        .env("PORTCULLIS_ENROLMENT_TOKEN", cp.enrolment_token("seed-dp"))
        .env("HTTP_PORT", http.to_string())
        .env("HTTPS_PORT", https.to_string())
        .env("LOG_LEVEL", "ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    eventually(Duration::from_secs(30), "data plane ready", || {
        let ready = ready.clone();
        async move {
            http_client()
                .get(&ready)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;
    // An unknown host on the seed's HTTP port: the data plane's own 404, not a refused connection.
    let r = http_client()
        .get(format!("http://127.0.0.1:{http}/"))
        .header("host", "nobody.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", https))
            .await
            .is_ok()
    );
    let _ = child.kill();
    let _ = child.wait();
}
